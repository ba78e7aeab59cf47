"""Document expansion (doc2query): generated queries change what BM25 matches, never what is shown."""

from __future__ import annotations

import json
from typing import ClassVar

import pytest

from korag.data.schema import Corpus
from korag.errors import ConfigError, DataError
from korag.retrieval.bm25 import BM25Retriever
from korag.retrieval.expansion_docs import ExpandedRetriever, expand_corpus, read_expansions

CORPUS = Corpus(
    ["d1", "d2", "d3"],
    ["세종은 훈민정음을 창제하였다.", "부산은 항구 도시이다.", "한강은 서울을 가로지르는 강이다."],
    ["세종", "부산", "한강"],
)
# "글자" and "발명" appear nowhere in the corpus: only the expansion can match them
EXPANSIONS = {"d1": ["한글 글자를 발명한 왕은?"], "d9": ["없는 문서의 질문"]}


def test_expansion_changes_bm25_rankings_but_never_the_shown_text(tmp_path):
    plain = BM25Retriever("bigram-stem")
    plain.index(CORPUS)
    assert plain.search(["글자 발명"], k=3).row(0) == []  # nothing matches without expansion

    r = ExpandedRetriever(BM25Retriever("bigram-stem"), EXPANSIONS, source="x.jsonl")
    r.index(CORPUS)
    assert r.stats.documents == 1 and r.stats.queries == 1 and r.stats.unknown_documents == 1
    hits = r.search_passages("글자 발명", k=3)
    assert hits[0].id == "d1"
    assert hits[0].text == CORPUS.texts[0] and "발명" not in hits[0].text
    assert all("발명" not in t for t in r.corpus().texts)
    # the saved index: searches match the expansion, the saved passages are the originals
    r.save(tmp_path / "idx")
    from korag.retrieval.base import load_retriever

    loaded = load_retriever(tmp_path / "idx")
    again = loaded.search_passages("글자 발명", k=3)
    assert again[0].id == "d1" and "발명" not in again[0].text
    assert "발명" not in (tmp_path / "idx" / "corpus.jsonl").read_text()
    info = json.loads((tmp_path / "idx" / "expansion.json").read_text())
    assert info["documents"] == 1 and info["source"] == "x.jsonl"
    # an unexpanded query ranks as before (the other passages are untouched)
    assert r.search(["부산 항구"], k=1).row(0)[0][0] == "d2"


def test_add_and_delete_keep_originals_apart():
    r = ExpandedRetriever(BM25Retriever("bigram-stem"), {"d4": ["조선의 궁궐은 어디인가"]})
    r.index(CORPUS)
    r.add(Corpus(["d4"], ["경복궁은 서울에 있다."], ["경복궁"]))
    assert r.search_passages("궁궐", k=1)[0].id == "d4"
    assert r.corpus().get("d4").text == "경복궁은 서울에 있다."
    r.delete(["d4"])
    assert "d4" not in r.corpus() and r.search(["궁궐"], k=1).row(0) == []


def test_expand_corpus_and_other_retrievers_get_expanded_text():
    out = expand_corpus(CORPUS, {"d2": ["q1", "q2", "q3"]}, max_per_doc=2)
    assert out.texts[1] == "부산은 항구 도시이다.\nq1\nq2" and out.titles == CORPUS.titles and out.ids == CORPUS.ids
    assert CORPUS.texts[1] == "부산은 항구 도시이다."  # the original is not modified
    with pytest.raises(ConfigError, match="max_per_doc"):
        expand_corpus(CORPUS, {}, max_per_doc=0)

    class Recorder(BM25Retriever):
        seen: ClassVar[list[str]] = []

        def index(self, corpus, *, show_progress=False):
            Recorder.seen = list(corpus.texts)
            super().index(corpus, show_progress=show_progress)

    r = ExpandedRetriever(Recorder("bigram"), {"d3": ["강 이름"]})
    r.index(CORPUS)
    assert Recorder.seen[2].endswith("\n강 이름") and r.corpus().texts[2] == CORPUS.texts[2]


def test_read_expansions_formats_and_errors(tmp_path):
    good = tmp_path / "q.jsonl"
    good.write_text(
        '{"id": "a", "text": "첫 질문", "doc_id": "d1", "method": "llm-question"}\n'
        '{"doc_id": "d1", "queries": ["둘째  질문", "첫 질문"]}\n'
        '{"doc_id": 7, "query": "번호 문서"}\n',
        encoding="utf-8",
    )
    assert read_expansions(good) == {"d1": ["첫 질문", "둘째 질문"], "7": ["번호 문서"]}
    for body, where in [
        ('{"text": "x"}\n', "line 1: field 'doc_id'"),
        ('{"doc_id": "d1"}\n', "line 1: field 'text'"),
        ('{"doc_id": "d1", "queries": "x"}\n', "line 1: field 'queries'"),
        ('{"doc_id": "d1", "text": 3}\n', "line 1: field 'text'"),
        ("{bad\n", "line 1: malformed JSON"),
    ]:
        bad = tmp_path / "bad.jsonl"
        bad.write_text(body, encoding="utf-8")
        with pytest.raises(DataError, match=where):
            read_expansions(bad)


def test_cli_index_expand_with(tmp_path):
    from conftest import run_cli

    data = tmp_path / "corpus.jsonl"
    data.write_text(
        "".join(
            json.dumps({"id": d, "title": t, "text": x}, ensure_ascii=False) + "\n"
            for d, x, t in zip(CORPUS.ids, CORPUS.texts, CORPUS.titles, strict=True)
        ),
        encoding="utf-8",
    )
    synth = tmp_path / "synth.jsonl"
    synth.write_text(
        json.dumps({"id": "q1", "text": "한글 글자를 발명한 왕은?", "doc_id": "d1", "method": "llm-question"}) + "\n",
        encoding="utf-8",
    )
    idx = tmp_path / "idx"
    r = run_cli("index", str(data), "--expand-with", str(synth), "-o", str(idx))
    assert r.returncode == 0, r.stderr
    assert "expanded 1 passages with 1 generated queries" in r.stdout
    r = run_cli("search", str(idx), "글자 발명", "--json")
    assert r.returncode == 0, r.stderr
    results = json.loads(r.stdout)[0]["results"]
    assert results[0]["id"] == "d1" and "발명" not in results[0]["text"]
    plain = tmp_path / "plain"
    assert run_cli("index", str(data), "-o", str(plain)).returncode == 0
    assert json.loads(run_cli("search", str(plain), "글자 발명", "--json").stdout)[0]["results"] == []
    synth.write_text('{"doc_id": "d1"}\n', encoding="utf-8")
    bad = run_cli("index", str(data), "--expand-with", str(synth), "-o", str(tmp_path / "x"))
    assert bad.returncode == 2 and "line 1: field 'text'" in bad.stderr
