"""Generation spread over several OpenAI-compatible servers: two `korag llm serve` processes on
127.0.0.1 (a tiny model built here), one killed mid-run — every prompt is still answered exactly
once; resuming from the progress file; a dead server marked down and taken back after backoff."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from korag.errors import ConfigError, ModelError
from korag.synth.fanout import FanoutGenerator, parse_endpoints
from korag.synth.generation import GenerationConfig

GREEDY = GenerationConfig(max_tokens=3)


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> Path:
    from korag.models.tiny import build_tiny_causal_lm

    return build_tiny_causal_lm(tmp_path_factory.mktemp("lm") / "tiny", vocab_size=300)


def _start(model: Path) -> subprocess.Popen:
    """A `korag llm serve` child process on a free port."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "300", "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen(
        [sys.executable, "-m", "korag.cli", "llm", "serve", str(model), "--port", "0", "--name", "tiny"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def _listening(proc: subprocess.Popen) -> tuple[subprocess.Popen, str]:
    """`proc` and its base URL once it says it listens."""
    seen = []
    for line in proc.stdout:  # type: ignore[union-attr]
        seen.append(line)
        if m := re.search(r"(http://127\.0\.0\.1:\d+/v1)", line):
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
            return proc, m.group(1)
    raise AssertionError("korag llm serve did not start: " + "".join(seen)[-2000:])


@pytest.fixture(scope="module")
def servers(tiny_lm):
    started = [_start(tiny_lm) for _ in range(2)]  # both start up at once
    procs = [_listening(p) for p in started]
    yield procs
    for proc, _ in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def _health(url: str) -> dict:
    with urllib.request.urlopen(url.removesuffix("/v1") + "/health", timeout=5) as r:
        return json.loads(r.read())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_endpoint_lists(tmp_path):
    listing = tmp_path / "servers.txt"
    listing.write_text("# two servers\nhttp://a:8000/v1\n\nhttp://b:8000  # no /v1\n", encoding="utf-8")
    assert parse_endpoints(f"@{listing}") == ["http://a:8000/v1", "http://b:8000/v1"]
    assert parse_endpoints("http://a:8000/v1, http://b:8000/") == ["http://a:8000/v1", "http://b:8000/v1"]
    for spec, message in [
        ("http://a:1/v1,ftp://b", "'ftp://b' is not an http"),
        ("http://a:1,http://a:1/v1", "listed twice"),
        (f"@{tmp_path / 'missing.txt'}", "cannot read the list of LLM servers"),
        ("http://a:1,,", None),
    ]:
        if message is None:
            assert parse_endpoints(spec) == ["http://a:1/v1"]
            continue
        with pytest.raises(ConfigError, match=message):
            parse_endpoints(spec)
    from korag.synth.llm import llm_identity, make_generator

    assert isinstance(make_generator("http://a:1,http://b:2"), FanoutGenerator)
    assert llm_identity(f"@{listing}") == "http://a:8000/v1,http://b:8000/v1"


@pytest.mark.slow
def test_killing_one_server_mid_run_loses_and_duplicates_nothing(servers, tiny_lm, tmp_path):
    from korag.data.sample import load_sample
    from korag.synth.llm import make_generator
    from korag.synth.prompts import QueryPrompt
    from korag.synth.queries import generate_llm_queries

    (_, url_a), (proc_b, url_b) = servers
    corpus = load_sample().corpus
    corpus = corpus.subset(range(24))
    prompt = QueryPrompt("question", shots=1, max_chars=120)
    fan = FanoutGenerator([url_a, url_b], "tiny", concurrency=2, timeout=30, backoff=0.2, max_backoff=1.0)
    progress = tmp_path / "raw.jsonl"

    def kill_b_when_busy() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if fan.endpoint_stats[1].requests >= 3:
                proc_b.kill()
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_b_when_busy)
    killer.start()
    _, counts = generate_llm_queries(
        corpus, fan, prompt, GREEDY, progress_file=progress, docs_per_call=10, show_progress=False
    )
    killer.join()
    a, b = fan.endpoint_stats
    assert proc_b.poll() is not None, "server b was never killed: the run ended too soon"
    assert b.failures >= 1 and b.marked_down >= 1 and a.requests > b.requests
    assert a.requests + b.requests == len(corpus)  # each prompt answered once
    records = [json.loads(line) for line in progress.read_text(encoding="utf-8").splitlines()]
    assert sorted(r["doc_id"] for r in records) == sorted(corpus.ids)  # each document once
    # the answers are the model's own: greedy text equals a direct run of the same model
    local = make_generator(str(tiny_lm), batch_size=1, show_progress=False)
    prompts = [prompt.build(corpus.get(r["doc_id"]).text, corpus.get(r["doc_id"]).title) for r in records]
    expected = local.generate(prompts, GenerationConfig(max_tokens=3, stop=prompt.stop))
    assert [r["outputs"][0]["raw"] for r in records] == expected
    assert counts["generations"] == len(corpus)
    rows = fan.stats.extra["endpoints"]
    assert [r["url"] for r in rows] == [url_a, url_b] and rows[0]["tokens_per_second"] > 0
    assert fan.stats.generated_tokens == a.tokens + b.tokens > 0

    # resume: a later run over more documents sends only the new ones, to the server still alive
    before = _health(url_a)["requests"]
    more = load_sample().corpus
    more = more.subset(range(30))
    fan2 = FanoutGenerator([url_a, url_b], "tiny", concurrency=2, timeout=30, backoff=0.2)
    generate_llm_queries(more, fan2, prompt, GREEDY, progress_file=progress, docs_per_call=10, show_progress=False)
    assert _health(url_a)["requests"] - before == len(more) - len(corpus)
    records = [json.loads(line) for line in progress.read_text(encoding="utf-8").splitlines()]
    assert sorted(r["doc_id"] for r in records) == sorted(more.ids)


def test_a_dead_server_is_marked_down_and_taken_back_after_backoff(tiny_lm):
    from korag.synth.llm import make_generator
    from korag.synth.serve import make_server, serve_in_thread

    model = make_generator(str(tiny_lm), batch_size=1, show_progress=False)
    live, _ = serve_in_thread(model, port=0, model_name="tiny")
    port = _free_port()
    dead_url = f"http://127.0.0.1:{port}/v1"
    late = None
    try:
        fan = FanoutGenerator(
            [dead_url, f"http://127.0.0.1:{live.server_address[1]}/v1"], "tiny", concurrency=1, timeout=10, backoff=0.3
        )
        prompts = [f"문서 {i}" for i in range(6)]
        first = fan.generate(prompts, GREEDY)
        assert first == model.generate(prompts, GREEDY)
        dead, alive = fan.endpoint_stats
        assert dead.failures >= 1 and dead.requests == 0 and alive.requests == len(prompts)
        # the server comes up; once its backoff is over it is probed and answers again
        late = make_server(model, port=port, model_name="tiny")
        threading.Thread(target=late.serve_forever, daemon=True).start()
        time.sleep(0.7)
        again = fan.generate([f"다시 {i}" for i in range(8)], GREEDY)
        assert len(again) == 8 and fan.endpoint_stats[0].requests >= 1
    finally:
        for s in (live, late):
            if s is not None:
                s.shutdown()
                s.server_close()


def test_no_server_answering_is_one_clear_error():
    fan = FanoutGenerator(
        [f"http://127.0.0.1:{_free_port()}", f"http://127.0.0.1:{_free_port()}"],
        max_retries=1,
        timeout=2,
        backoff=0.05,
    )
    t0 = time.monotonic()
    with pytest.raises(ModelError, match="no LLM server answers any more") as info:
        fan.generate(["안녕", "하세요"], GREEDY)
    assert "\n" not in str(info.value) and time.monotonic() - t0 < 10
    assert all(s.failures >= 2 for s in fan.endpoint_stats)
