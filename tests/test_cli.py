"""End-to-end tests of the `korag` command, run as a user would (subprocesses)."""

import json
import re
from pathlib import Path

from conftest import run_cli
from test_documents import make_pdf

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def executed(stdout: str) -> list[str]:
    """Task ids whose status column says 'ran'."""
    return re.findall(r"│ (\S+)\s+│ \S+\s+│ [0-9a-f]{16} │ ran", stdout)


def test_default_run_caches_and_reruns_only_downstream_of_a_change(tmp_path):
    first = run_cli("run", "-q", cwd=tmp_path, env=OFFLINE)
    assert first.returncode == 0, first.stderr
    report = Path(re.search(r"Report: (\S+)", first.stdout).group(1))
    assert report.is_file() and report.parent.parent.parent == tmp_path / "korag-workspace"
    assert (report.parent / "report.png").stat().st_size > 1000
    text = report.read_text(encoding="utf-8")
    assert "| bm25-bigram-stem |" in text and "| bm25-kiwi |" in text and "mrr@10" in text
    ran = executed(first.stdout)
    assert {"load", "stats", "tokenize/bm25-kiwi", "index/bm25-kiwi", "evaluate/bm25-kiwi", "report"} <= set(ran)

    second = run_cli("run", "-q", cwd=tmp_path, env=OFFLINE)
    assert second.returncode == 0, second.stderr
    assert executed(second.stdout) == []
    assert "0 stage(s) executed" in second.stdout

    third = run_cli("run", "-q", "--set", "runs.bm25-kiwi.k1=1.2", cwd=tmp_path, env=OFFLINE)
    assert third.returncode == 0, third.stderr
    assert executed(third.stdout) == ["index/bm25-kiwi", "retrieve/bm25-kiwi", "evaluate/bm25-kiwi", "report"]

    status = run_cli("status", "-w", str(tmp_path / "korag-workspace"), "--set", "runs.bm25-kiwi.k1=1.2")
    assert status.returncode == 0 and "missing" not in status.stdout and "cached" in status.stdout
    status = run_cli("status", "-w", str(tmp_path / "korag-workspace"), "--set", "runs.bm25-kiwi.k1=0.5")
    assert "missing" in status.stdout


def test_korquad_beir_conversion_reproduces_reference_figures(tmp_path, korquad_dev):
    out = tmp_path / "korquad-beir"
    conv = run_cli("data", "convert", str(korquad_dev), "-o", str(out), "--to", "beir")
    assert conv.returncode == 0, conv.stderr
    assert "964 documents, 5,774 queries" in conv.stdout
    corpus = [json.loads(line) for line in (out / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(corpus) == 964 and all(d["title"] for d in corpus)
    assert (out / "qrels" / "test.tsv").read_text().startswith("query-id\tcorpus-id\tscore\n")
    # reference figures measured with bm25s 0.3.16 on title + context (issue #2)
    reference = {"whitespace": (0.803, 0.749, 0.876), "bigram": (0.945, 0.909, 0.988), "kiwi": (0.934, 0.897, 0.980)}
    for tokenizer, (mrr, r1, r5) in reference.items():
        res = tmp_path / f"{tokenizer}.json"
        ev = run_cli(
            "eval",
            "retrieval",
            str(out),
            "--retriever",
            "bm25",
            "--tokenizer",
            tokenizer,
            "--split",
            "test",
            "--k",
            "100",
            "--output",
            str(res),
        )
        assert ev.returncode == 0, ev.stderr
        payload = json.loads(res.read_text())
        m = payload["metrics"]
        assert {"mrr@10", "ndcg@10", "recall@1", "recall@10", "recall@100"} <= set(m)
        assert {"index_seconds", "search_seconds", "queries_per_second"} <= set(payload["timings"])
        assert abs(m["mrr@10"] - mrr) <= 0.005, (tokenizer, m["mrr@10"])
        assert abs(m["recall@1"] - r1) <= 0.005 and abs(m["recall@5"] - r5) <= 0.005
        assert payload["num_queries"] == 5774


def test_korquad_recipe_needs_its_path_and_runs_on_a_slice(tmp_path, korquad_dev):
    missing = run_cli("run", "korquad", "-w", str(tmp_path / "ws"))
    assert missing.returncode == 2
    assert "needs a data path" in missing.stderr and "Traceback" not in missing.stderr
    ok = run_cli(
        "run",
        "korquad",
        "-q",
        "-w",
        str(tmp_path / "ws"),
        "--set",
        f"data.path={korquad_dev}",
        "--set",
        "data.max_queries=300",
        "--set",
        "runs={bm25-bigram-stem: {tokenizer: bigram-stem}}",
        "--set",
        "stats.enabled=false",
    )
    assert ok.returncode == 0, ok.stderr
    report = Path(re.search(r"Report: (\S+)", ok.stdout).group(1)).read_text(encoding="utf-8")
    mrr = float(re.search(r"\| bm25-bigram-stem \|[^\n]*?\| \*?\*?(0\.\d+)", report).group(1))
    assert mrr > 0.9


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name → (path, text the one-line error must contain)."""
    d = tmp_path / "bad"
    d.mkdir()
    cases: dict[str, tuple[Path, str]] = {}
    (d / "malformed.json").write_text('{"data": [\n  {"title": "x", "paragraphs": [\n}', encoding="utf-8")
    cases["malformed"] = (d / "malformed.json", "line 3: malformed JSON")
    (d / "nofield.json").write_text(
        json.dumps({"data": [{"title": "t", "paragraphs": [{"qas": []}]}]}), encoding="utf-8"
    )
    cases["missing field"] = (d / "nofield.json", "data[0].paragraphs[0]: field 'context': missing field")
    (d / "empty.jsonl").write_text('{"_id": "1", "text": "내용"}\n{"_id": "2", "text": "   "}\n', encoding="utf-8")
    cases["empty document"] = (d / "empty.jsonl", "line 2 (id='2'): field 'text': is empty")
    (d / "dup.jsonl").write_text('{"_id": "1", "text": "가"}\n{"_id": "1", "text": "나"}\n', encoding="utf-8")
    cases["duplicate id"] = (d / "dup.jsonl", "line 2: field '_id': duplicate document id '1'")
    beir = d / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text('{"_id": "d1", "text": "가"}\n', encoding="utf-8")
    (beir / "queries.jsonl").write_text('{"_id": "q1", "text": "질문"}\n', encoding="utf-8")
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td9\t1\n", encoding="utf-8")
    cases["qrels unknown document"] = (beir, "test.tsv: line 2: field 'corpus-id': unknown document 'd9'")
    (d / "euckr.jsonl").write_bytes('{"_id": "1", "text": "한국어"}\n'.encode("euc-kr"))
    cases["non-UTF-8"] = (d / "euckr.jsonl", "line 1: not valid UTF-8")
    cases["encrypted PDF"] = (make_pdf(d / "locked.pdf", password="pw"), "locked.pdf: PDF is encrypted")
    good = make_pdf(d / "tmp.pdf").read_bytes()
    (d / "tmp.pdf").unlink()
    (d / "corrupt.pdf").write_bytes(good[:200])
    cases["corrupt PDF"] = (d / "corrupt.pdf", "corrupt.pdf: ")
    return cases


def test_bad_input_gives_one_clear_line_and_writes_nothing(tmp_path):
    cases = _bad_inputs(tmp_path)
    for name, (path, expected) in cases.items():
        out = tmp_path / f"out-{name.replace(' ', '-')}"
        res = run_cli("data", "convert", str(path), "-o", str(out), "--to", "beir")
        lines = [line for line in res.stderr.splitlines() if line.strip()]
        assert res.returncode == 2, (name, res.stderr)
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, res.stderr)
        assert expected in lines[0] and path.name in lines[0], (name, lines[0])
        assert "Traceback" not in res.stderr
        assert not out.exists() and not list(tmp_path.glob(f".{out.name}*")), name
    # --debug shows where it came from
    path, _ = cases["malformed"]
    res = run_cli("--debug", "data", "stats", str(path))
    assert res.returncode != 0 and "Traceback" in res.stderr


def test_bad_data_in_a_recipe_leaves_no_artifact(tmp_path):
    path, expected = _bad_inputs(tmp_path)["duplicate id"]
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: bad\ndata:\n  path: {path}\nruns:\n  bm25: {{tokenizer: bigram}}\n", encoding="utf-8")
    ws = tmp_path / "ws"
    res = run_cli("run", str(recipe), "-w", str(ws), "-q")
    assert res.returncode == 2 and expected in res.stderr and "Traceback" not in res.stderr
    assert not (ws / "load").exists() or not any((ws / "load").iterdir())
    listed = run_cli("status", "-w", str(ws), "--all")
    assert "complete" not in listed.stdout


def test_cli_usage_errors(tmp_path):
    res = run_cli("eval", "retrieval", str(tmp_path / "nowhere"))
    assert res.returncode == 2 and "no such file or directory" in res.stderr
    res = run_cli("run", "-w", str(tmp_path / "ws"), "--set", "runs.bm25-kiwi.tokenizer=klingon")
    assert res.returncode == 2 and "unknown tokenizer 'klingon'" in res.stderr
    res = run_cli("--version")
    assert res.returncode == 0 and res.stdout.startswith("korag ")


def test_index_and_search_commands(tmp_path):
    idx = tmp_path / "idx"
    res = run_cli("index", "builtin:sample", "--output", str(idx), "--tokenizer", "bigram-stem")
    assert res.returncode == 0, res.stderr
    res = run_cli("search", str(idx), "훈민정음을 만든 왕은?", "--k", "3", "--data", "builtin:sample")
    assert res.returncode == 0, res.stderr
    assert "p001" in res.stdout and "세종" in res.stdout


def test_data_stats_json(tmp_path):
    out = tmp_path / "stats.json"
    res = run_cli("data", "stats", "builtin:sample", "--tokenizer", "bigram-stem", "--output", str(out))
    assert res.returncode == 0, res.stderr
    stats = json.loads(out.read_text())
    assert stats["documents"] == 48 and stats["queries"] >= 120 and stats["kind"] == "qa"
    assert stats["document_chars"]["median"] > 300 and stats["vocabulary"] > 1000
