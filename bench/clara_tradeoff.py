"""CLaRa's compression trade-off: answer accuracy against compression rate, same data and budget.

    python bench/clara_tradeoff.py [--rates 4,16,32,128] [--steps 400] [--seeds 0,1]

Synthetic fact sheets (an invented country with attributes drawn from 8 values each) are the
documents. A tiny config-built causal LM is first pre-trained, all weights, to answer questions
about sheets *in its context* (other countries than the ones below, so it knows no answer by
heart); then CLaRa stage 2 (answer from the compressed sheet) is trained at each compression rate
with the same steps, learning rate and seed. Memory per document shrinks with the rate, so the
facts must share fewer vectors. Closed-book (chance: 1 in 8) and full-text rows come from the
same pre-trained LM. Reported: EM on the trained questions (what the memory retains) and on sheets
never seen in training (whether the compressor learnt to compress rather than to memorise), per
rate and seed, with a plot. The real-LM run is bench/clara_korquad.py; this isolates the rate.
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
from korag.memory.clara.data import ClaraExample
from korag.memory.clara.inference import ClaraReader
from korag.memory.clara.model import ClaraConfig
from korag.memory.clara.store import load_clara
from korag.memory.clara.train import ClaraTrainConfig, train_clara

ROOT = Path(__file__).resolve().parents[1]
console = Console(width=160)

ATTRIBUTES = [
    "수도", "언어", "화폐", "국화", "동물", "음식", "산", "강",
    "색", "악기", "춤", "축제", "나무", "새", "보석", "과일",
]  # fmt: skip
VALUES = ["가람", "나루", "다솜", "라온", "마루", "바다", "사랑", "아라"]
SYLLABLES = "갑을병정무기경신임계자축인묘진사오미"


def fact_sheets(n: int, seed: int) -> list[tuple[str, dict[str, str]]]:
    """`n` invented countries, each with a random value per attribute."""
    rng = random.Random(seed)
    names = rng.sample([a + b + "국" for a in SYLLABLES for b in SYLLABLES], n)
    return [(name, {a: rng.choice(VALUES) for a in ATTRIBUTES}) for name in names]


def sheet_text(name: str, facts: dict[str, str]) -> str:
    return " ".join(f"{name}의 {a}는 {v}." for a, v in facts.items())


def qa_texts(sheets) -> list[str]:
    """In-context QA lines in the baselines' prompt format, for pre-training the LM."""
    return [
        f"Background:\n{sheet_text(name, facts)}\n\nQuestion: {name}의 {a}는?\nAnswer: {v}"
        for name, facts in sheets
        for a, v in facts.items()
    ]


def examples(sheets) -> list[ClaraExample]:
    return [
        ClaraExample((f"{name}의 {a}는?",), (v,), (sheet_text(name, facts),))
        for name, facts in sheets
        for a, v in facts.items()
    ]


def exact_match(reader: ClaraReader, data: list[ClaraExample], system: str = "clara") -> float:
    hits = 0
    for s in range(0, len(data), 64):
        chunk = data[s : s + 64]
        questions, docs = [e.questions[0] for e in chunk], [list(e.docs) for e in chunk]
        if system == "clara":
            preds = reader.answer(questions, docs)
        else:
            preds = reader.baseline(questions, docs if system == "full-text" else None)
        hits += sum(p.strip(" .") == e.answers[0] for p, e in zip(preds, chunk, strict=True))
    return 100 * hits / len(data)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="4,16,32,128", help="those that divide --doc-max-length are run")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--steps", type=int, default=300, help="stage-2 steps per rate and seed")
    ap.add_argument("--attributes", type=int, default=8, help="facts per sheet (at most 16)")
    ap.add_argument("--pretrain-sheets", type=int, default=96)
    ap.add_argument("--pretrain-steps", type=int, default=400)
    ap.add_argument("--train-sheets", type=int, default=24)
    ap.add_argument("--test-sheets", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--doc-max-length", type=int, default=64)
    ap.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "clara_tradeoff.json")
    args = ap.parse_args()
    rates = [int(r) for r in args.rates.split(",") if args.doc_max_length % int(r) == 0]
    seeds = [int(s) for s in args.seeds.split(",")]

    from transformers import AutoTokenizer

    from korag.models.tiny import build_tiny_causal_lm, pretrain_tiny_causal_lm

    global ATTRIBUTES
    ATTRIBUTES = ATTRIBUTES[: args.attributes]
    sheets = fact_sheets(args.pretrain_sheets + args.train_sheets + args.test_sheets, seed=0)
    pre, rest = sheets[: args.pretrain_sheets], sheets[args.pretrain_sheets :]
    train, test = examples(rest[: args.train_sheets]), examples(rest[args.train_sheets :])
    work = Path(tempfile.mkdtemp(prefix="clara-tradeoff-"))
    t0 = time.perf_counter()
    lm_dir = build_tiny_causal_lm(
        work / "lm", texts=qa_texts(sheets), hidden=args.hidden, layers=2, heads=4, vocab_size=600
    )
    pretrain_tiny_causal_lm(lm_dir, qa_texts(pre), steps=args.pretrain_steps, batch_size=32, learning_rate=3e-3)
    tok = AutoTokenizer.from_pretrained(lm_dir)
    longest = max(len(tok(e.docs[0])["input_ids"]) for e in train)
    console.print(
        f"LM pre-trained on {args.pretrain_sheets} other sheets in {time.perf_counter() - t0:.0f} s; "
        f"{len(train)} training questions on {args.train_sheets} sheets, {len(test)} on {args.test_sheets} unseen; "
        f"sheets are up to {longest} tokens (doc_max_length {args.doc_max_length}); rates {rates}"
    )
    rows, baselines = [], {}
    for rate in rates:
        for seed in seeds:
            clara = ClaraConfig(
                doc_max_length=args.doc_max_length, compression_rate=rate, top_k=1, lora_r=16, lora_dropout=0.0
            )
            cfg = ClaraTrainConfig(
                base=str(lm_dir),
                stage=2,
                clara=clara,
                max_steps=args.steps,
                batch_size=32,
                learning_rate=1e-3,
                seed=seed,
                save_steps=10**6,
            )
            t0 = time.perf_counter()
            result = train_clara(train, cfg, work / f"rate{rate}-seed{seed}", show_progress=False)
            model, _ = load_clara(work / f"rate{rate}-seed{seed}" / "model")
            reader = ClaraReader(model, batch_size=64)
            with torch.no_grad():
                if not baselines:
                    for system in ("closed-book", "full-text"):
                        baselines[system] = {
                            "em_train": exact_match(reader, train, system),
                            "em_unseen": exact_match(reader, test, system),
                        }
                    console.print(baselines)
                row = {
                    "rate": rate,
                    "memory_tokens": clara.n_mem,
                    "seed": seed,
                    "em_train": exact_match(reader, train),
                    "em_unseen": exact_match(reader, test),
                    "final_loss": result["last_loss"],
                    "seconds": time.perf_counter() - t0,
                }
            rows.append(row)
            console.print(row)

    table = Table(title=f"CLaRa stage 2, tiny LM, {args.steps} steps: EM by compression rate (mean ± std over seeds)")
    for c in ("rate", "memory tokens / doc", "EM trained questions", "EM unseen sheets", "final loss"):
        table.add_column(c, justify="right")
    summary = []
    for rate in sorted({r["rate"] for r in rows}):
        rs = [r for r in rows if r["rate"] == rate]

        def ms(key: str, rs=rs) -> tuple[float, float]:
            vals = [r[key] for r in rs]
            return statistics.mean(vals), statistics.pstdev(vals)

        s = {"rate": rate, "memory_tokens": rs[0]["memory_tokens"]}
        for key in ("em_train", "em_unseen", "final_loss"):
            s[key], s[key + "_std"] = ms(key)
        summary.append(s)
        table.add_row(
            str(rate),
            str(s["memory_tokens"]),
            f"{s['em_train']:.1f} ± {s['em_train_std']:.1f}",
            f"{s['em_unseen']:.1f} ± {s['em_unseen_std']:.1f}",
            f"{s['final_loss']:.3f}",
        )
    for system, b in baselines.items():
        table.add_row(system, "–", f"{b['em_train']:.1f}", f"{b['em_unseen']:.1f}", "")
    console.print(table)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [s["rate"] for s in summary]
    for key, label in (("em_train", "trained questions"), ("em_unseen", "unseen sheets")):
        ax.errorbar(xs, [s[key] for s in summary], yerr=[s[key + "_std"] for s in summary], marker="o", label=label)
    for (system, b), style in zip(baselines.items(), (":", "--"), strict=True):
        ax.axhline(b["em_unseen"], color="grey", linestyle=style, label=f"{system} (unseen)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel("compression rate (document tokens per memory token)")
    ax.set_ylabel("EM (%)")
    ax.set_title("CLaRa: accuracy vs compression (tiny LM)")
    ax.legend()
    fig.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(args.output.with_suffix(".png")) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    atomic.write_json(
        args.output, {"settings": vars(args) | {"output": str(args.output)}, "runs": rows, "summary": summary}
    )
    console.print(f"wrote {args.output} and {args.output.with_suffix('.png')}")


if __name__ == "__main__":
    main()
