"""Adaptive fusion: never below its best member, and query-adaptive where the members take turns."""

from __future__ import annotations

import numpy as np
import pytest

from korag.data.schema import Qrels, Queries, Ranking
from korag.errors import ConfigError
from korag.eval.ir import evaluate_ranking
from korag.retrieval.adaptive import apply_adaptive, fit_adaptive
from korag.retrieval.fusion import HybridRetriever, fuse

DOCS = [f"d{i}" for i in range(300)]


def _ranking(qids, rows) -> Ranking:
    """rows: per query a list of (doc, score) in descending order."""
    return Ranking.from_dict(dict(zip(qids, rows, strict=True)), DOCS)


def _member(rng, gold, *, good: bool, depth: int = 30, sure: bool = False):
    """A member's list for one query: a good member puts the gold document near the top (rank
    drawn geometric), a useless one ranks at random; a sure member leaves a wide top-1 gap."""
    docs = list(rng.choice(len(DOCS), size=depth + 1, replace=False))
    docs = [DOCS[d] for d in docs if DOCS[d] != gold][:depth]
    if good:
        rank = min(int(rng.geometric(0.55)) - 1, depth - 1)
        docs.insert(rank, gold)
        docs = docs[:depth]
    scores = np.sort(rng.uniform(0.0, 1.0, size=depth))[::-1]
    if sure:
        scores[0] += 2.0
    return list(zip(docs, scores.tolist(), strict=True))


def _mrr(r: Ranking, qrels: Qrels) -> float:
    return evaluate_ranking(r, qrels, ["mrr@10"]).metrics["mrr@10"]


def _split(rankings, qrels, n_train):
    qids = rankings[0].query_ids
    train, test = qids[:n_train], qids[n_train:]

    def sub(r, ids):
        pos = {q: i for i, q in enumerate(r.query_ids)}
        rows = [pos[q] for q in ids]
        return Ranking(list(ids), r.indices[rows], r.scores[rows], r.doc_ids)

    def qsub(ids):
        return Qrels({q: qrels[q] for q in ids})

    return [sub(r, train) for r in rankings], qsub(train), [sub(r, test) for r in rankings], qsub(test)


def test_a_useless_member_never_pulls_the_fusion_below_the_good_one():
    for seed in range(3):
        rng = np.random.default_rng(seed)
        qids = [f"q{i}" for i in range(300)]
        gold = [DOCS[int(rng.integers(len(DOCS)))] for _ in qids]
        good = _ranking(qids, [_member(rng, g, good=True) for g in gold])
        useless = _ranking(qids, [_member(rng, g, good=False) for g in gold])
        qrels = Qrels({q: {g: 1} for q, g in zip(qids, gold, strict=True)})
        for order in ((good, useless), (useless, good)):
            train_r, train_q, test_r, test_q = _split(list(order), qrels, 200)
            combiner = fit_adaptive(train_r, train_q, seed=seed)
            fused = apply_adaptive(test_r, combiner, k=10)
            best = _mrr(test_r[order.index(good)], test_q)
            assert _mrr(fused, test_q) >= best - 1e-9, (seed, combiner)
            # what plain RRF does with the same members: the reason for the guard
            assert _mrr(fuse(test_r, method="rrf"), test_q) < best


def test_members_that_take_turns_are_weighed_per_query():
    """Half the questions suit member 0 (sure and right), half member 1: a fixed weight cannot
    serve both, the confidence features can."""
    rng = np.random.default_rng(0)
    qids = [f"q{i}" for i in range(400)]
    gold = [DOCS[int(rng.integers(len(DOCS)))] for _ in qids]
    rows0, rows1 = [], []
    for i, g in enumerate(gold):
        first = i % 2 == 0
        rows0.append(_member(rng, g, good=first, sure=first))
        rows1.append(_member(rng, g, good=not first, sure=not first))
    rankings = [_ranking(qids, rows0), _ranking(qids, rows1)]
    qrels = Qrels({q: {g: 1} for q, g in zip(qids, gold, strict=True)})
    train_r, train_q, test_r, test_q = _split(rankings, qrels, 300)
    combiner = fit_adaptive(train_r, train_q)
    assert combiner["chosen"] == "learned"
    adaptive = _mrr(apply_adaptive(test_r, combiner, k=10), test_q)
    members = [_mrr(r, test_q) for r in test_r]
    weighted = _mrr(fuse(test_r, method="weighted"), test_q)
    assert adaptive > max(members) + 0.1
    assert adaptive > weighted
    assert set(combiner["cv_mrr@10"]) == {"member:0", "member:1", "rrf", "weighted", "learned"}


class _Fixed:
    """A retriever returning fixed rankings (the members of a hybrid under test)."""

    def __init__(self, ranking: Ranking) -> None:
        self.ranking = ranking

    def index(self, corpus, *, show_progress=False):
        pass

    def search(self, queries, k=10, *, show_progress=False):
        pos = {q: i for i, q in enumerate(self.ranking.query_ids)}
        rows = [pos[q] for q in queries.ids]
        return Ranking(list(queries.ids), self.ranking.indices[rows], self.ranking.scores[rows], DOCS)

    def corpus(self):
        return None

    def describe(self):
        return {"name": "fixed"}


def test_hybrid_fits_saves_and_reloads_the_combiner(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    qids = [f"q{i}" for i in range(100)]
    gold = [DOCS[int(rng.integers(len(DOCS)))] for _ in qids]
    members = [_Fixed(_ranking(qids, [_member(rng, g, good=True) for g in gold])) for _ in range(2)]
    qrels = Qrels({q: {g: 1} for q, g in zip(qids, gold, strict=True)})
    queries = Queries(qids, qids)
    h = HybridRetriever(members, method="adaptive")
    with pytest.raises(ConfigError, match="tune it first"):
        h.search(queries, k=5)
    combiner = h.fit_combiner(queries, qrels)
    first = h.search(queries, k=5)
    assert h.config()["combiner"] == combiner
    # the saved hybrid carries the combiner: rebuilt with the same members it ranks the same
    again = HybridRetriever(members, **h.config())
    second = again.search(queries, k=5)
    assert np.array_equal(first.indices, second.indices)
    with pytest.raises(ConfigError, match="at least 10 judged"):
        fit_adaptive([m.ranking for m in members], Qrels({q: qrels[q] for q in qids[:5]}))


def test_collection_tune_keeps_what_beats_the_members(tiny_encoder, tmp_path):
    """`korag collection tune` fits the fusion on the user's questions, prints the comparison and
    saves what it kept; searches then use it, and an unfitted adaptive fusion is refused."""
    import json

    from conftest import run_cli
    from korag.collections.store import Collection
    from korag.data.sample import load_sample

    sample = load_sample()
    folder = tmp_path / "docs"
    folder.mkdir()
    for d in sample.corpus:
        (folder / f"{d.id}.txt").write_text(f"{d.title}\n\n{d.text}", encoding="utf-8")
    questions = tmp_path / "questions.jsonl"
    questions.write_text(
        "".join(json.dumps({"question": e.question, "answers": list(e.answers)}, ensure_ascii=False) + "\n"
                for e in sample.examples),
        encoding="utf-8",
    )  # fmt: skip
    home = ["--home", str(tmp_path / "home")]
    assert run_cli("collection", "create", "c", "--dense", str(tiny_encoder), *home).returncode == 0
    assert run_cli("add", "c", str(folder), *home).returncode == 0
    refused = run_cli("collection", "create", "d", "--dense", str(tiny_encoder), "--fusion", "adaptive", *home)
    assert refused.returncode == 2 and "korag collection tune" in refused.stderr
    res = run_cli("collection", "tune", "c", str(questions), *home)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "bm25 alone" in res.stdout and "dense alone" in res.stdout and "kept:" in res.stdout
    coll = Collection.open(tmp_path / "home" / "c")
    fusion = coll.config.fusion
    assert fusion.method == "adaptive" and fusion.combiner["questions"] > 0
    cv = fusion.combiner["cv_mrr@10"]
    kept = fusion.combiner["chosen"]
    assert cv[kept] >= max(cv["member:0"], cv["member:1"])  # never below its best member
    hits = coll.search(sample.examples[0].question, 3, retriever="hybrid")
    assert hits and hits[0].text
