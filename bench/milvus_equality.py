"""Milvus as the engine, measured for equality: korag's embedded BM25, dense (multilingual-e5-small)
and RRF hybrid against the same vectors searched by Milvus Lite — in file mode (an embedded
server in this process) and as a `milvus-lite server` process on 127.0.0.1.

    nice -n 15 python bench/milvus_equality.py [--data PATH] [--model DIR] [--queries N] [--no-dense]

Data: KorQuAD 1.0 dev (964 paragraphs, 5,774 questions). BM25 goes to Milvus as sparse vectors
(`BM25Retriever.document_vectors` / `query_vectors`), dense as the encoder's normalised vectors in
a FLAT/IP field; each text is encoded once and both engines get the same vectors. The hybrid is
RRF (k = 60) of both fields searched to depth 100: `fuse` of the embedded rankings; in Milvus,
both `RRFRanker` (one request; Milvus orders equal fused scores by passage id) and `fuse` over
one Milvus search per field (`MilvusStore.hybrid(fusion="korag")`).

Target: |ΔMRR@10| ≤ 0.005 per retriever. Also reported: the share of questions whose top-10 list
is identical, and whose top-10 scores are (lists differing only in the order of tied passages);
upsert throughput (with flush) and search latency (batches of 256 questions, and one question per
call).

Prints tables and writes bench/results/milvus_equality.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from korag.collections.milvus import MilvusStore
from korag.data.load import load
from korag.data.schema import Ranking, RetrievalSet
from korag.eval.ir import evaluate_ranking
from korag.retrieval.bm25 import BM25Retriever
from korag.retrieval.fusion import fuse

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "korquad" / "KorQuAD_v1.0_dev.json"
OUT = ROOT / "bench" / "results" / "milvus_equality.json"
METRICS = ["mrr@10", "recall@1", "recall@10"]
DEPTH = 100  # hybrid: each field searched this deep (HybridRetriever's default)
TARGET = 0.005
LATENCY_QUERIES = 200
console = Console(width=200)


def evaluate(ranking: Ranking, rs: RetrievalSet) -> dict[str, float]:
    return evaluate_ranking(ranking, rs.qrels, METRICS).metrics


def as_ranking(qids: list[str], results: list[list[tuple[str, float]]], doc_ids: list[str]) -> Ranking:
    return Ranking.from_dict(dict(zip(qids, results, strict=True)), doc_ids)


def same_top10(a: Ranking, b: Ranking) -> tuple[float, float]:
    """Shares of queries whose top-10 lists are identical (ids and order), and whose top-10
    scores are equal (to float32 rounding: lists differing only in the order of tied passages)."""
    ids = scores = 0
    for (_, x), (_, y) in zip(a.items(), b.items(), strict=True):
        x, y = x[:10], y[:10]
        ids += [d for d, _ in x] == [d for d, _ in y]
        scores += len(x) == len(y) and np.allclose([s for _, s in x], [s for _, s in y], rtol=1e-5, atol=1e-6)
    return ids / max(1, len(a)), scores / max(1, len(a))


def compare(engine: str, rankings: dict[str, Ranking], ref: dict[str, Ranking], rows: list[dict], rs) -> list[dict]:
    """Metrics of one engine's rankings, each against the embedded ranking of its retriever."""
    out = []
    for name, r in rankings.items():
        base = name.split(":")[0]  # "hybrid: …" is compared with the embedded hybrid
        m = evaluate(r.top(10), rs)
        embedded_mrr = next(x["mrr@10"] for x in rows if x["retriever"] == base and "embedded" in x["engine"])
        same_ids, same_scores = same_top10(r.top(10), ref[base].top(10))
        out.append(
            {
                "retriever": name,
                "engine": engine,
                **m,
                "delta_mrr@10": m["mrr@10"] - embedded_mrr,
                "same_top10": same_ids,
                "same_top10_scores": same_scores,
            }
        )
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`milvus-lite server` on 127.0.0.1 in a child process."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(data_dir)]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port)]
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = self.proc.stdout.readline()
        if "listening" not in line:
            self.stop()
            raise RuntimeError(f"milvus-lite server did not start: {line!r}")
        self.startup_seconds = time.perf_counter() - t0
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def embedded(rs: RetrievalSet, bm25: BM25Retriever, dense) -> tuple[dict, dict]:
    """Rankings (depth 100) and search times of korag's own indexes."""
    rankings, seconds = {}, {}
    t0 = time.perf_counter()
    rankings["bm25"] = bm25.search(rs.queries, k=DEPTH)
    seconds["bm25"] = time.perf_counter() - t0
    if dense is not None:
        rankings["dense"] = dense["retriever"].search(rs.queries, k=DEPTH)  # the memoised question vectors
        seconds["dense"] = dense["retriever"].timings["search_seconds"]
        t0 = time.perf_counter()
        rankings["hybrid"] = fuse([rankings["bm25"], rankings["dense"]], method="rrf", rrf_k=60, k=10)
        seconds["hybrid"] = time.perf_counter() - t0 + seconds["bm25"] + seconds["dense"]
    return rankings, seconds


def latency(fn, n: int) -> dict[str, float]:
    """Milliseconds of one-question calls: median and 95th percentile."""
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - t0) * 1000)
    return {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95))}


def in_milvus(store: MilvusStore, rs: RetrievalSet, bm25: BM25Retriever, dense, q_bm25, q_dense) -> dict:
    """Load the corpus into `store`, search every question; rankings, timings."""
    c = rs.corpus
    out: dict = {"rankings": {}, "timings": {}}
    store.ensure()
    t0 = time.perf_counter()
    store.upsert(
        c.ids,
        c.texts,
        c.titles,
        c.metas,
        dense=dense["docs"] if dense is not None else None,
        bm25=bm25.document_vectors(),
        bm25_avgdl=float(bm25.term_counts().doc_lengths.mean()),
    )
    up = time.perf_counter() - t0
    out["timings"]["upsert_rows_per_second"] = len(c) / up
    out["timings"]["upsert_seconds"] = up
    qids = rs.queries.ids
    fields = {"bm25": q_bm25} | ({"dense": q_dense} if dense is not None else {})
    for name, q in fields.items():
        t0 = time.perf_counter()
        res = store.search(name, q, k=DEPTH)
        out["timings"][f"{name}_queries_per_second"] = len(qids) / (time.perf_counter() - t0)
        out["rankings"][name] = as_ranking(qids, res, c.ids)
        out["timings"][f"{name}_latency"] = latency(
            lambda i, name=name, q=q: store.search(name, q[i : i + 1], k=10), LATENCY_QUERIES
        )
    # Milvus' RRFRanker in one request, and korag's fuse over one Milvus search per field
    for label, fusion in (("hybrid: Milvus RRFRanker", "milvus"), ("hybrid: korag fuse", "korag")):
        if dense is None:
            break
        t0 = time.perf_counter()
        res = store.hybrid(fields, k=10, method="rrf", rrf_k=60, depth=DEPTH, fusion=fusion)
        out["timings"][f"{label}_queries_per_second"] = len(qids) / (time.perf_counter() - t0)
        out["rankings"][label] = as_ranking(qids, res, c.ids)
        out["timings"][f"{label}_latency"] = latency(
            lambda i, fusion=fusion: store.hybrid(
                {f: q[i : i + 1] for f, q in fields.items()}, k=10, depth=DEPTH, fusion=fusion
            ),
            LATENCY_QUERIES,
        )
    store.drop()
    return out


def encode(model: str, rs: RetrievalSet) -> tuple[dict, np.ndarray, dict]:
    """e5-small vectors of every paragraph and question, each text encoded once: the embedded
    `DenseRetriever` indexes the paragraph vectors and reuses the question vectors it encoded."""
    from korag.retrieval.dense import DenseRetriever

    class OnceEncoded(DenseRetriever):
        """Encodes a list of questions once; a second search of the same list reuses the vectors."""

        memo: tuple[list[str], np.ndarray] | None = None

        def encode_queries(self, texts, *, show_progress: bool = False) -> np.ndarray:
            if self.memo is None or self.memo[0] != list(texts):
                self.memo = (list(texts), super().encode_queries(texts, show_progress=show_progress))
            return self.memo[1]

    d = OnceEncoded(model)
    t0 = time.perf_counter()
    docs = d.encode_documents(rs.corpus.contents(d.with_title), show_progress=True)
    t1 = time.perf_counter()
    queries = d.encode_queries(rs.queries.texts, show_progress=True)
    t2 = time.perf_counter()
    d.index_vectors(docs, rs.corpus)
    speed = {"passages_per_second": len(rs.corpus) / (t1 - t0), "questions_per_second": len(rs.queries) / (t2 - t1)}
    return {"docs": docs, "label": d.label(), "retriever": d}, queries, speed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--model", default=None, help="dense model directory [default: the offline e5-small]")
    ap.add_argument("--queries", type=int, default=0, help="use only the first N questions (0: all)")
    ap.add_argument("--no-dense", action="store_true", help="BM25 only (no encoder, no hybrid)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    rs = load(args.data).to_retrieval_set()
    if args.queries:
        keep = rs.queries.ids[: args.queries]
        rs = RetrievalSet(rs.corpus, rs.queries.subset(keep), rs.qrels.restrict(keep), name=rs.name)
    console.print(f"{rs.name}: {len(rs.corpus)} paragraphs, {len(rs.queries)} questions")

    bm25 = BM25Retriever()
    t0 = time.perf_counter()
    bm25.index(rs.corpus)
    bm25_index_seconds = time.perf_counter() - t0
    q_bm25 = bm25.query_vectors(rs.queries.texts)

    dense, q_dense, encode_speed = None, None, {}
    if not args.no_dense:
        from korag.models.offline import offline_model_dir

        model = args.model or str(offline_model_dir("e5-small"))
        dense, q_dense, encode_speed = encode(model, rs)
        console.print(f"encoded with {dense['label']}: {encode_speed}")

    ref, ref_seconds = embedded(rs, bm25, dense)
    rows: list[dict] = []
    for name, r in ref.items():
        rows.append({"retriever": name, "engine": "korag (embedded)", **evaluate(r.top(10), rs)})

    timings: dict[str, dict] = {
        "korag (embedded)": {
            "bm25_index_seconds": bm25_index_seconds,
            **{f"{k}_queries_per_second": len(rs.queries) / v for k, v in ref_seconds.items()},
        }
    }
    dim = dense["docs"].shape[1] if dense is not None else None
    with tempfile.TemporaryDirectory(prefix="korag-milvus-bench-") as tmp:
        engines = {
            "Milvus Lite (file)": lambda: MilvusStore(
                Path(tmp) / "lite.db", "korag_korquad", dense_dim=dim, sparse=False
            )
        }
        server = Server(Path(tmp) / "server")
        engines["milvus-lite server"] = lambda: MilvusStore(server.uri, "korag_korquad", dense_dim=dim, sparse=False)
        try:
            for engine, make in engines.items():
                with make() as store:
                    got = in_milvus(store, rs, bm25, dense, q_bm25, q_dense)
                timings[engine] = got["timings"]
                rows += compare(engine, got["rankings"], ref, rows, rs)
            timings["milvus-lite server"]["startup_seconds"] = server.startup_seconds
        finally:
            server.stop()

    table = Table(title=f"MRR@10 on {rs.name}: korag's indexes vs Milvus (target |Δ| ≤ {TARGET})")
    for col in ("retriever", "engine", *METRICS, "ΔMRR@10", "same top-10", "same top-10 scores"):
        table.add_column(col, justify="left" if col in ("retriever", "engine") else "right")
    for r in sorted(
        rows,
        key=lambda x: (
            ["bm25", "dense", "hybrid"].index(x["retriever"].split(":")[0]),
            x["retriever"],
            x["engine"] != "korag (embedded)",
        ),
    ):
        delta = r.get("delta_mrr@10")
        table.add_row(
            r["retriever"],
            r["engine"],
            *(f"{r[m]:.4f}" for m in METRICS),
            "" if delta is None else f"{delta:+.4f}",
            "" if "same_top10" not in r else f"{r['same_top10']:.1%}",
            "" if "same_top10" not in r else f"{r['same_top10_scores']:.1%}",
        )
    console.print(table)

    t = Table(title="Speed (2 shared cores)")
    for col in (
        "engine",
        "upsert rows/s",
        "bm25 q/s",
        "dense q/s",
        "hybrid q/s (RRFRanker / fuse)",
        "bm25 1-q p50/p95 ms",
        "dense 1-q p50/p95 ms",
        "hybrid 1-q p50/p95 ms (RRFRanker / fuse)",
    ):
        t.add_column(col, justify="left" if col == "engine" else "right")
    for engine, tm in timings.items():

        def lat(*fields: str, tm=tm) -> str:
            xs = [tm[f"{f}_latency"] for f in fields if f"{f}_latency" in tm]
            return " | ".join(f"{x['p50_ms']:.1f} / {x['p95_ms']:.1f}" for x in xs)

        def qps(*fields: str, tm=tm) -> str:
            return " / ".join(f"{tm[f'{f}_queries_per_second']:.0f}" for f in fields if f"{f}_queries_per_second" in tm)

        hybrids = ("hybrid", "hybrid: Milvus RRFRanker", "hybrid: korag fuse")
        t.add_row(
            engine,
            f"{tm['upsert_rows_per_second']:.0f}" if "upsert_rows_per_second" in tm else "",
            qps("bm25"),
            qps("dense"),
            qps(*hybrids),
            lat("bm25"),
            lat("dense"),
            lat(*hybrids),
        )
    console.print(t)

    worst = max((abs(r["delta_mrr@10"]) for r in rows if "delta_mrr@10" in r), default=0.0)
    console.print(f"largest |ΔMRR@10| = {worst:.4f} ({'within' if worst <= TARGET else 'OVER'} the target {TARGET})")
    import pymilvus

    result = {
        "data": str(args.data),
        "paragraphs": len(rs.corpus),
        "questions": len(rs.queries),
        "dense_model": dense["label"] if dense is not None else None,
        "bm25": bm25.settings(),
        "hybrid": {"method": "rrf", "rrf_k": 60, "depth": DEPTH},
        "target_abs_delta_mrr@10": TARGET,
        "largest_abs_delta_mrr@10": worst,
        "results": rows,
        "timings": timings,
        "encoding": encode_speed,
        "versions": {
            "python": platform.python_version(),
            "pymilvus": pymilvus.__version__,
            "milvus_lite": _version("milvus-lite"),
        },
        "machine": platform.machine(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    console.print(f"wrote {args.out}")


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


if __name__ == "__main__":
    main()
