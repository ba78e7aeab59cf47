import numpy as np
import pytest

from korag.data.schema import Corpus, Document, QAExample, QASet, Qrels, Queries, Ranking, RetrievalSet
from korag.errors import DataError


def test_corpus_is_columnar_and_builds_documents_on_demand():
    c = Corpus(["a", "b"], ["첫 문서", "둘째 문서"], ["제목", ""], [{"k": 1}, {}])
    assert len(c) == 2
    assert c[0] == Document("a", "첫 문서", "제목", {"k": 1})
    assert c.get("b").meta == {}
    assert "a" in c and "z" not in c
    assert c.index_of("b") == 1
    assert c.contents() == ["제목 첫 문서", "둘째 문서"]
    assert c.contents(with_title=False) == ["첫 문서", "둘째 문서"]
    assert [d.id for d in c.subset([1, 0])] == ["b", "a"]


def test_corpus_without_metadata_keeps_no_dicts():
    c = Corpus(["a"], ["x"])
    assert c.metas is None
    assert c[0].meta == {}


def test_corpus_rejects_duplicate_and_empty():
    with pytest.raises(DataError, match=r"duplicate document id 'a' \(first seen as document 1\)"):
        Corpus(["a", "a"], ["x", "y"], source="c.jsonl")
    with pytest.raises(DataError, match=r"document 2 \(id='b'\): field 'text': document text is empty"):
        Corpus(["a", "b"], ["x", "  "])


def test_concat_keeps_ids_unique():
    a = Corpus(["1"], ["x"])
    assert [d.id for d in a.concat(Corpus(["2"], ["y"], metas=[{"m": 1}]))] == ["1", "2"]
    with pytest.raises(DataError):
        a.concat(Corpus(["1"], ["z"]))


def test_queries_and_qrels():
    q = Queries(["q1", "q2"], ["질문 하나", "질문 둘"])
    assert q.get("q2").text == "질문 둘"
    assert [x.id for x in q.subset(["q2"])] == ["q2"]
    with pytest.raises(DataError, match="query text is empty"):
        Queries(["q"], [""])
    qrels = Qrels.from_rows([("q1", "a", 2), ("q1", "b", 0), ("q2", "b", 1)])
    assert qrels.relevant("q1") == {"a": 2}
    assert qrels.relevant("q1", min_grade=0) == {"a": 2, "b": 0}
    assert qrels.num_pairs() == 3
    assert list(qrels.restrict(["q2"])) == ["q2"]


def test_retrieval_set_validation_names_unknown_ids():
    c = Corpus(["a"], ["x"])
    q = Queries(["q1"], ["y"])
    RetrievalSet(c, q, Qrels({"q1": {"a": 1}})).validate()
    with pytest.raises(DataError, match="unknown document 'zz'"):
        RetrievalSet(c, q, Qrels({"q1": {"zz": 1}})).validate("qrels.tsv")
    with pytest.raises(DataError, match="unknown query 'q9'"):
        RetrievalSet(c, q, Qrels({"q9": {"a": 1}})).validate()


def test_qaset_to_retrieval_set_skips_unanswerable():
    c = Corpus(["a", "b"], ["x", "y"])
    qa = QASet(c, [QAExample("1", "무엇?", ("x",), ("a",)), QAExample("2", "없음?", (), ())])
    qa.validate()
    rs = qa.to_retrieval_set()
    assert rs.qrels.to_dict() == {"1": {"a": 1}}
    assert [q.id for q in rs.judged_queries()] == ["1"]
    with pytest.raises(DataError, match="unknown document 'c'"):
        QASet(c, [QAExample("1", "q", ("x",), ("c",))]).validate()
    with pytest.raises(DataError, match="duplicate question id"):
        QASet(c, [QAExample("1", "q", ("x",), ("a",)), QAExample("1", "q", ("x",), ("a",))]).validate()


def test_ranking_from_dict_sorts_and_pads():
    r = Ranking.from_dict({"q1": {"a": 0.5, "b": 2.0}, "q2": [("c", 1.0)]})
    assert r.row(0) == [("b", 2.0), ("a", 0.5)]
    assert r["q2"] == [("c", 1.0)]
    assert r.indices[1, 1] == -1 and np.isneginf(r.scores[1, 1])
    assert r.top(1).row(0) == [("b", 2.0)]
    assert r.to_dict() == {"q1": {"b": 2.0, "a": 0.5}, "q2": {"c": 1.0}}
