"""Generation spread over several OpenAI-compatible servers (``--llm http://a:8000/v1,http://b:8000/v1``
or ``--llm @servers.txt``).

Each server gets ``concurrency`` worker threads that take prompts from one shared queue, so a fast
server answers more. A request that fails on a server (unreachable, cut off, HTTP 429/5xx) goes
back to the queue for any server, and the failing server is marked down for a backoff that doubles
with each failure in a row (capped); after it, one worker probes it with the next prompt. A prompt
is answered once: it is in the queue or in one request at a time, and its first answer is kept.
Generation stops with one error when every server has failed more than ``max_retries`` times in a
row, or one prompt has failed on every server that many times; a refused request (HTTP 4xx) fails
at once — it would be refused everywhere.

Per-server requests, failures, tokens and tokens/s are in `FanoutGenerator.endpoint_stats` and in
``stats.extra["endpoints"]``. Resuming is the caller's progress file (query generation appends
each finished chunk), so a restarted run sends only the prompts not yet answered.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from korag.errors import ConfigError, ModelError
from korag.synth.generation import GenerationConfig, GeneratorBase, Prompt, check_prompts

log = logging.getLogger(__name__)


def is_fanout(spec: str) -> bool:
    """Whether an LLM spec names several servers (commas) or a file listing them (``@FILE``)."""
    return spec.startswith("@") or ("," in spec and spec.lstrip().startswith(("http://", "https://")))


def parse_endpoints(spec: str) -> list[str]:
    """The server URLs of a spec: comma-separated, or ``@FILE`` with one URL per line (blank
    lines and ``#`` comments skipped); duplicates are an error (they would double one server's load)."""
    if spec.startswith("@"):
        path = Path(spec[1:]).expanduser()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the list of LLM servers ({exc.strerror or exc})") from None
        items = [line.split("#", 1)[0].strip() for line in lines]
        where = str(path)
    else:
        items = [part.strip() for part in spec.split(",")]
        where = "--llm"
    urls = [u for u in items if u]
    if not urls:
        raise ConfigError(f"{where}: no LLM server URL given")
    for u in urls:
        if not u.startswith(("http://", "https://")):
            raise ConfigError(f"{where}: {u!r} is not an http(s):// URL")
    normal = [u.rstrip("/") if u.rstrip("/").endswith("/v1") else u.rstrip("/") + "/v1" for u in urls]
    dupes = sorted({u for u in normal if normal.count(u) > 1})
    if dupes:
        raise ConfigError(f"{where}: {dupes[0]} is listed twice")
    return normal


@dataclass
class EndpointStats:
    """What one server did: answered requests, failed ones, completion tokens, seconds spent in
    requests, times it was marked down; `tokens_per_second` over the wall time of generation."""

    url: str
    requests: int = 0
    failures: int = 0
    tokens: int = 0
    busy_seconds: float = 0.0
    marked_down: int = 0
    wall_seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        """Completion tokens per second of generation wall time."""
        return self.tokens / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def row(self) -> dict[str, Any]:
        """A plain row for reports and tables."""
        return {**asdict(self), "tokens_per_second": round(self.tokens_per_second, 2)}


class _Endpoint:
    def __init__(self, client: Any, concurrency: int) -> None:
        self.client = client
        self.concurrency = concurrency
        self.stats = EndpointStats(client.base_url)
        self.down_until = 0.0
        self.failures_in_row = 0


class FanoutGenerator(GeneratorBase):
    """One `Generator` over several OpenAI-compatible servers (see the module docstring)."""

    def __init__(
        self,
        endpoints: str | Sequence[str],
        model: str = "default",
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        concurrency: int = 4,
        chat: bool = False,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        thinking: bool | None = None,
        reasoning_effort: str | None = None,
    ) -> None:
        from korag.synth.llm import OpenAIHTTPGenerator

        urls = parse_endpoints(endpoints) if isinstance(endpoints, str) else parse_endpoints(",".join(endpoints))
        super().__init__()
        self.model = model
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.has_chat_template = True
        # each client tries once: failing over to another server beats retrying a sick one
        self.endpoints = [
            _Endpoint(
                OpenAIHTTPGenerator(
                    u,
                    model,
                    api_key=api_key,
                    timeout=timeout,
                    max_retries=0,
                    concurrency=concurrency,
                    chat=chat,
                    thinking=thinking,
                    reasoning_effort=reasoning_effort,
                ),
                concurrency,
            )
            for u in urls
        ]
        self._lock = threading.Lock()

    def describe(self) -> dict[str, Any]:
        """The servers and the model name."""
        return {"backend": "http", "model": self.model, "urls": [e.client.base_url for e in self.endpoints]}

    @property
    def endpoint_stats(self) -> list[EndpointStats]:
        """Per-server counters, in the order the servers were given."""
        return [e.stats for e in self.endpoints]

    def stream(self, prompt: Prompt, config: GenerationConfig):
        """The continuation from the first server that is not marked down, streamed."""
        now = time.monotonic()
        live = [e for e in self.endpoints if e.down_until <= now] or self.endpoints
        yield from live[0].client.stream(prompt, config)

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[str]:
        """Every prompt's continuation, in prompt order, spread over the servers."""
        check_prompts(prompts)
        if not prompts:
            return []
        run = _Run(self, list(prompts), config)
        t0 = time.perf_counter()
        try:
            results = run.execute()
        finally:
            wall = time.perf_counter() - t0
            with self._lock:
                for e in self.endpoints:
                    e.stats.wall_seconds += wall
                self.stats.seconds += wall
                self.stats.extra["endpoints"] = [s.row() for s in self.endpoint_stats]
        self.stats.prompts += len(prompts)
        return results

    def _mark_down(self, endpoint: _Endpoint, error: Exception) -> None:
        with self._lock:
            endpoint.failures_in_row += 1
            endpoint.stats.failures += 1
            endpoint.stats.marked_down += 1
            self.stats.retries += 1
            wait = min(self.max_backoff, self.backoff * 2 ** (endpoint.failures_in_row - 1))
            endpoint.down_until = time.monotonic() + wait
        log.warning("%s marked down for %.1f s: %s", endpoint.stats.url, wait, error)

    def _answered(self, endpoint: _Endpoint, tokens: int, seconds: float) -> None:
        with self._lock:
            if endpoint.failures_in_row:
                log.info("%s is answering again", endpoint.stats.url)
            endpoint.failures_in_row = 0
            endpoint.down_until = 0.0
            endpoint.stats.requests += 1
            endpoint.stats.tokens += tokens
            endpoint.stats.busy_seconds += seconds
            self.stats.generated_tokens += tokens


class _Run:
    """One `generate` call: the shared queue, the workers and the results."""

    def __init__(self, owner: FanoutGenerator, prompts: list[Prompt], config: GenerationConfig) -> None:
        self.owner = owner
        self.prompts = prompts
        self.config = config
        self.todo: queue.Queue[int] = queue.Queue()
        for i in range(len(prompts)):
            self.todo.put(i)
        self.results: list[str | None] = [None] * len(prompts)
        self.failures = [0] * len(prompts)
        self.remaining = len(prompts)
        self.finished = threading.Event()
        self.error: Exception | None = None
        self.lock = threading.Lock()

    def execute(self) -> list[str]:
        workers = [
            threading.Thread(target=self.work, args=(e,), daemon=True, name=f"fanout-{n}-{k}")
            for n, e in enumerate(self.owner.endpoints)
            for k in range(e.concurrency)
        ]
        for w in workers:
            w.start()
        self.finished.wait()
        for w in workers:
            w.join()
        if self.error is not None:
            raise self.error
        return [r if r is not None else "" for r in self.results]

    def fail(self, error: Exception) -> None:
        with self.lock:
            if self.error is None:
                self.error = error
        self.finished.set()

    def work(self, endpoint: _Endpoint) -> None:
        """Take prompts while there are any; wait out this server's backoff while it is down."""
        from korag.synth.llm import RequestRefusedError

        while not self.finished.is_set():
            wait = endpoint.down_until - time.monotonic()
            if wait > 0:
                self.finished.wait(min(wait, 0.2))
                continue
            try:
                i = self.todo.get(timeout=0.05)
            except queue.Empty:
                continue
            t0 = time.perf_counter()
            try:
                text, tokens = endpoint.client.request_one(self.prompts[i], self.config)
            except RequestRefusedError as exc:
                self.fail(ModelError(f"prompt {i + 1}: {exc}"))
                return
            except (ModelError, OSError) as exc:  # unreachable, cut off, or an answer that is no response
                self.owner._mark_down(endpoint, exc)
                self.retry(i, exc)
                continue
            self.owner._answered(endpoint, tokens, time.perf_counter() - t0)
            with self.lock:
                if self.results[i] is None:
                    self.results[i] = text
                    self.remaining -= 1
                if self.remaining == 0:
                    self.finished.set()

    def retry(self, i: int, error: Exception) -> None:
        """Put prompt `i` back for any server, unless nothing can answer it any more."""
        owner = self.owner
        limit = owner.max_retries + 1
        with self.lock:
            self.failures[i] += 1
            tries = self.failures[i]
        if all(e.failures_in_row >= limit for e in owner.endpoints):
            urls = ", ".join(e.stats.url for e in owner.endpoints)
            self.fail(ModelError(f"no LLM server answers any more ({urls}), last error: {error}"))
        elif tries >= limit * len(owner.endpoints):
            self.fail(ModelError(f"prompt {i + 1} failed {tries} times on every server; last error: {error}"))
        else:
            self.todo.put(i)
