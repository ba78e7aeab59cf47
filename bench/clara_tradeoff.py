"""CLaRa's compression trade-off: what comes back from the memory tokens as the rate rises.

    python bench/clara_tradeoff.py [--rates 2,4,8,16] [--steps 1000] [--seeds 0,1,2] [--doc-max-length 16]

Documents are sequences of random words (16 drawn from 8, so 48 bits each and nothing to guess
from language; one token per word here, so a document fills doc_max_length = 16 and the nominal
rate is the measured one; 32 and 128 would leave less than one memory token); a tiny
config-built causal LM learns CLaRa stage 1 with paraphrase records whose paraphrase is the
document itself, i.e. it must regenerate the document from its memory tokens.
Every rate gets the same documents, steps, learning rate and seeds; only the number of memory
tokens per document changes (doc_max_length / rate). Reported per rate (mean ± std over seeds):
exact match of the regenerated document and word accuracy, on the training documents (what the
memory can hold) and on documents never seen in training (whether the compressor learnt to
compress rather than to memorise), as a table, JSON and a plot.

Why reconstruction rather than QA over fact sheets: a tiny LM did not learn to look one fact up
among several within a CPU budget (EM stayed at chance at every rate, also after pre-training
its weights on in-context lookup), so a QA trade-off would have measured that failure, not the
rate. The QA trade-off on a real LM is a GPU-sized run of bench/clara_korquad.py at several
`--rate`s.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from korag import atomic
from korag.memory.clara.config import ClaraConfig, ClaraTrainConfig
from korag.memory.clara.data import ClaraExample
from korag.memory.clara.store import load_clara
from korag.memory.clara.train import train_clara

ROOT = Path(__file__).resolve().parents[1]
console = Console(width=160)
WORDS = ["가람", "나루", "다솜", "라온", "마루", "바다", "사랑", "아라"]


def random_documents(n: int, length: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(length)) for _ in range(n)]


def scores(model, docs: list[str]) -> tuple[float, float]:
    """(exact match %, word accuracy %) of the documents regenerated from their memory tokens."""
    exact = words = total = 0
    with torch.no_grad():
        for s in range(0, len(docs), 64):
            chunk = docs[s : s + 64]
            memory, _ = model.compress(chunk)
            for pred, gold in zip(model.paraphrase(memory), chunk, strict=True):
                p, g = pred.split(), gold.split()
                exact += p == g
                words += sum(a == b for a, b in zip(p, g, strict=False))
                total += len(g)
    return 100 * exact / len(docs), 100 * words / total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="2,4,8,16", help="those that divide --doc-max-length are run")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--words", type=int, default=16, help="words per document")
    ap.add_argument("--train-docs", type=int, default=64)
    ap.add_argument("--test-docs", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--doc-max-length", type=int, default=16)
    ap.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "clara_tradeoff.json")
    args = ap.parse_args()
    rates = [int(r) for r in args.rates.split(",") if args.doc_max_length % int(r) == 0]
    seeds = [int(s) for s in args.seeds.split(",")]

    from transformers import AutoTokenizer

    from korag.models.tiny import build_tiny_causal_lm

    train_docs = random_documents(args.train_docs, args.words, seed=0)
    test_docs = random_documents(args.test_docs, args.words, seed=1)
    work = Path(tempfile.mkdtemp(prefix="clara-tradeoff-"))
    lm_dir = build_tiny_causal_lm(
        work / "lm", texts=train_docs + test_docs, hidden=args.hidden, layers=2, heads=4, vocab_size=400
    )
    tok = AutoTokenizer.from_pretrained(lm_dir)
    longest = max(len(tok(d, add_special_tokens=False)["input_ids"]) for d in train_docs + test_docs)
    if longest > args.doc_max_length:
        raise SystemExit(f"documents reach {longest} tokens; raise --doc-max-length or lower --words")
    console.print(
        f"{args.train_docs} training and {args.test_docs} unseen documents of {args.words} words "
        f"(≤ {longest} tokens, doc_max_length {args.doc_max_length}); rates {rates}, seeds {seeds}"
    )
    records = [ClaraExample((), (d,), (d,), "paraphrase") for d in train_docs]
    rows = []
    for rate in rates:
        for seed in seeds:
            clara = ClaraConfig(
                doc_max_length=args.doc_max_length, compression_rate=rate, top_k=1, lora_r=16, lora_dropout=0.0
            )
            cfg = ClaraTrainConfig(
                base=str(lm_dir),
                stage=1,
                clara=clara,
                max_steps=args.steps,
                batch_size=32,
                learning_rate=3e-3,
                seed=seed,
                save_steps=10**6,
            )
            t0 = time.perf_counter()
            out = work / f"rate{rate}-seed{seed}"
            train_clara(records, cfg, out, show_progress=False)
            model, _ = load_clara(out / "model")
            model.eval()
            em_train, acc_train = scores(model, train_docs)
            em_test, acc_test = scores(model, test_docs)
            row = {
                "rate": rate,
                "memory_tokens": clara.n_mem,
                "seed": seed,
                "em_train": em_train,
                "word_acc_train": acc_train,
                "em_unseen": em_test,
                "word_acc_unseen": acc_test,
                "seconds": time.perf_counter() - t0,
            }
            rows.append(row)
            console.print(row)

    keys = ("em_train", "word_acc_train", "em_unseen", "word_acc_unseen")
    summary = []
    for rate in rates:
        rs = [r for r in rows if r["rate"] == rate]
        s = {"rate": rate, "memory_tokens": rs[0]["memory_tokens"]}
        for key in keys:
            vals = [r[key] for r in rs]
            s[key], s[key + "_std"] = statistics.mean(vals), statistics.pstdev(vals)
        summary.append(s)
    table = Table(
        title=f"CLaRa stage 1 regeneration, tiny LM, {args.steps} steps: by compression rate (mean ± std, "
        f"{len(seeds)} seeds)"
    )
    for c in ("rate", "memory tokens / doc", "EM train", "word acc train", "EM unseen", "word acc unseen"):
        table.add_column(c, justify="right")
    for s in summary:
        table.add_row(str(s["rate"]), str(s["memory_tokens"]), *(f"{s[k]:.1f} ± {s[k + '_std']:.1f}" for k in keys))
    console.print(table)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (
        ("em_train", "EM, training documents"),
        ("word_acc_train", "word accuracy, training documents"),
        ("em_unseen", "EM, unseen documents"),
        ("word_acc_unseen", "word accuracy, unseen documents"),
    ):
        ax.errorbar(rates, [s[key] for s in summary], yerr=[s[key + "_std"] for s in summary], marker="o", label=label)
    ax.axhline(100 / len(WORDS), color="grey", linestyle=":", label="chance (word accuracy)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(rates, [str(r) for r in rates])
    ax.set_xlabel("compression rate (document tokens per memory token)")
    ax.set_ylabel("%")
    ax.set_title("CLaRa: regeneration from memory tokens vs compression")
    ax.legend(fontsize=7)
    fig.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(args.output.with_suffix(".png")) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    settings = vars(args) | {"output": str(args.output)}
    atomic.write_json(args.output, {"settings": settings, "runs": rows, "summary": summary})
    console.print(f"wrote {args.output} and {args.output.with_suffix('.png')}")


if __name__ == "__main__":
    main()
