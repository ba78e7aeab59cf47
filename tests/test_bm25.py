import bm25s
import numpy as np
import pytest

from korag.data.sample import load_sample
from korag.data.schema import Corpus, Queries
from korag.errors import ConfigError, DataError, ModelError
from korag.retrieval.base import load_retriever
from korag.retrieval.bm25 import METHODS, BM25Retriever


@pytest.fixture(scope="module")
def sample():
    return load_sample().to_retrieval_set()


@pytest.mark.parametrize("method", METHODS)
def test_scores_equal_bm25s_own_indexing(sample, method):
    r = BM25Retriever("bigram-stem", method=method, k1=1.2, b=0.7)
    r.index(sample.corpus)
    tokens = r.tokenizer.tokenize_batch(sample.corpus.contents())
    ref = bm25s.BM25(method=method, k1=1.2, b=0.7)
    ref.index(tokens, show_progress=False)
    q_tokens = r.tokenizer.tokenize_batch(sample.queries.texts)
    ref_idx, ref_scores = ref.retrieve(q_tokens, k=10, show_progress=False)
    ranking = r.search(sample.queries, k=10)
    # bm25s pads a short list with documents that match no query term, at score 0; korag returns
    # only matches (the rest is padding: index -1, score -inf)
    matched = ref_scores > 0
    assert matched.mean() > 0.5
    np.testing.assert_allclose(ranking.scores[matched], ref_scores[matched], rtol=1e-5, atol=1e-5)
    assert np.all(ranking.indices[~matched] == -1) and np.all(np.isneginf(ranking.scores[~matched]))
    # ties may order differently; the documents at each distinct score must match
    assert (ranking.indices[matched] == ref_idx[matched]).mean() > 0.99


def _scores(r: BM25Retriever, queries: list[str]) -> dict[str, dict[str, float]]:
    return {q: dict(r.search([q], k=len(r)).row(0)) for q in queries}


def test_add_and_delete_equal_a_fresh_build(sample):
    corpus = sample.corpus
    queries = sample.queries.texts[:25]
    first, second = corpus.subset(range(30)), corpus.subset(range(30, len(corpus)))
    inc = BM25Retriever("bigram-stem")
    inc.index(first)
    inc.add(second)
    fresh = BM25Retriever("bigram-stem")
    fresh.index(corpus)
    assert inc.doc_ids == fresh.doc_ids
    a, b = _scores(inc, queries), _scores(fresh, queries)
    for q in queries:
        assert a[q].keys() == b[q].keys()
        np.testing.assert_allclose([a[q][d] for d in b[q]], list(b[q].values()), rtol=1e-5)

    gone = corpus.ids[5:15]
    assert inc.delete(gone) == 10
    rest = corpus.subset([i for i, d in enumerate(corpus.ids) if d not in set(gone)])
    fresh2 = BM25Retriever("bigram-stem")
    fresh2.index(rest)
    a, b = _scores(inc, queries), _scores(fresh2, queries)
    for q in queries:
        assert not set(a[q]) & set(gone)
        np.testing.assert_allclose([a[q][d] for d in b[q]], list(b[q].values()), rtol=1e-5)
    # the new vocabulary of added documents is searchable
    inc.add(Corpus(["new"], ["완전히새로운낱말 zyxwv"]))
    assert inc.search(["zyxwv"], k=1).row(0)[0][0] == "new"


def test_update_errors(sample):
    r = BM25Retriever("bigram")
    r.index(sample.corpus.subset(range(3)))
    with pytest.raises(DataError, match="already in the index"):
        r.add(sample.corpus.subset([0]))
    with pytest.raises(DataError, match="not in the index"):
        r.delete(["missing-id"])
    with pytest.raises(DataError, match="cannot delete every document"):
        r.delete(r.doc_ids)


def test_save_load_mmap_and_plain_bm25s(sample, tmp_path):
    r = BM25Retriever("bigram-stem", k1=1.2, method="bm25+")
    r.index(sample.corpus)
    r.save(tmp_path / "idx")
    before = r.search(sample.queries, k=5)
    loaded = BM25Retriever.load(tmp_path / "idx", mmap=True)
    assert isinstance(loaded._engine.scores["data"], np.memmap)
    after = loaded.search(sample.queries, k=5)
    np.testing.assert_array_equal(before.indices, after.indices)
    np.testing.assert_allclose(before.scores, after.scores)
    assert load_retriever(tmp_path / "idx").params() == r.params()
    # a saved korag index is a genuine bm25s index
    plain = bm25s.BM25.load(str(tmp_path / "idx" / "bm25s"), mmap=True)
    idx, _ = plain.retrieve(r.tokenizer.tokenize_batch(sample.queries.texts[:5]), k=5, show_progress=False)
    np.testing.assert_array_equal(idx, before.indices[:5])
    # updating a loaded (memory-mapped) index works and can be saved over itself
    loaded.add(Corpus(["extra"], ["추가된 문서 quokka"]))
    loaded.save(tmp_path / "idx")
    assert BM25Retriever.load(tmp_path / "idx").search(["quokka"], k=1).row(0)[0][0] == "extra"


def test_search_edge_cases(sample):
    r = BM25Retriever("bigram")
    r.index(sample.corpus.subset(range(4)))
    ranking = r.search(Queries(["a", "b", "c"], ["세종", "zzzz 없는 말", "  ?  "]), k=50)
    assert ranking.indices.shape == (3, 4)  # k is clamped to the corpus size
    assert ranking.query_ids == ["a", "b", "c"]
    # nothing matches: no results, not four arbitrary documents at score 0
    assert ranking.row(1) == [] and ranking.row(2) == []
    assert len(ranking.row(0)) >= 1 and all(score > 0 for _, score in ranking.row(0))
    assert r.search([], k=3).indices.shape == (0, 3)
    assert r.search("세종", k=1).query_ids == ["0"]


def test_configuration_errors():
    with pytest.raises(ConfigError, match="unknown BM25 method"):
        BM25Retriever(method="bm26")
    with pytest.raises(ConfigError, match="0 ≤ b ≤ 1"):
        BM25Retriever(b=2)
    with pytest.raises(ModelError, match="call index"):
        BM25Retriever().search(["x"])
    with pytest.raises(DataError, match="empty corpus"):
        BM25Retriever().index(Corpus([], []))
