import re

import numpy as np
import pytest

from korag.data.runs import load_ranking, read_trec_run, save_ranking, write_trec_run
from korag.data.sample import load_sample, question_kinds, sample_fingerprint
from korag.data.schema import Corpus, Ranking
from korag.data.stats import Distribution, compute_stats, stats_markdown


def test_builtin_sample_meets_its_contract():
    qa = load_sample()
    assert len(qa.corpus) >= 40 and len(qa.examples) >= 120
    assert len({m["topic"] for m in qa.corpus.metas}) >= 15
    for e in qa.examples:
        text = qa.corpus.get(e.doc_ids[0]).text
        assert all(text[s : s + len(a)] == a for a, s in zip(e.answers, e.answer_starts, strict=True))
    mixed = [t for t in qa.corpus.texts if re.search(r"[가-힣]+\s?\([A-Za-z][A-Za-z .,-]+\)", t)]
    assert len(mixed) >= 10  # 한국어(English) glosses
    kinds = question_kinds()
    assert sum(k == "english-term" for k in kinds.values()) >= 10
    assert sum(k == "korean-term" for k in kinds.values()) >= 10
    assert len(sample_fingerprint()) == 64


def test_distribution():
    d = Distribution.of([1, 2, 3, 4, 100])
    assert (d.count, d.min, d.median, d.max) == (5, 1, 3, 100)
    assert d.p90 == pytest.approx(61.6)
    assert Distribution.of([]).count == 0


def test_stats_of_qa_set_and_corpus():
    s = compute_stats(load_sample(), "whitespace")
    assert s.kind == "qa" and s.documents == 48 and s.queries == len(load_sample().examples)
    assert s.questions_per_document.min >= 3 and s.documents_without_questions == 0
    assert s.relevant_per_query.max == 1
    assert s.answer_chars.median < 10
    assert 0.4 < s.hangul_char_ratio < 0.9 and s.mixed_script_documents > 10
    assert "| documents | 48 |" in stats_markdown(s)
    c = compute_stats(Corpus(["a", "b"], ["가 나 다", "가 라"]), "whitespace")
    assert c.kind == "corpus" and c.vocabulary == 4 and c.corpus_tokens == 5 and c.queries == 0
    assert c.document_tokens.max == 3


def test_ranking_files_round_trip(tmp_path):
    r = Ranking.from_dict({"q1": {"a": 2.5, "b": 1.0}, "q2": {"c": 0.5}})
    write_trec_run(r, tmp_path / "run.trec", "test")
    assert (tmp_path / "run.trec").read_text().splitlines()[0] == "q1 Q0 a 1 2.500000 test"
    assert read_trec_run(tmp_path / "run.trec").to_dict() == r.to_dict()
    save_ranking(r, tmp_path / "r.npz")
    back = load_ranking(tmp_path / "r.npz")
    assert back.to_dict() == r.to_dict()
    np.testing.assert_array_equal(back.indices, r.indices)
