"""A `korag sweep` of parametric QA on the constructed fact world with a tiny LM: memory size ×
selector × seed, every point a cached stage of the `pqa` flow.

    python bench/pqa_sweep_tiny.py [--people 64] [--grid "m_tokens=1,2,4,8 read.selector=cosine,router seed=0,1"]

The LM is a 2-layer Llama pre-trained on a background world's language (not on the facts under
test); the query encoder a 1-layer random BERT. Each point writes the world's documents (z_dim
small enough that the memory's size bounds what comes back), warms the selector up on
L_retrieval, trains a LoRA reader on gold memories and evaluates on the training facts:
identification, token accuracy, EM from gold and from selected memories, recall@1. Prints the
sweep table; writes sweep.md/json and one plot per numeric key (here: metrics against m_tokens,
one line per selector, mean ± std over seeds) into the workspace and copies them to
bench/results/.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import yaml
from rich.console import Console

from korag.memory.pqa.synthetic import SyntheticWorld, lm_texts
from korag.models.tiny import build_tiny_causal_lm, build_tiny_encoder, pretrain_tiny_causal_lm
from korag.pipeline.sweep import run_sweep, sweep_markdown

ROOT = Path(__file__).resolve().parents[1]
console = Console(width=200)
METRICS = ["identification_top1", "token_acc", "em_korquad_gold", "em_korquad", "recall@1"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--people", type=int, default=64)
    ap.add_argument("--grid", default="m_tokens=1,2,4,8 read.selector=cosine,router,attention seed=0,1,2")
    ap.add_argument("--z-dim", type=int, default=8)
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "work" / "pqa-sweep")
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args()
    t0 = time.perf_counter()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    world = SyntheticWorld(args.people, seed=0)
    corpus = world.corpus()
    questions = world.one_hop()
    lm, encoder = work / "lm", work / "encoder"
    if not (lm / "config.json").is_file():
        taken = {p.name for p in world.people} | set(world.mayors.values())
        texts = lm_texts(SyntheticWorld(1500, seed=1, exclude=taken))
        build_tiny_causal_lm(lm, texts=texts + corpus.texts, hidden=64, layers=2, heads=4, vocab_size=800)
        pretrain_tiny_causal_lm(lm, texts, steps=600)
    if not (encoder / "modules.json").is_file():
        texts = corpus.texts + [e.question for e in questions]
        build_tiny_encoder(encoder, texts=texts, hidden=64, layers=1, heads=2, vocab_size=1200)
    data = work / "world.json"
    data.write_text(json.dumps(world.hotpotqa(questions), ensure_ascii=False), encoding="utf-8")
    recipe = {
        "name": "pqa-world",
        "flow": "pqa",
        "description": "parametric QA on the constructed fact world (tiny LM)",
        "data": {"path": str(data)},
        "base": str(lm),
        "encoder": str(encoder),
        "device": "cpu",
        "write": {"m_tokens": 4, "z_dim": args.z_dim, "max_doc_tokens": 48, "with_title": False, "lr_z": 3e-2,
                  "max_steps": 400, "batch_size": 32},
        "read": {"selector": "cosine", "train_with": "gold", "retrieval_weight": 1.0, "lora_r": 16, "lr_lm": 3e-3,
                 "lr_projection": 1e-3, "selector_warmup_steps": 1500, "max_steps": 300, "batch_size": 16},
        "eval": {"identify": len(corpus), "regenerate": 8},
    }  # fmt: skip
    path = work / "pqa-world.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")

    def point(i: int, n: int, settings: dict) -> None:
        console.print(f"point {i + 1}/{n}: {settings} ({time.perf_counter() - t0:.0f} s)")

    result = run_sweep(path, [args.grid], workspace=work / "ws", metrics=METRICS, show_progress=False, on_point=point)
    keys = [k for k in result.keys if k != "seed"]
    console.print(sweep_markdown(result.rows, keys, METRICS))
    args.results.mkdir(parents=True, exist_ok=True)
    for name, f in result.files.items():
        shutil.copy(f, args.results / f"pqa_sweep_tiny_{f.name}")
        console.print(f"{name}: {args.results / f'pqa_sweep_tiny_{f.name}'}")
    console.print(f"{len(result.points)} points, {len(result.executed)} stages run, {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
