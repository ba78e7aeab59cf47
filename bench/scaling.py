"""Scaling on this machine: 1 vs 2 processes (torchrun, CPU, gloo) for the three heavy stages.

    python bench/scaling.py --quick                  # tiny models, a few steps: checks the machinery (~2 min)
    python bench/scaling.py                          # the measured run (tens of minutes on 2 cores)
    python bench/scaling.py --dense-model e5-small   # dense training and encoding with E5-small

Measures, each at 1 and 2 processes with the cores shared out (``OMP_NUM_THREADS`` = cores /
processes, so both settings use the whole machine):

- dense training: pairs per second over the run's steps (sentence-transformers' trainer, global
  batch fixed, in-batch negatives gathered across processes);
- the memory models' loop: records per second (parametric QA's write phase on a tiny Llama);
- corpus encoding (`korag encode`): passages per second, wall time of the main process from the
  encoder's start to the manifest (model loading included);
- generation fanned out (`--llm URL,URL`): requests per second against 1 and 2 local `korag llm
  serve` processes (the config-built causal LM; each server gets cores / servers threads).

Prints a table and writes ``bench/results/scaling.json``. On a 2-core machine two processes
cannot be faster than one with both cores; what the figures show is the overhead of the
distributed path (gradient all-reduce, gathering negatives), which is what a multi-GPU run pays
per step on top of its gain. docs/scaling.md explains what to expect on GPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

CITIES = "가나다라마바사아자차카타파하"
WORDS = ["항구", "산업", "농업", "관광", "교육", "역사", "과학", "문화", "해양", "산악"]


def passages(n: int) -> list[str]:
    """`n` distinct Korean passages of a synthetic world."""
    out = []
    for i in range(n):
        c, w, v = CITIES[i % len(CITIES)], WORDS[(i // 7) % len(WORDS)], WORDS[(i // 3) % len(WORDS)]
        out.append(f"{c}{i}시는 {w} 도시이며 {v} 시설이 {i % 97}개 있다. 인구는 {1000 + i * 13}명이다.")
    return out


# -- workers (run under the launcher) -------------------------------------------------------------
def work_dense(spec: dict, out: Path) -> dict:
    from korag.data.schema import Corpus, Qrels, Queries, RetrievalSet
    from korag.models.device import is_main_process
    from korag.training.config import DenseTrainConfig
    from korag.training.dense import train_dense

    docs = passages(spec["pairs"])
    n = len(docs)
    rs = RetrievalSet(
        Corpus([f"d{i}" for i in range(n)], docs),
        Queries([f"q{i}" for i in range(n)], [f"{d.split('시는')[0]}시는 어떤 도시인가?" for d in docs]),
        Qrels.from_rows((f"q{i}", f"d{i}", 1) for i in range(n)),
    )
    cfg = DenseTrainConfig(
        base=spec["dense_model"], batch_size=spec["dense_batch"], max_steps=spec["dense_steps"], eval_fraction=0.0,
        eval_steps=10_000, keep_checkpoints=False, device="cpu", max_seq_length=64, logging_steps=1000,
    )  # fmt: skip
    t0 = time.perf_counter()
    r = train_dense(rs, cfg, out, show_progress=False)
    seconds = time.perf_counter() - t0
    samples = spec["dense_batch"] * spec["dense_steps"]
    return {"per_second": samples / r.train_seconds, "train_seconds": r.train_seconds, "wall_seconds": seconds,
            "main": is_main_process()}  # fmt: skip


def work_memory(spec: dict, out: Path) -> dict:
    from korag.data.schema import Corpus
    from korag.memory.pqa.config import PQAConfig, WriteConfig
    from korag.memory.pqa.train import write_documents
    from korag.models.device import is_main_process

    docs = passages(spec["records"])
    cfg = WriteConfig(
        base=spec["lm"], pqa=PQAConfig(m_tokens=2, z_dim=16, max_doc_tokens=48), max_steps=spec["memory_steps"],
        batch_size=spec["memory_batch"], save_steps=10_000, device="cpu", fit_fast_init=False,
    )  # fmt: skip
    r = write_documents(Corpus([f"d{i}" for i in range(len(docs))], docs), cfg, out, show_progress=False)
    samples = spec["memory_batch"] * spec["memory_steps"]
    return {"per_second": samples / r["seconds"], "train_seconds": r["seconds"], "main": is_main_process()}


def work_encode(spec: dict, out: Path) -> dict:
    from korag.models.device import is_main_process
    from korag.retrieval.encode_shards import encode_corpus

    t0 = time.perf_counter()
    r = encode_corpus(spec["corpus"], spec["dense_model"], out, shard_size=spec["shard_size"], device="cpu")
    seconds = time.perf_counter() - t0
    return {"per_second": r.passages / seconds, "wall_seconds": seconds, "main": is_main_process()}


WORKERS = {"dense": work_dense, "memory": work_memory, "encode": work_encode}


def worker_main(kind: str, spec_path: str, out: str, report: str) -> None:
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    result = WORKERS[kind](spec, Path(out))
    if result.pop("main"):
        Path(report).write_text(json.dumps(result), encoding="utf-8")


# -- generation: servers started here, the fan-out client in this process -------------------------
def start_servers(lm: str, n: int) -> list[tuple[subprocess.Popen, str]]:
    """`n` `korag llm serve` processes on free ports, sharing the cores; (process, base URL) each."""
    cores = os.cpu_count() or 1
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "300", "PYTHONWARNINGS": "ignore",
           "OMP_NUM_THREADS": str(max(1, cores // n))}  # fmt: skip
    cmd = [sys.executable, "-m", "korag.cli", "llm", "serve", lm, "--port", "0", "--name", "tiny"]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) for _ in range(n)
    ]
    out = []
    for proc in procs:
        for line in proc.stdout:  # type: ignore[union-attr]
            if m := re.search(r"(http://127\.0\.0\.1:\d+/v1)", line):
                out.append((proc, m.group(1)))
                # keep reading what the server prints, or a full pipe would stall it
                threading.Thread(target=proc.stdout.read, daemon=True).start()  # type: ignore[union-attr]
                break
        else:
            raise SystemExit("korag llm serve did not start")
    return out


def run_generate(servers: int, spec: dict) -> dict:
    """Requests/s of a fan-out over `servers` local servers: one prompt per passage, greedy."""
    from korag.synth.fanout import FanoutGenerator
    from korag.synth.generation import GenerationConfig

    started = start_servers(spec["lm"], servers)
    try:
        fan = FanoutGenerator([url for _, url in started], "tiny", concurrency=2, timeout=120)
        prompts = [f"{t}\n질문:" for t in passages(spec["prompts"])]
        t0 = time.perf_counter()
        fan.generate(prompts, GenerationConfig(max_tokens=spec["gen_tokens"], temperature=0.0))
        seconds = time.perf_counter() - t0
        per = [e.row() for e in fan.endpoint_stats]
    finally:
        for proc, _ in started:
            proc.kill()
            proc.wait()
    return {"per_second": len(prompts) / seconds, "wall_seconds": seconds, "endpoints": per}


# -- driver ---------------------------------------------------------------------------------------
def prepare(work: Path, quick: bool, dense_model: str | None) -> dict:
    from korag.models.tiny import build_tiny_causal_lm, build_tiny_encoder

    n = 64 if quick else 4000
    texts = passages(n)
    if dense_model is None:
        size = {"hidden": 32, "layers": 1, "heads": 2} if quick else {"hidden": 256, "layers": 4, "heads": 4}
        dense_model = str(build_tiny_encoder(work / "encoder", texts=texts[:500], vocab_size=2000, **size))
    lm_size = {"hidden": 32, "layers": 1, "heads": 2} if quick else {"hidden": 128, "layers": 2, "heads": 4}
    lm = build_tiny_causal_lm(work / "lm", texts=texts[:500], vocab_size=1000, **lm_size)
    corpus = work / "corpus.jsonl"
    corpus.write_text(
        "".join(json.dumps({"_id": f"p{i}", "text": t}, ensure_ascii=False) + "\n" for i, t in enumerate(texts)),
        encoding="utf-8",
    )
    return {
        "dense_model": dense_model, "lm": str(lm), "corpus": str(corpus), "pairs": n, "records": min(n, 512),
        "dense_batch": 8 if quick else 32, "dense_steps": 3 if quick else 20,
        "memory_batch": 4 if quick else 16, "memory_steps": 3 if quick else 30,
        "shard_size": 16 if quick else 500,
        "prompts": 8 if quick else 96, "gen_tokens": 8 if quick else 24,
    }  # fmt: skip


def run_one(kind: str, processes: int, spec_path: Path, work: Path) -> dict:
    from korag.training.distributed import cpu_environment, launch_command

    out, report = work / f"{kind}-{processes}", work / f"{kind}-{processes}.json"
    cores = os.cpu_count() or 1
    cmd = launch_command(
        [str(Path(__file__).resolve()), "--worker", kind, str(spec_path), str(out), str(report)], processes
    )
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=cpu_environment(max(1, cores // processes)), capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{kind} on {processes} process(es) failed:\n{r.stderr[-4000:]}")
    result = json.loads(report.read_text(encoding="utf-8"))
    result["launch_seconds"] = time.perf_counter() - t0
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny models and a few steps (checks the machinery)")
    parser.add_argument("--dense-model", help="dense model for training and encoding (default: a config-built one)")
    parser.add_argument("--processes", default="1,2", help="process counts to compare")
    parser.add_argument("--worker", nargs=4, metavar=("KIND", "SPEC", "OUT", "REPORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(*args.worker)
        return

    sys.path.insert(0, str(ROOT / "src"))
    from korag import atomic

    counts = [int(p) for p in args.processes.split(",")]
    rows: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory(prefix="korag-scaling-") as tmp:
        work = Path(tmp)
        spec = prepare(work, args.quick, args.dense_model)
        spec_path = work / "spec.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        for kind in WORKERS:
            for p in counts:
                print(f"{kind} on {p} process(es) …", flush=True)
                rows.setdefault(kind, {})[str(p)] = run_one(kind, p, spec_path, work)
        for p in counts:
            print(f"generation on {p} server(s) …", flush=True)
            rows.setdefault("generate", {})[str(p)] = run_generate(p, spec)
    units = {"dense": "pairs/s", "memory": "records/s", "encode": "passages/s", "generate": "requests/s"}
    print(f"\n{'stage':<10}{'unit':<12}" + "".join(f"{f'{p} proc':>12}" for p in counts) + f"{'ratio':>9}")
    for kind, by in rows.items():
        vals = [by[str(p)]["per_second"] for p in counts]
        ratio = vals[-1] / vals[0] if vals[0] else float("nan")
        print(f"{kind:<10}{units[kind]:<12}" + "".join(f"{v:>12.1f}" for v in vals) + f"{ratio:>9.2f}")
    spec.pop("corpus")
    payload = {
        "quick": args.quick, "cores": os.cpu_count(), "processes": counts, "launcher": "torchrun (CPU, gloo)",
        "settings": {k: v for k, v in spec.items() if k not in ("lm",)}, "results": rows, "units": units,
    }  # fmt: skip
    atomic.write_json(RESULTS / "scaling.json", payload)
    print(f"\nwritten: {RESULTS / 'scaling.json'}")


if __name__ == "__main__":
    main()
