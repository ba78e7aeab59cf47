"""Collections: incremental indexes equal to fresh builds, add/replace/remove, atomicity under
a killed writer, the writer lock, bad inputs, `korag ask` with citations, and evaluation over
one's own documents."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from korag.collections import Collection, CollectionConfig
from korag.collections.ask import LLMReader, parse_citations
from korag.data.chunk import ChunkConfig
from korag.data.schema import Corpus, Document
from korag.errors import DataError
from korag.synth.generation import GenerationConfig, StopCutter
from test_documents import make_pdf

FACTS = [
    ["대한민국의 수도는 서울이다.", "서울에는 한강이 흐른다.", "부산은 항구 도시이다."],
    ["제주도에는 한라산이 있다.", "한라산의 높이는 1,947미터이다.", "설악산은 강원도에 있다."],
]


def _corpus(n: int, offset: int = 0) -> Corpus:
    words = ["서울", "부산", "한강", "제주", "한라산", "설악산", "항구", "도시", "수도", "강원도"]
    rng = np.random.default_rng(offset)
    return Corpus.from_documents(
        Document(f"d{offset + i}", " ".join(rng.choice(words, size=8)), f"제목 {offset + i}") for i in range(n)
    )


def _same_results(a, b, queries: list[str]) -> None:
    ra, rb = a.search(queries, k=5), b.search(queries, k=5)
    for i in range(len(queries)):
        ids_a, ids_b = [d for d, _ in ra.row(i)], [d for d, _ in rb.row(i)]
        assert ids_a == ids_b
        np.testing.assert_allclose([s for _, s in ra.row(i)], [s for _, s in rb.row(i)], rtol=1e-5, atol=1e-6)


def _sparse_model(tiny_encoder, tmp_path_factory) -> Path:
    from korag.models.sparse import build_sparse_encoder, save_sparse_encoder

    out = tmp_path_factory.mktemp("sparse") / "bi"
    save_sparse_encoder(build_sparse_encoder(str(tiny_encoder), mode="bi-encoder"), out)
    return out


@pytest.fixture(scope="module")
def sparse_model(tiny_encoder, tmp_path_factory) -> Path:
    return _sparse_model(tiny_encoder, tmp_path_factory)


@pytest.mark.parametrize("kind", ["bm25", "dense", "sparse"])
def test_add_and_delete_equal_a_fresh_build(kind, tiny_encoder, sparse_model, tmp_path):
    from korag.retrieval.bm25 import BM25Retriever
    from korag.retrieval.dense import DenseRetriever
    from korag.retrieval.sparse import SparseRetriever

    def make():
        if kind == "bm25":
            return BM25Retriever()
        if kind == "dense":
            return DenseRetriever(str(tiny_encoder))
        return SparseRetriever(str(sparse_model))

    first, second = _corpus(12), _corpus(8, offset=100)
    grown = make()
    grown.index(first)
    grown.add(second)
    assert grown.delete(["d3", "d7", "d101"]) == 3
    with pytest.raises(DataError, match="'nope' is not in the index"):
        grown.delete(["d1", "nope"])
    grown.save(tmp_path / "grown")
    kept = first.concat(second)
    kept = kept.subset(i for i, d in enumerate(kept.ids) if d not in {"d3", "d7", "d101"})
    fresh = make()
    fresh.index(kept)
    queries = ["서울 수도", "한라산 높이", "항구 도시 부산", "강원도 설악산"]
    _same_results(grown, fresh, queries)
    from korag.retrieval.base import load_retriever

    _same_results(load_retriever(tmp_path / "grown"), fresh, queries)


def _write_docs(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text(
        "한강은 서울을 가로질러 흐르는 강이다.\n\n한강의 길이는 514킬로미터이다.\n", encoding="utf-8"
    )
    (folder / "guide.md").write_text("# 제주 안내\n\n성산일출봉은 제주도 동쪽에 있다.\n", encoding="utf-8")
    return [make_pdf(folder / "facts.pdf", pages=FACTS), folder / "notes.txt", folder / "guide.md"]


SMALL = ChunkConfig(max_tokens=8, overlap_tokens=0)  # a passage per sentence or two


def test_a_collection_adds_replaces_and_removes_documents_across_processes(tmp_path):
    root = tmp_path / "c"
    coll = Collection.create(root, CollectionConfig(name="c", chunk=SMALL))
    files = _write_docs(tmp_path / "docs")
    r = coll.add([tmp_path / "docs"])
    assert sorted(r.added) == ["facts.pdf", "guide.md", "notes.txt"] and not r.skipped and r.generation == 1
    hit = coll.search("한라산의 높이", k=1)[0]
    assert hit.file == "facts.pdf" and hit.pages == [2] and "1,947미터" in hit.text
    assert {"char_start", "char_end", "document"} <= set(hit.meta)

    again = Collection.open(root).add([tmp_path / "docs"])  # another process would see the same
    assert again.unchanged and not again.changed and Collection.open(root).head() == 1

    files[1].write_text("한강의 길이는 494킬로미터로 고쳐졌다.\n", encoding="utf-8")
    r = coll.add([files[1]])
    assert r.replaced == ["notes.txt"] and r.passages_removed >= 1
    texts = " ".join(coll.passages().texts)
    assert "494킬로미터" in texts and "514킬로미터" not in texts

    other = Collection.open(root)  # a reader opened before the next change sees it after
    assert other.search("성산일출봉", k=1)[0].file == "guide.md"
    removed = coll.remove(["guide.md", "missing.pdf"])
    assert removed.removed == ["guide.md"] and removed.missing == ["missing.pdf"]
    assert all(h.file != "guide.md" for h in other.search("성산일출봉 제주 안내", k=10))
    assert sorted(d.id for d in other.documents()) == ["facts.pdf", "notes.txt"]
    # only the current and the previous generation are kept
    assert sorted(p.name for p in (root / "gens").iterdir()) == ["gen-000002", "gen-000003"]


def test_removing_every_document_leaves_an_empty_collection_that_takes_new_ones(tmp_path):
    coll = Collection.create(tmp_path / "c", CollectionConfig(name="c"))
    coll.add_texts([Document("a", "서울은 수도이다."), Document("b", "부산은 항구이다.")])
    coll.remove(["a", "b"])
    assert len(coll) == 0 and len(coll.passages()) == 0
    with pytest.raises(Exception, match="empty"):
        coll.search("서울")
    coll.add_texts([Document("c", "제주에는 한라산이 있다.")])
    assert coll.search("한라산", k=3)[0].id == "c"


def test_a_collection_with_dense_and_sparse_retrievers_fuses_them(tiny_encoder, sparse_model, tmp_path):
    from korag.collections.config import DenseSettings, SparseSettings

    cfg = CollectionConfig(
        name="c", dense=DenseSettings(model=str(tiny_encoder)), sparse=SparseSettings(model=str(sparse_model))
    )
    coll = Collection.create(tmp_path / "c", cfg)
    coll.add_texts([Document(f"d{i}", t) for i, t in enumerate(t for page in FACTS for t in page)])
    coll.add_texts([Document("d0", "대한민국의 수도는 세종이 아니라 서울이다.")])  # replaces d0 everywhere
    assert coll.config.resolve(None) == "hybrid"
    for kind in ("bm25", "dense", "sparse", "hybrid"):
        hits = coll.search("수도 서울", k=3, retriever=kind)
        assert hits and all(h.text for h in hits)
    # the reopened collection's dense index equals one built from its passages
    from korag.retrieval.dense import DenseRetriever

    fresh = DenseRetriever(str(tiny_encoder))
    fresh.index(coll.passages())
    _same_results(Collection.open(tmp_path / "c").retriever("dense"), fresh, ["수도 서울", "한라산"])
    info = json.loads((tmp_path / "c" / "gens" / "gen-000002" / "dense" / "retriever.json").read_text())
    assert info["encoder"]["model"] == str(tiny_encoder)  # referenced, not copied into every generation


_ADD_IN_A_CHILD = textwrap.dedent(
    """
    import sys
    from korag.collections import Collection
    from korag.data.schema import Document
    c = Collection.open(sys.argv[1])
    docs = [Document(f"new{i}", " ".join(["한라산 높이 제주 서울 부산 항구"] * 40) + f" {i}") for i in range(1200)]
    c.add_texts(docs)
    """
)


@pytest.mark.parametrize("at", ["writing", "early"])
def test_a_writer_killed_mid_add_leaves_the_collection_as_it_was(at, tmp_path):
    root = tmp_path / "c"
    coll = Collection.create(root, CollectionConfig(name="c"))
    coll.add_texts([Document("keep", "제주도에는 한라산이 있다."), Document("also", "서울은 수도이다.")])
    before = (root / "HEAD").read_text(), [d.to_dict() for d in coll.documents()], coll.passages().texts
    from filelock import FileLock, Timeout

    def child_holds_the_lock() -> bool:
        probe = FileLock(str(root / ".lock"))
        try:
            probe.acquire(timeout=0)
        except Timeout:
            return True
        probe.release()
        return False

    child = subprocess.Popen([sys.executable, "-c", _ADD_IN_A_CHILD, str(root)])
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and child.poll() is None:
            writing = any(p.name.startswith(".gen-") for p in (root / "gens").iterdir())
            if (at == "early" and child_holds_the_lock()) or (at == "writing" and writing):
                break
            time.sleep(0.002)
        assert child.poll() is None, "the child finished before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    reopened = Collection.open(root)
    assert ((root / "HEAD").read_text(), [d.to_dict() for d in reopened.documents()], reopened.passages().texts) == (
        before
    )
    assert reopened.search("한라산", k=1)[0].id == "keep"
    r = reopened.add_texts([Document("next", "부산은 항구 도시이다.")])  # the next writer cleans up
    assert r.added == ["next"] and not [p for p in (root / "gens").iterdir() if p.name.startswith(".")]


def test_writers_wait_for_the_lock_while_readers_go_on(tmp_path):
    from filelock import FileLock

    root = tmp_path / "c"
    coll = Collection.create(root, CollectionConfig(name="c"))
    coll.add_texts([Document("a", "서울은 수도이다.")])
    lock = FileLock(str(root / ".lock"))
    lock.acquire()
    done = threading.Event()

    def write() -> None:
        Collection.open(root).add_texts([Document("b", "부산은 항구이다.")])
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert not done.wait(1.0)  # held up by the lock
        assert Collection.open(root).search("서울", k=1)[0].id == "a"  # readers take no lock
    finally:
        lock.release()
    writer.join(60)
    assert done.is_set() and sorted(d.id for d in Collection.open(root).documents()) == ["a", "b"]


def test_bad_inputs_are_skipped_one_line_each_and_the_rest_is_added(tmp_path):
    docs = tmp_path / "docs"
    _write_docs(docs)
    make_pdf(docs / "locked.pdf", password="secret")
    (docs / "corrupt.pdf").write_bytes(b"%PDF-1.4\nthis is not a pdf")
    (docs / "empty.pdf").write_bytes(b"")
    _image_only_pdf(docs / "scan.pdf")
    (docs / "euc-kr.txt").write_bytes("한국어 문서".encode("euc-kr"))
    (docs / "sheet.xlsx").write_bytes(b"PK\x03\x04")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("다른 폴더의 같은 이름", encoding="utf-8")
    env = {"KORAG_HOME": str(tmp_path / "home")}
    assert run_cli("collection", "create", "mine", env=env).returncode == 0
    r = run_cli("add", "mine", str(docs), str(tmp_path / "other"), str(docs / "sheet.xlsx"), env=env)
    assert r.returncode == 2, r.stderr
    skipped = [line for line in r.stderr.splitlines() if line.startswith("skipped")]
    for name in ("locked.pdf", "corrupt.pdf", "empty.pdf", "scan.pdf", "euc-kr.txt", "sheet.xlsx", "other/notes.txt"):
        assert sum(name in line for line in skipped) == 1, (name, r.stderr)
    assert "password" in r.stderr and "same file name" in r.stderr and "UTF-8" in r.stderr
    assert "added 3, replaced 0, unchanged 0, skipped 7" in r.stdout
    info = json.loads(run_cli("collection", "info", "mine", "--json", env=env).stdout)
    assert sorted(d["id"] for d in info["document_list"]) == ["facts.pdf", "guide.md", "notes.txt"]


def _image_only_pdf(path: Path) -> Path:
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path))
    c.rect(100, 100, 300, 300, fill=1)
    c.showPage()
    c.save()
    return path


@pytest.fixture(scope="module")
def reader_lm(tmp_path_factory) -> Path:
    from korag.models.tiny import build_tiny_causal_lm

    texts = [t for page in FACTS for t in page] + ["질문: 답: [1] [2] 자료:"]
    return build_tiny_causal_lm(tmp_path_factory.mktemp("lm") / "lm", texts=texts, hidden=32, layers=1, heads=2)


def test_ask_streams_an_answer_with_numbered_sources_and_the_library_agrees(reader_lm, tmp_path):
    env = {"KORAG_HOME": str(tmp_path / "home")}
    _write_docs(tmp_path / "docs")
    small = ("--chunk-tokens", "8", "--chunk-overlap", "0")
    assert run_cli("collection", "create", "mine", *small, env=env).returncode == 0
    assert run_cli("add", "mine", str(tmp_path / "docs"), env=env).returncode == 0
    args = ("ask", "mine", "한라산의 높이는?", "--reader", str(reader_lm), "-k", "2", "--max-tokens", "8")
    shown = run_cli(*args, env=env)
    assert shown.returncode == 0, shown.stderr
    as_json = json.loads(run_cli(*args, "--json", env=env).stdout)
    assert [s["n"] for s in as_json["sources"]] == [1, 2]
    top = as_json["sources"][0]
    assert top["file"] == "facts.pdf" and top["pages"] == [2] and "1,947미터" in top["text"]
    assert "[1] facts.pdf p.2" in shown.stdout
    coll = Collection.open(tmp_path / "home" / "collections" / "mine")
    answer = coll.ask("한라산의 높이는?", k=2, reader=coll.reader(str(reader_lm), max_tokens=8))
    assert answer.raw == as_json["raw"] and answer.raw in shown.stdout and answer.sources[0].id == top["id"]


def test_citations_are_parsed_and_numbers_without_a_source_dropped():
    assert parse_citations("1,947미터 [2]", 3) == ("1,947미터", [2], 0)
    assert parse_citations("서울 [1, 3][2] [7]", 3) == ("서울", [1, 3, 2], 1)
    assert parse_citations("답이 없다", 2) == ("답이 없다", [], 0)


def test_stop_strings_never_leak_into_a_stream():
    cut = StopCutter(["\n\n", "질문:"])
    pieces = ["서울", "이다\n", "\n다음", " 질문"]
    assert "".join(cut.feed(p) for p in pieces) + cut.finish() == "서울이다"
    cut = StopCutter(["질문:"])
    assert cut.feed("답은 질") == "답은 " and cut.feed("문이 아니다") == "질문이 아니다" and cut.finish() == ""


def test_a_streamed_answer_equals_the_generated_one(reader_lm):
    from korag.synth.llm import make_generator

    gen = make_generator(str(reader_lm), show_progress=False)
    config = GenerationConfig(max_tokens=12, stop=("다",))
    prompt = "자료:\n[1] 한라산의 높이는 1,947미터이다.\n질문: 한라산의 높이는?\n답:"
    assert "".join(gen.stream(prompt, config)) == gen.generate([prompt], config)[0]
    assert LLMReader(gen).style == ("chat" if gen.has_chat_template else "completion")
    assert (
        LLMReader(gen, style="completion").config().stop == ("\n",) and not LLMReader(gen, style="chat").config().stop
    )


def test_an_openai_compatible_server_streams_server_sent_events():
    import http.server

    from korag.synth.llm import OpenAIHTTPGenerator

    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body)
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for piece in ["서울", "입니다", " [1]", "\n끝"]:
                event = {"choices": [{"delta": {"content": piece}}]}
                self.wfile.write(f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        gen = OpenAIHTTPGenerator(f"http://127.0.0.1:{server.server_port}", "qwen3", chat=True)
        pieces = list(gen.stream("수도는?", GenerationConfig(max_tokens=16, stop=("\n",))))
    finally:
        server.shutdown()
    assert "".join(pieces) == "서울입니다 [1]" and len(pieces) >= 2
    assert seen[0]["stream"] is True and seen[0]["messages"][0]["content"] == "수도는?" and seen[0]["model"] == "qwen3"


def _questions(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


def test_eval_retrieval_over_ones_own_files_scores_answer_recall_strictly(tmp_path):
    _write_docs(tmp_path / "docs")
    q = _questions(
        tmp_path / "q.jsonl",
        [
            {"id": "1", "question": "한라산의 높이는?", "answers": ["1,947미터"]},
            {"id": "2", "question": "한강의 길이는?", "answers": ["514킬로미터"]},
            {"id": "3", "question": "한라산의 높이를 숫자로?", "answers": ["1947미터"]},  # no comma: not in any passage
        ],
    )
    out = tmp_path / "r.json"
    r = run_cli("eval", "retrieval", str(q), "--corpus", str(tmp_path / "docs"), "-k", "5", "-o", str(out))
    assert r.returncode == 0, r.stderr
    result = json.loads(out.read_text())
    assert result["metrics"]["recall@5"] == pytest.approx(2 / 3) and result["missed"] == ["3"]
    assert "recall@1" in r.stdout

    coll_env = {"KORAG_HOME": str(tmp_path / "home")}
    run_cli("collection", "create", "mine", env=coll_env)
    run_cli("add", "mine", str(tmp_path / "docs"), env=coll_env)
    again = run_cli("eval", "retrieval", str(q), "--corpus", "mine", "-k", "5", "-o", str(out), env=coll_env)
    assert again.returncode == 0 and json.loads(out.read_text())["metrics"] == result["metrics"]

    bad = _questions(tmp_path / "bad.jsonl", [{"id": "1", "question": "한라산의 높이는?"}])
    r = run_cli("eval", "retrieval", str(bad), "--corpus", str(tmp_path / "docs"))
    assert r.returncode == 2 and "bad.jsonl" in r.stderr and "line 1" in r.stderr and "answer" in r.stderr
    r = run_cli("eval", "retrieval", str(q))
    assert r.returncode == 2 and "--corpus" in r.stderr


def test_eval_qa_scores_ask_next_to_closed_book(reader_lm, tmp_path):
    _write_docs(tmp_path / "docs")
    q = _questions(tmp_path / "q.jsonl", [{"id": "1", "question": "한라산의 높이는?", "answers": ["1,947미터"]}])
    out = tmp_path / "qa.json"
    r = run_cli(
        "eval", "qa", str(q), "--corpus", str(tmp_path / "docs"), "--reader", str(reader_lm), "-k", "2",
        "--max-tokens", "6", "-o", str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = json.loads(out.read_text())
    assert {row["system"] for row in rows.values()} == {"rag", "closed-book"}
    rag = next(row for row in rows.values() if row["system"] == "rag")
    assert rag["answer_recall@2"] == 1.0 and 0 <= rag["f1_korquad"] <= 100 and set(rag["predictions"]) == {"1"}


def test_the_pdf_folder_recipe_scores_questions_by_the_passages_holding_their_answers(tmp_path):
    _write_docs(tmp_path / "docs")
    q = _questions(
        tmp_path / "q.jsonl",
        [
            {"id": "1", "question": "한라산의 높이는?", "answers": ["1,947미터"]},
            {"id": "2", "question": "성산일출봉은 어디에?", "answers": ["제주도 동쪽"]},
            {"id": "3", "question": "없는 답", "answers": ["9309"]},
        ],
    )
    sets = ("--set", f"data.path={tmp_path / 'docs'}", "--set", f"data.questions={q}")
    r = run_cli("run", "pdf-folder", *sets, "-w", str(tmp_path / "ws"))
    assert r.returncode == 0, r.stderr
    assert "1 question(s) have no passage containing their answer" in r.stdout
    report = json.loads(next((tmp_path / "ws").rglob("report.json")).read_text())
    (run,) = report["runs"]
    assert run["metrics"]["recall@5"] == 1.0  # over the two questions a passage answers
