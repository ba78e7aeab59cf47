"""`korag serve`: the HTTP API (search, ask with server-sent events, uploads, removal, auth,
limits, metrics), concurrent reads during writes, and a server killed mid-add."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from conftest import run_cli
from korag.collections import Collection, CollectionConfig
from korag.collections.config import AskSettings
from korag.data.chunk import ChunkConfig
from korag.data.schema import Document
from korag.serve.app import create_app, safe_name
from korag.serve.schemas import ServeSettings

KEY = "test-key"
TEXTS = {
    "seoul.txt": "대한민국의 수도는 서울이다. 서울에는 한강이 흐른다.",
    "jeju.txt": "제주도에는 한라산이 있다. 한라산의 높이는 1,947미터이다.",
    "busan.txt": "부산은 대한민국 제2의 도시이며 항구 도시이다.",
}


@pytest.fixture(scope="module")
def reader_lm(tmp_path_factory) -> Path:
    from korag.models.tiny import build_tiny_causal_lm

    return build_tiny_causal_lm(
        tmp_path_factory.mktemp("lm") / "lm", texts=[*TEXTS.values(), "질문: 답: [1]"], hidden=32, layers=1, heads=2
    )


def _collection(root: Path) -> Collection:
    coll = Collection.create(root, CollectionConfig(name="docs", chunk=ChunkConfig(max_tokens=8, overlap_tokens=0)))
    coll.add_texts([Document(name, text, name.removesuffix(".txt")) for name, text in TEXTS.items()])
    return coll


@pytest.fixture
def client(tmp_path, reader_lm):
    app = create_app(
        {"docs": _collection(tmp_path / "c")},
        ServeSettings(max_upload_mb=0.05),
        AskSettings(reader=str(reader_lm), k=2, max_tokens=6),
        write_key=KEY,
    )
    with TestClient(app) as c:
        yield c


AUTH = {"Authorization": f"Bearer {KEY}"}


def test_search_returns_documents_pages_and_marked_terms(client):
    r = client.post("/collections/docs/search", json={"query": "한라산의 높이는?", "k": 3})
    assert r.status_code == 200, r.text
    top = r.json()["results"][0]
    assert top["document"] == "jeju.txt" and top["rank"] == 1 and top["char_start"] is not None
    marked = [s["text"] for s in top["excerpt"] if s["mark"]]
    assert "한라산" in marked and "높이" in marked
    batch = client.post("/collections/docs/search/batch", json={"queries": ["서울 한강", "항구 도시"], "k": 1}).json()
    assert [res["results"][0]["document"] for res in batch["results"]] == ["seoul.txt", "busan.txt"]
    assert client.get("/collections").json()[0]["documents"] == 3
    info = client.get("/collections/docs").json()
    assert {d["id"] for d in info["document_list"]} == set(TEXTS) and info["models"]["dense"] is None


def test_bad_requests_get_a_sentence_and_the_right_status(client):
    assert client.post("/collections/nope/search", json={"query": "서울"}).status_code == 404
    r = client.post("/collections/docs/search", json={"query": "서울", "k": 500})
    assert r.status_code == 422 and "k=500" in r.json()["error"]
    r = client.post("/collections/docs/search", json={"query": "가" * 2000})
    assert r.status_code == 422 and "2000 characters" in r.json()["error"]
    r = client.post("/collections/docs/search", json={"query": "서울", "retriever": "dense"})
    assert r.status_code == 422 and "no dense retriever" in r.json()["error"]
    r = client.post("/collections/docs/search", json={"k": 3})
    assert r.status_code == 422 and r.json()["error"].startswith("query: ")
    r = client.delete("/collections/docs/documents/missing.txt", headers=AUTH)
    assert r.status_code == 404 and "missing.txt" in r.json()["error"]


def test_writes_need_the_key_and_uploads_are_names_not_paths(client, tmp_path):
    files = [("files", ("../../evil/new.txt", "울릉도는 동해에 있는 섬이다.".encode(), "text/plain"))]
    assert client.post("/collections/docs/documents", files=files).status_code == 401
    r = client.post("/collections/docs/documents", files=files, headers={"X-API-Key": "wrong"})
    assert r.status_code == 401
    r = client.post(
        "/collections/docs/documents",
        headers=AUTH,
        files=[*files, ("files", ("tool.exe", b"MZ", "application/octet-stream"))],
    )
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["added"] == ["new.txt"] and report["skipped"][0]["file"] == "tool.exe"
    assert not (tmp_path / "evil").exists()
    assert (
        client.post("/collections/docs/search", json={"query": "울릉도"}).json()["results"][0]["document"] == "new.txt"
    )
    big = [("files", ("big.txt", ("가" * 40_000).encode(), "text/plain"))]
    r = client.post("/collections/docs/documents", files=big, headers=AUTH)
    assert r.status_code == 413 and "MB" in r.json()["error"]
    r = client.post("/collections/docs/documents", content=b"x", headers={**AUTH, "Content-Type": "text/plain"})
    assert r.status_code == 415
    r = client.post(
        "/collections/docs/documents",
        headers=AUTH,
        json={"documents": [{"id": "memo", "text": "독도는 울릉도 동쪽에 있다."}]},
    )
    assert r.json()["added"] == ["memo"]
    r = client.delete("/collections/docs/documents/new.txt", headers=AUTH)
    assert r.status_code == 200 and r.json()["removed"] == ["new.txt"]
    names = {d["id"] for d in client.get("/collections/docs").json()["document_list"]}
    assert names == {*TEXTS, "memo"}


@pytest.mark.parametrize("name", ["../../x.txt", "a/b/c.pdf", "..\\..\\win.md", ".hidden", "", "..", "con\x00.txt"])
def test_an_upload_name_is_only_ever_a_file_name(name):
    safe = safe_name(name)
    assert safe is None or ("/" not in safe and "\\" not in safe and not safe.startswith("."))


def test_with_an_api_key_every_read_needs_it_too(tmp_path):
    app = create_app({"docs": _collection(tmp_path / "c")}, ServeSettings(api_key=KEY))
    with TestClient(app) as c:
        assert c.get("/health").status_code == 200  # liveness stays open
        assert c.get("/collections").status_code == 401
        assert c.post("/collections/docs/search", json={"query": "서울"}).status_code == 401
        assert c.post("/collections/docs/search", json={"query": "서울"}, headers=AUTH).status_code == 200
        assert c.get("/metrics").status_code == 401


def test_ask_answers_with_sources_and_streams_server_sent_events(client):
    r = client.post("/collections/docs/ask", json={"question": "한라산의 높이는?"})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert [s["n"] for s in answer["sources"]] == list(range(1, len(answer["sources"]) + 1))
    assert answer["sources"][0]["document"] == "jeju.txt"
    with client.stream("POST", "/collections/docs/ask", json={"question": "한라산의 높이는?", "stream": True}) as s:
        assert s.headers["content-type"].startswith("text/event-stream")
        events = []
        for block in s.iter_text():
            events.append(block)
    text = "".join(events)
    kinds = [line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("event: ")]
    assert kinds[0] == "sources" and kinds[-1] == "answer" and "token" in kinds
    final = json.loads(text.strip().split("\n")[-1].removeprefix("data: "))
    assert final["raw"] == answer["raw"]  # streamed or not, the same greedy answer


def test_metrics_count_requests_by_route(client):
    client.post("/collections/docs/search", json={"query": "서울"})
    client.post("/collections/docs/search", json={"query": "부산"})
    text = client.get("/metrics").text
    line = next(x for x in text.splitlines() if x.startswith("korag_requests_total") and '/search"' in x)
    assert 'status="200"' in line and line.endswith(" 2.0")
    assert "korag_request_seconds_bucket" in text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_searches_go_on_while_a_writer_adds_and_removes(tmp_path):
    import httpx
    import uvicorn

    coll = _collection(tmp_path / "c")
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app({"docs": coll}, write_key=KEY), port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    while not server.started:
        time.sleep(0.05)
    failures: list[str] = []
    stop = threading.Event()

    def search() -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            while not stop.is_set():
                r = c.post("/collections/docs/search", json={"query": "한라산 높이", "k": 3})
                if r.status_code != 200 or r.json()["results"][0]["document"] != "jeju.txt":
                    failures.append(r.text)

    searchers = [threading.Thread(target=search) for _ in range(4)]
    for t in searchers:
        t.start()
    try:
        with httpx.Client(base_url=url, timeout=60, headers=AUTH) as c:
            for i in range(6):
                doc = {"id": f"note-{i}", "text": f"메모 {i}: 울릉도 특산물은 오징어{i}이다."}
                assert c.post("/collections/docs/documents", json={"documents": [doc]}).status_code == 200
                found = c.post("/collections/docs/search", json={"query": f"오징어{i}", "k": 1}).json()["results"]
                assert found and found[0]["document"] == f"note-{i}"  # visible as soon as the add returned
                if i % 2:
                    assert c.delete(f"/collections/docs/documents/note-{i - 1}").status_code == 200
    finally:
        stop.set()
        for t in searchers:
            t.join()
        server.should_exit = True
        thread.join(10)
    assert not failures, failures[:3]
    assert sorted(d.id for d in Collection.open(tmp_path / "c").documents()) == sorted(
        [*TEXTS, "note-1", "note-3", "note-5"]
    )


def test_a_server_killed_during_an_add_restarts_with_the_collection_before_or_after_it(tmp_path):
    import httpx

    home = tmp_path / "home"
    env = {**os.environ, "KORAG_HOME": str(home), "KORAG_API_KEY": KEY}
    root = home / "collections" / "docs"
    _collection(root)
    before = sorted(d.id for d in Collection.open(root).documents())
    port = _free_port()
    cmd = [sys.executable, "-m", "korag.cli", "serve", "docs", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, proc)
        big = [
            {"id": f"bulk-{i}", "text": " ".join(["대용량 문서 추가 시험 한라산 서울 부산"] * 30) + f" {i}"}
            for i in range(1500)
        ]

        def post() -> None:
            with contextlib.suppress(httpx.HTTPError):  # the server dies under it
                httpx.post(f"{url}/collections/docs/documents", json={"documents": big}, headers=AUTH, timeout=300)

        threading.Thread(target=post, daemon=True).start()
        _wait_for_writer(root)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    after_kill = sorted(d.id for d in Collection.open(root).documents())
    assert after_kill in (before, sorted([*before, *(d["id"] for d in big)]))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_until_up(url, proc)
        r = httpx.post(f"{url}/collections/docs/search", json={"query": "한라산 높이"}, headers=AUTH)
        assert r.status_code == 200 and r.json()["results"][0]["document"] == "jeju.txt"
        r = httpx.post(
            f"{url}/collections/docs/documents", json={"documents": [{"id": "x", "text": "새 문서"}]}, headers=AUTH
        )
        assert r.status_code == 200 and r.json()["added"] == ["x"]
    finally:
        proc.terminate()
        proc.wait(30)


def _wait_until_up(url: str, proc: subprocess.Popen) -> None:
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"korag serve exited: {proc.stderr.read().decode()}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("korag serve did not start")


def _wait_for_writer(root: Path) -> None:
    """Until the server process holds the collection's writer lock (it is inside the add)."""
    from filelock import FileLock, Timeout

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        probe = FileLock(str(root / ".lock"))
        try:
            probe.acquire(timeout=0)
        except Timeout:
            return
        probe.release()
        time.sleep(0.005)
    raise AssertionError("the add never started")


def test_korag_serve_refuses_what_it_cannot_serve(tmp_path):
    r = run_cli("serve", "nope", "--home", str(tmp_path))
    assert r.returncode == 2 and "no collection here" in r.stderr
