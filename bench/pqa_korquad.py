"""Parametric QA with a real small LM (Gemma 3 270M, offline) on KorQuAD 1.0 paragraphs, beside
its baselines, and a sweep of the memory size.

    python bench/pqa_korquad.py [--paragraphs 100] [--doc-tokens 64] [--m-tokens 8] [--z-dim 128]

- Documents: `--paragraphs` paragraphs drawn (seeded) from the dev set, each cut to its first
  `--doc-tokens` Gemma tokens — what is written into z. Questions: those whose answer lies in the
  written prefix, split per paragraph into read-training and test questions (every test
  question's paragraph is written; the question itself is unseen).
- PQA: write phase (LM frozen; z and the projection learn), a selector warm-up on L_retrieval
  (no LM pass), then the read phase (LoRA on the LM, gold memories, L_qa + α·L_retrieval).
- Baselines on the same test questions, the same base LM and k=1: closed-book, BM25/dense/hybrid
  RAG and the oracle as text, CLaRa (stage 1 → 2 on the same paragraphs and training questions,
  as many memory tokens per paragraph as PQA), an xRAG-style projector (one token per paragraph
  from its E5 embedding: paraphrase, then QA).
- Sweep: the write phase alone for m_tokens ∈ `--sweep` on `--sweep-docs` paragraphs:
  identification top-1 and token accuracy against m_tokens (table + plot).

CPU-sized: minutes of training on 2 cores, far from the origin's GPU epochs, so the numbers show
the machinery and the trade-offs, not the method's ceiling. Prints tables, writes JSON and plots to
bench/results/.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from pathlib import Path

from korag.cli_pqa import comparison_table, write_table
from rich.console import Console
from rich.table import Table

from korag import atomic
from korag.data.korquad import read_korquad
from korag.data.schema import Corpus, QAExample, QASet
from korag.eval.report import RunSummary, plot_metrics, plot_sweep
from korag.memory.clara.config import ClaraConfig, ClaraTrainConfig
from korag.memory.clara.data import retrieval_examples, stage1_from_qa
from korag.memory.clara.train import train_clara
from korag.memory.pqa.compare import compare_systems
from korag.memory.pqa.config import PQAConfig, ReadConfig, SelectorConfig, WriteConfig
from korag.memory.pqa.evaluate import write_quality
from korag.memory.pqa.store import load_pqa
from korag.memory.pqa.train import train_read, write_documents
from korag.models.lora import LoraSettings
from korag.retrieval.bm25 import BM25Retriever

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "korquad" / "KorQuAD_v1.0_dev.json"
console = Console(width=200)


def written_prefix(tokenizer, text: str, max_tokens: int) -> str:
    """The part of `text` that `max_tokens` tokens cover (what the write phase stores)."""
    ids = tokenizer(text, add_special_tokens=False, truncation=True, max_length=max_tokens)["input_ids"]
    return tokenizer.decode(ids)


def select_data(qa: QASet, tokenizer, n: int, max_tokens: int, seed: int):
    """(corpus of n paragraphs, training questions, test questions): questions whose answer is in
    the written prefix, alternately to training and test within each paragraph."""
    rng = random.Random(seed)
    by_doc: dict[str, list[QAExample]] = {}
    for e in qa.examples:
        by_doc.setdefault(e.doc_ids[0], []).append(e)
    ids = sorted(by_doc)
    rng.shuffle(ids)
    chosen, train, test = [], [], []
    for d in ids:
        doc = qa.corpus.get(d)
        covered = written_prefix(tokenizer, doc.text, max_tokens)
        inside = [e for e in by_doc[d] if any(a and a in covered for a in e.answers)]
        if len(inside) < 2:
            continue
        chosen.append(qa.corpus.index_of(d))
        train += inside[0::2]
        test += inside[1::2]
        if len(chosen) == n:
            break
    corpus = qa.corpus.subset(chosen)
    # the written text is the prefix, so retrievers and the oracle see exactly what z holds
    corpus = Corpus(corpus.ids, [written_prefix(tokenizer, t, max_tokens) for t in corpus.texts], corpus.titles)
    return corpus, train, test


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--base", default="gemma3-270m")
    ap.add_argument("--paragraphs", type=int, default=100)
    ap.add_argument("--doc-tokens", type=int, default=64)
    ap.add_argument("--m-tokens", type=int, default=8)
    ap.add_argument("--z-dim", type=int, default=128)
    ap.add_argument("--write-epochs", type=float, default=20)
    ap.add_argument("--read-steps", type=int, default=150)
    ap.add_argument("--selector", default="attention")
    ap.add_argument("--clara-steps", type=int, default=40)
    ap.add_argument("--xrag-epochs", type=float, default=6)
    ap.add_argument("--xrag-read-steps", type=int, default=100)
    ap.add_argument("--test", type=int, default=100, help="test questions")
    ap.add_argument("--identify", type=int, default=50)
    ap.add_argument("--sweep", default="1,4,16", help="m_tokens values of the sweep ('' to skip)")
    ap.add_argument("--sweep-docs", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "work" / "pqa")
    ap.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "pqa_korquad.json")
    args = ap.parse_args()
    from transformers import AutoTokenizer

    from korag.models.causal_lm import resolve_base
    from korag.models.offline import convert_e5_small

    t_start = time.perf_counter()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(resolve_base(args.base))
    corpus, train_q, test_q = select_data(read_korquad(args.data), tokenizer, args.paragraphs, args.doc_tokens, 0)
    test_q = test_q[: args.test]
    console.print(
        f"{len(corpus)} paragraphs (first {args.doc_tokens} tokens written), {len(train_q)} training and "
        f"{len(test_q)} test questions"
    )
    encoder = work / "e5-small"
    if not (encoder / "modules.json").is_file():
        convert_e5_small(encoder)
    timings: dict[str, float] = {}

    def timed(name: str, fn):
        t0 = time.perf_counter()
        out = fn()
        timings[name] = time.perf_counter() - t0
        console.print(f"{name}: {timings[name]:.0f} s")
        return out

    pqa = PQAConfig(m_tokens=args.m_tokens, z_dim=args.z_dim, max_doc_tokens=args.doc_tokens)
    write_cfg = WriteConfig(
        base=args.base, pqa=pqa, encoder=str(encoder), lr_z=1e-2, lr_projection=1e-3, epochs=args.write_epochs,
        batch_size=4, save_steps=50, seed=args.seed,
    )  # fmt: skip
    timed("pqa write", lambda: write_documents(corpus, write_cfg, work / "write"))
    select = SelectorConfig(kind=args.selector)
    warm = ReadConfig(
        init_from=str(work / "write" / "model"), selector=select, train_with="gold", qa_weight=0.0,
        retrieval_weight=1.0, lr_selector=1e-2, lr_projection=0.0, max_steps=1000, batch_size=32, seed=args.seed,
    )  # fmt: skip
    timed("pqa selector warm-up", lambda: train_read(corpus, train_q, warm, work / "selector"))
    read = ReadConfig(
        init_from=str(work / "selector" / "model"), selector=select, train_with="gold",
        lora=LoraSettings(r=8, alpha=16, dropout=0.05), lr_lm=1e-4, lr_selector=1e-3, lr_projection=1e-4,
        retrieval_weight=0.1, max_steps=args.read_steps, batch_size=4, save_steps=50, seed=args.seed,
    )  # fmt: skip
    timed("pqa read", lambda: train_read(corpus, train_q, read, work / "read"))

    # xRAG: z fixed to E5 passage embeddings (one token), projector trained to paraphrase, then to answer
    xrag_cfg = write_cfg.model_copy(
        update={
            "pqa": PQAConfig(m_tokens=1, z_dim=384, max_doc_tokens=args.doc_tokens, memory="encoder"),
            "lr_projection": 1e-3,
            "epochs": args.xrag_epochs,
        }
    )
    timed("xrag paraphrase", lambda: write_documents(corpus, xrag_cfg, work / "xrag-write"))
    xread = ReadConfig(
        init_from=str(work / "xrag-write" / "model"), train_with="gold", lr_projection=1e-4, lr_selector=1e-3,
        retrieval_weight=0.0, max_steps=args.xrag_read_steps, batch_size=4, save_steps=50, seed=args.seed,
    )  # fmt: skip
    timed("xrag qa", lambda: train_read(corpus, train_q, xread, work / "xrag-read"))

    # CLaRa on the same paragraphs and training questions, as many memory tokens as PQA's z
    train_set = QASet(corpus, train_q, name="train")
    bm25 = BM25Retriever("bigram-stem")
    bm25.index(corpus)
    rate = max(1, args.doc_tokens // args.m_tokens)
    clara = ClaraConfig(doc_max_length=args.doc_tokens, compression_rate=rate, top_k=1)
    c1 = ClaraTrainConfig(base=args.base, stage=1, clara=clara, max_steps=args.clara_steps, batch_size=2, save_steps=20)
    timed("clara stage 1", lambda: train_clara(stage1_from_qa(train_set), c1, work / "clara1"))
    c2 = c1.model_copy(update={"stage": 2, "init_from": str(work / "clara1" / "model")})
    timed(
        "clara stage 2",
        lambda: train_clara(retrieval_examples(train_set, bm25, k=1, oracle=True), c2, work / "clara2"),
    )

    result = timed(
        "compare",
        lambda: compare_systems(
            work / "read" / "model", corpus, test_q, k=1, clara_dir=work / "clara2" / "model",
            xrag_dir=work / "xrag-read" / "model", written_dir=work / "write" / "model", identify=args.identify,
            regenerate=10, show_progress=True,
        ),
    )  # fmt: skip
    console.print(comparison_table(f"KorQuAD 1.0, {len(test_q)} test questions, k=1", result["rows"]))
    console.print(write_table(result["write"]))

    sweep_rows = []
    for m in [int(v) for v in args.sweep.split(",") if v.strip()]:
        docs = corpus.subset(range(min(args.sweep_docs, len(corpus))))
        cfg = write_cfg.model_copy(update={"pqa": pqa.model_copy(update={"m_tokens": m}), "fit_fast_init": False})
        out = work / f"sweep-m{m}"
        run = timed(f"sweep m_tokens={m}", lambda cfg=cfg, out=out, docs=docs: write_documents(docs, cfg, out))
        model, _, _, _ = load_pqa(out / "model")
        q = write_quality(model, docs.contents(True), identify=len(docs), regenerate=0, random_projection=False)
        sweep_rows.append(
            {
                "m_tokens": m,
                "identification_top1": q["identification"]["top1"],
                "shuffled_top1": q["shuffled"]["top1"],
                "token_acc": q["token_acc"],
                "nll": q["nll"],
                "write_seconds": run["seconds"],
            }
        )
        del model
    args.output.parent.mkdir(parents=True, exist_ok=True)
    if sweep_rows:
        table = Table(title=f"write-phase sweep: {args.sweep_docs} paragraphs, z_dim {args.z_dim}")
        for c in sweep_rows[0]:
            table.add_column(c, justify="right")
        for r in sweep_rows:
            table.add_row(*(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r.values()))
        console.print(table)
        plot_sweep(
            sweep_rows,
            "m_tokens",
            ["identification_top1", "token_acc", "nll"],
            args.output.with_name("pqa_korquad_sweep.png"),
            title=f"PQA write phase on {args.sweep_docs} KorQuAD paragraphs (Gemma 3 270M)",
            log_x=True,
        )
    runs = [
        RunSummary(n, metrics={k: r[k] / 100 for k in ("em_korquad", "f1_korquad") if k in r})
        for n, r in result["rows"].items()
    ]
    plot_metrics(runs, ["em_korquad", "f1_korquad"], args.output.with_suffix(".png"), title="KorQuAD, k=1 (÷100)")
    record = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "machine": platform.platform(),
        "paragraphs": len(corpus),
        "train_questions": len(train_q),
        "test_questions": len(test_q),
        "timings_seconds": timings,
        "total_seconds": time.perf_counter() - t_start,
        "comparison": result,
        "sweep": sweep_rows,
    }
    atomic.write_json(args.output, json.loads(json.dumps(record, default=str)))
    console.print(f"wrote {args.output} (+ .png, _sweep.png) in {record['total_seconds'] / 60:.0f} min")


if __name__ == "__main__":
    main()
