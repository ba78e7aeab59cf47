"""`korag serve` under load, on loopback only, stopping by itself: 8 searchers, 1 writer adding
and removing documents and 1 asker, for 60 s per engine.

    python bench/serve_load.py                              # embedded, Milvus Lite file, Milvus Lite server
    python bench/serve_load.py --engines embedded --duration 30
    python bench/serve_load.py --screenshots                # also the page's screenshots (browser tests)

The collection: the 964 KorQuAD 1.0 dev paragraphs with BM25 + multilingual-e5-small (hybrid
search, RRF). Searchers send the dev questions; the writer adds a document carrying a unique
token, searches that token at once (it must come first: an add that returned is searchable),
and removes every other document it added (a removed one must not come back); the asker asks
with the offline Gemma 3 270M reader. Afterwards the collection is reopened and checked: its
documents are exactly those added and not removed, and every passage is in every index.

Figures: requests/s and p50/p99 latency of search, p50/p99 of ask, adds/s and add latency,
5xx responses, adds not found, removed documents found. Table, and bench/results/serve_load.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
KORQUAD = ROOT.parent / "shared" / "data" / "korquad" / "KorQuAD_v1.0_dev.json"
RESULTS = ROOT / "bench" / "results"
KEY = "bench-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build(home: Path, engine: str, port_for_server: int | None) -> list[str]:
    """Create the collection (KorQuAD paragraphs, BM25 + dense) for `engine`; the questions."""
    from korag.collections import Collection, CollectionConfig, DenseSettings
    from korag.data.load import load
    from korag.data.schema import Document

    qa = load(str(KORQUAD))
    raw: dict = {"name": "korquad", "dense": DenseSettings(model="e5-small").model_dump()}
    if engine == "milvus-file":
        raw["engine"] = {"kind": "milvus", "uri": str(home / "milvus.db")}
    elif engine == "milvus-server":
        raw["engine"] = {"kind": "milvus", "uri": f"http://127.0.0.1:{port_for_server}"}
    coll = Collection.create(home / "collections" / "korquad", CollectionConfig.model_validate(raw))
    t0 = time.perf_counter()
    coll.add_texts([Document(d.id, d.text, d.title) for d in qa.corpus], show_progress=True)
    coll.close()  # the server is another process, and a Milvus Lite file opens in one at a time
    print(f"  indexed {len(qa.corpus)} paragraphs in {time.perf_counter() - t0:.0f} s")
    return [e.question for e in qa.examples]


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = {"search": [], "ask": [], "add": [], "remove": []}
        self.status: dict[int, int] = {}
        self.add_misses = 0
        self.removed_found = 0

    def record(self, kind: str, seconds: float, status: int) -> None:
        with self.lock:
            if status < 400:  # a refused request says nothing about serving speed (and is counted)
                self.latency[kind].append(seconds)
            self.status[status] = self.status.get(status, 0) + 1


def searcher(url: str, questions: list[str], rec: Recorder, stop: threading.Event, seed: int) -> None:
    import httpx

    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=120, headers=AUTH) as c:  # the server's key guards reads too
        while not stop.is_set():
            t0 = time.perf_counter()
            r = c.post("/collections/korquad/search", json={"query": rng.choice(questions), "k": 10})
            rec.record("search", time.perf_counter() - t0, r.status_code)


def asker(url: str, questions: list[str], rec: Recorder, stop: threading.Event) -> None:
    import httpx

    rng = random.Random(99)
    with httpx.Client(base_url=url, timeout=300, headers=AUTH) as c:
        while not stop.is_set():
            t0 = time.perf_counter()
            r = c.post("/collections/korquad/ask", json={"question": rng.choice(questions)})
            rec.record("ask", time.perf_counter() - t0, r.status_code)


def writer(url: str, rec: Recorder, stop: threading.Event, kept: list[str]) -> None:
    import httpx

    with httpx.Client(base_url=url, timeout=300, headers=AUTH) as c:
        i = 0
        while not stop.is_set():
            token = f"qz{i}xkv"
            doc = {
                "id": f"load-{i}",
                "text": f"부하 시험 문서 {i}번: 고유어 {token} 가 들어 있다.",
                "title": "부하 시험",
            }
            t0 = time.perf_counter()
            r = c.post("/collections/korquad/documents", json={"documents": [doc]})
            rec.record("add", time.perf_counter() - t0, r.status_code)
            if r.status_code == 200:
                kept.append(doc["id"])
                hits = c.post("/collections/korquad/search", json={"query": token, "k": 1, "retriever": "bm25"})
                if not hits.json()["results"] or hits.json()["results"][0]["document"] != doc["id"]:
                    rec.add_misses += 1
            if i % 2 == 1:
                gone = kept.pop(-2)
                t0 = time.perf_counter()
                r = c.delete(f"/collections/korquad/documents/{gone}")
                rec.record("remove", time.perf_counter() - t0, r.status_code)
                token_gone = f"qz{gone.split('-')[1]}xkv"
                hits = c.post("/collections/korquad/search", json={"query": token_gone, "k": 3, "retriever": "bm25"})
                rec.removed_found += any(h["document"] == gone for h in hits.json()["results"])
            i += 1


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run_engine(engine: str, duration: float, questions_limit: int) -> dict:
    import httpx

    with tempfile.TemporaryDirectory(prefix=f"korag-load-{engine}-") as tmp:
        home = Path(tmp)
        lite = None
        milvus_port = free_port() if engine == "milvus-server" else None
        if milvus_port:
            lite = subprocess.Popen(
                [
                    "milvus-lite",
                    "server",
                    "--data-dir",
                    str(home / "lite"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(milvus_port),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(2)
        try:
            print(f"{engine}: building the collection")
            questions = build(home, engine, milvus_port)[:questions_limit]
            port = free_port()
            env = {**os.environ, "KORAG_HOME": str(home), "KORAG_API_KEY": KEY}
            server = subprocess.Popen(
                [sys.executable, "-m", "korag.cli", "serve", "korquad", "--port", str(port)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            url = f"http://127.0.0.1:{port}"
            try:
                for _ in range(600):
                    if server.poll() is not None:
                        raise SystemExit(f"{engine}: korag serve exited: {server.stderr.read().decode()[-2000:]}")
                    try:
                        if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                            break
                    except httpx.HTTPError:
                        time.sleep(0.2)
                httpx.post(f"{url}/collections/korquad/ask", json={"question": "워밍업"}, headers=AUTH, timeout=600)
                return measure(url, questions, duration, home) | {"engine": engine}
            finally:
                server.terminate()
                server.wait(60)
        finally:
            if lite is not None:
                lite.terminate()
                lite.wait(30)


def measure(url: str, questions: list[str], duration: float, home: Path) -> dict:
    """Run the clients for `duration` seconds and check the collection afterwards."""
    import httpx

    rec, stop, kept = Recorder(), threading.Event(), []
    threads = [threading.Thread(target=searcher, args=(url, questions, rec, stop, s)) for s in range(8)]
    threads += [threading.Thread(target=writer, args=(url, rec, stop, kept))]
    threads += [threading.Thread(target=asker, args=(url, questions, rec, stop))]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(duration)
    stop.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    info = httpx.get(f"{url}/collections/korquad", headers=AUTH, timeout=60).json()
    docs = {d["id"] for d in info["document_list"] if d["id"].startswith("load-")}
    lat = rec.latency
    return {
        "seconds": wall,
        "search_per_second": len(lat["search"]) / wall,
        "search_p50_ms": 1000 * percentile(lat["search"], 50),
        "search_p99_ms": 1000 * percentile(lat["search"], 99),
        "ask_count": len(lat["ask"]),
        "ask_p50_s": percentile(lat["ask"], 50),
        "ask_p99_s": percentile(lat["ask"], 99),
        "adds": len(lat["add"]),
        "adds_per_second": len(lat["add"]) / wall,
        "add_p50_ms": 1000 * percentile(lat["add"], 50),
        "remove_p50_ms": 1000 * percentile(lat["remove"], 50),
        "status": {str(k): v for k, v in sorted(rec.status.items())},
        "server_errors": sum(v for k, v in rec.status.items() if k >= 500),
        "client_errors": sum(v for k, v in rec.status.items() if 400 <= k < 500),
        "adds_not_found": rec.add_misses,
        "removed_found": rec.removed_found,
        "documents_as_expected": docs == set(kept),
        "passages": info["passages"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--engines", default="embedded,milvus-file,milvus-server")
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--questions", type=int, default=2000)
    ap.add_argument("--screenshots", action="store_true", help="also run the browser tests, saving screenshots")
    args = ap.parse_args()
    from rich.console import Console
    from rich.table import Table

    results = [run_engine(e, args.duration, args.questions) for e in args.engines.split(",")]
    t = Table(title=f"korag serve under load ({args.duration:.0f} s: 8 searchers, 1 writer, 1 asker; 2 cores)")
    cols = [
        ("engine", "engine", "{}"),
        ("search/s", "search_per_second", "{:.1f}"),
        ("search p50 ms", "search_p50_ms", "{:.0f}"),
        ("search p99 ms", "search_p99_ms", "{:.0f}"),
        ("asks", "ask_count", "{}"),
        ("ask p50 s", "ask_p50_s", "{:.1f}"),
        ("ask p99 s", "ask_p99_s", "{:.1f}"),
        ("adds", "adds", "{}"),
        ("add p50 ms", "add_p50_ms", "{:.0f}"),
        ("4xx", "client_errors", "{}"),
        ("5xx", "server_errors", "{}"),
        ("adds not found", "adds_not_found", "{}"),
        ("removed found", "removed_found", "{}"),
        ("final state ok", "documents_as_expected", "{}"),
    ]
    for name, _, _ in cols:
        t.add_column(name, justify="left" if name == "engine" else "right")
    for r in results:
        t.add_row(*(fmt.format(r[key]) for _, key, fmt in cols))
    Console(width=200).print(t)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serve_load.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    if args.screenshots:
        shots = ROOT / "docs" / "images" / "serve"  # tracked: README shows them
        env = {**os.environ, "KORAG_SCREENSHOTS": str(shots)}
        subprocess.run(
            [sys.executable, "-m", "pytest", "-q", str(ROOT / "tests" / "test_serve_browser.py")], env=env, check=True
        )
        print(f"screenshots in {shots}")


if __name__ == "__main__":
    main()
