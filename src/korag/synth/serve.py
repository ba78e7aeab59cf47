"""`korag llm serve`: a local model behind the OpenAI chat and completion API.

Small on purpose — the standard library's threading HTTP server, one model, requests served one
generation at a time (a CPU model gains nothing from running two at once, and a lock keeps the
model's state safe). Enough for tests, notebooks and tools that speak the OpenAI API; vLLM or
llama.cpp's server are the choice for throughput.

Endpoints: ``POST /v1/chat/completions``, ``POST /v1/completions``, ``GET /v1/models``,
``GET /health``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from korag.errors import KoragError
from korag.synth.generation import GenerationConfig, Generator, check_prompts


class RequestError(Exception):
    """A client error, answered with HTTP 400 and an OpenAI-style error body."""


def _config(body: dict[str, Any]) -> GenerationConfig:
    stop = body.get("stop") or ()
    if isinstance(stop, str):
        stop = (stop,)
    if not isinstance(stop, list | tuple) or not all(isinstance(s, str) for s in stop):
        raise RequestError("'stop' must be a string or a list of strings")
    try:
        return GenerationConfig(
            max_tokens=int(body.get("max_tokens") or body.get("max_completion_tokens") or 128),
            temperature=float(body.get("temperature", 0.0) if body.get("temperature") is not None else 0.0),
            top_p=float(body.get("top_p", 1.0) if body.get("top_p") is not None else 1.0),
            stop=tuple(stop),
            seed=int(body["seed"]) if body.get("seed") is not None else 0,
        )
    except (TypeError, ValueError, KoragError) as exc:
        raise RequestError(f"invalid sampling settings: {exc}") from None


class _Server(ThreadingHTTPServer):
    """The HTTP server holding what every request needs: the model, its name and its lock."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], generator: Generator, model_name: str) -> None:
        super().__init__(address, _Handler)
        self.generator = generator
        self.model_name = model_name
        self.lock = threading.Lock()  # one generation at a time: the model's state is not shared


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the CLI prints its own line
        return

    def _send(self, code: int, obj: dict[str, Any]) -> None:
        data = json.dumps(obj, ensure_ascii=False).encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, code: int, message: str, kind: str = "invalid_request_error") -> None:
        self._send(code, {"error": {"message": message, "type": kind}})

    def do_GET(self) -> None:
        route = self.path.rstrip("/")
        if route == "/health":
            self._send(200, {"status": "ok"})
        elif route == "/v1/models":
            model = {"id": self.server.model_name, "object": "model", "owned_by": "korag"}
            self._send(200, {"object": "list", "data": [model]})
        else:
            self._error(404, f"no route {self.path}")

    def do_POST(self) -> None:
        handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "/v1/chat/completions": self._chat,
            "/v1/completions": self._completion,
        }
        route = self.path.rstrip("/")
        if route not in handlers:
            self._error(404, f"no route {self.path}")
            return
        try:
            self._send(200, handlers[route](self._body()))
        except (RequestError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            self._error(400, str(exc))
        except Exception as exc:  # the server must answer, not drop the connection
            self._error(500, f"{type(exc).__name__}: {exc}", "server_error")

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length).decode("utf-8")) if length else None
        if not isinstance(body, dict):
            raise RequestError("the request body must be a JSON object")
        return body

    def _generate(self, prompt: Any, body: dict[str, Any]) -> tuple[str, int]:
        cfg = _config(body)
        try:
            check_prompts([prompt])
        except KoragError as exc:
            raise RequestError(str(exc)) from None
        generator = self.server.generator
        with self.server.lock:
            before = generator.stats.generated_tokens
            text = generator.generate([prompt], cfg)[0]
            after = generator.stats.generated_tokens
        return text, after - before

    def _envelope(self, kind: str, choice: dict[str, Any], tokens: int) -> dict[str, Any]:
        return {
            "id": f"korag-{uuid.uuid4().hex[:12]}",
            "object": kind,
            "created": int(time.time()),
            "model": self.server.model_name,
            "choices": [choice],
            "usage": {"completion_tokens": tokens},
        }

    def _chat(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RequestError("'messages' must be a non-empty list")
        text, n = self._generate(messages, body)
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        return self._envelope("chat.completion", choice, n)

    def _completion(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise RequestError("'prompt' must be a string")
        text, n = self._generate(prompt, body)
        return self._envelope("text_completion", {"index": 0, "text": text, "finish_reason": "stop"}, n)


def make_server(
    generator: Generator, *, host: str = "127.0.0.1", port: int = 8000, model_name: str = "korag"
) -> ThreadingHTTPServer:
    """A server bound to host:port (port 0 picks a free one: see ``server.server_address``)."""
    return _Server((host, port), generator, model_name)


def serve_in_thread(generator: Generator, **kwargs: Any) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Start `make_server` in a daemon thread (for tests and notebooks); stop with ``server.shutdown()``."""
    server = make_server(generator, **kwargs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread
