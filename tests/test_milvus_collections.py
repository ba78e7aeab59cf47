"""Collections whose indexes live in Milvus (Lite file and a `milvus-lite server` process): the
same results as the embedded engine, replace and remove, a writer killed mid-add, and one line
when a second process opens a Lite file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

pytest.importorskip("pymilvus")
from conftest import run_cli
from korag.collections import Collection, CollectionConfig
from korag.collections.config import DenseSettings
from korag.data.chunk import ChunkConfig
from korag.data.sample import load_sample
from korag.data.schema import Document
from test_milvus import LiteServer

SMALL = ChunkConfig(max_tokens=60, overlap_tokens=10)


def _docs(n: int | None = None) -> list[Document]:
    corpus = load_sample().corpus
    docs = [Document(d.id, d.text, d.title) for d in corpus]
    return docs[:n] if n else docs


def _config(tiny_encoder, engine: dict | None = None) -> CollectionConfig:
    raw = {"name": "sample", "chunk": SMALL.model_dump(), "dense": DenseSettings(model=str(tiny_encoder)).model_dump()}
    if engine:
        raw["engine"] = engine
    return CollectionConfig.model_validate(raw)


def _same(a: Collection, b: Collection, queries: list[str], kind: str) -> None:
    ra, rb = a.batch_search(queries, 5, retriever=kind), b.batch_search(queries, 5, retriever=kind)
    for ha, hb in zip(ra, rb, strict=True):
        assert [h.id for h in ha] == [h.id for h in hb], kind
        np.testing.assert_allclose([h.score for h in ha], [h.score for h in hb], rtol=1e-4, atol=1e-5)


QUERIES = ["훈민정음을 만든 왕은?", "조선의 수도", "한글 창제 목적", "세종대왕 업적"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = LiteServer(tmp_path_factory.mktemp("lite") / "data")
    s.start()
    yield s
    s.stop()


@pytest.mark.parametrize("where", ["file", "server"])
def test_a_milvus_collection_answers_like_the_embedded_one_through_changes(where, tiny_encoder, server, tmp_path):
    uri = str(tmp_path / "m.db") if where == "file" else server.uri
    engine = {"kind": "milvus", "uri": uri, "collection": f"t_{where}_{os.getpid()}"}
    milvus = Collection.create(tmp_path / "m", _config(tiny_encoder, engine))
    embedded = Collection.create(tmp_path / "e", _config(tiny_encoder))
    docs = _docs()
    for c in (milvus, embedded):
        c.add_texts(docs[:20])
        c.add_texts(docs[20:])
        c.add_texts([Document(docs[3].id, docs[3].text + " 다시 고쳐 쓴 문단.", docs[3].title)])  # replaced
        c.remove([docs[5].id, docs[7].id])
    for kind in ("bm25", "dense", "hybrid"):
        _same(milvus, embedded, QUERIES, kind)
    store = milvus._engine().store
    assert store.count() == len(milvus.passages())  # replaced and removed rows are gone
    from korag.collections.milvus_engine import _avgdl

    assert store.bm25_stale(_avgdl(milvus._current().retrievers["bm25"])) == 0  # BM25 rows current
    assert not (tmp_path / "m" / "milvus-pending.json").exists()
    reopened = Collection.open(tmp_path / "m")
    if where == "server":  # another process would do the same: the server is shared
        _same(reopened, embedded, QUERIES, "hybrid")
    milvus._engine().store.close()


_ADD_IN_A_CHILD = textwrap.dedent(
    """
    import sys
    from korag.collections import Collection
    from korag.data.schema import Document
    c = Collection.open(sys.argv[1])
    c.add_texts([Document(f"new{i}", " ".join(["훈민정음 세종 한글 조선"] * 40) + f" {i}") for i in range(1500)])
    """
)


def test_a_writer_killed_while_writing_to_milvus_leaves_no_trace(tiny_encoder, server, tmp_path):
    from korag.collections.milvus import MilvusStore

    root = tmp_path / "m"
    engine = {"kind": "milvus", "uri": server.uri, "collection": f"killed_{os.getpid()}"}
    coll = Collection.create(root, _config(tiny_encoder, engine))
    coll.add_texts(_docs(10))
    before = [d.id for d in coll.documents()], coll.passages().ids
    rows_before = coll._engine().store.count()
    watcher = MilvusStore(server.uri, engine["collection"], dense_dim=coll._engine().store.dense_dim, sparse=False)
    child = subprocess.Popen([sys.executable, "-c", _ADD_IN_A_CHILD, str(root)])
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and child.poll() is None:
            if watcher.count() > rows_before:  # rows of the add are in Milvus; HEAD has not moved yet
                break
            time.sleep(0.02)
        assert child.poll() is None, "the child finished before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    assert watcher.count() > rows_before  # the killed writer left rows behind …
    again = Collection.open(root)
    assert ([d.id for d in again.documents()], again.passages().ids) == before
    hits = again.search("훈민정음 세종 한글 조선", 10)
    assert hits and all(not h.id.startswith("new") for h in hits)  # … which are never results
    again.add_texts([Document("after", "새로 더한 문서")])  # and the next writer removes them
    assert watcher.count() == len(again.passages())


def test_a_second_process_on_a_lite_file_gets_one_line(tiny_encoder, tmp_path):
    home = tmp_path / "home"
    env = {"KORAG_HOME": str(home)}
    db = tmp_path / "x.db"
    r = run_cli("collection", "create", "lite", "--engine", "milvus", "--uri", str(db), env=env)
    assert r.returncode == 0, r.stderr
    holder = Collection.open(home / "collections" / "lite")
    holder.add_texts(_docs(3))  # this process now holds the Lite file
    note = tmp_path / "note.txt"
    note.write_text("다른 프로세스에서 더하는 문서", encoding="utf-8")
    r = run_cli("add", "lite", str(note), env=env, subprocess_=True)
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "another process" in lines[0] and "milvus-lite server" in lines[0], r.stderr
    holder.close()  # released: now the other process may open it
    r = run_cli("add", "lite", str(note), env=env, subprocess_=True)
    assert r.returncode == 0, r.stderr
    assert "note.txt" in {d.id for d in Collection.open(home / "collections" / "lite").documents()}


def test_the_engine_is_chosen_at_creation(tmp_path):
    r = run_cli("collection", "create", "x", "--engine", "milvus", "--home", str(tmp_path))
    assert r.returncode == 2 and "engine.uri" in r.stderr
