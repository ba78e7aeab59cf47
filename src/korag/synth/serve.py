"""`korag llm serve`: a local model behind the OpenAI chat and completion API.

Small on purpose — the standard library's threading HTTP server, one model, requests served one
generation at a time (a CPU model gains nothing from running two at once, and a lock keeps the
model's state safe). Enough for tests, notebooks and tools that speak the OpenAI API; vLLM or
llama.cpp's server are the choice for throughput.

Endpoints: ``POST /v1/chat/completions``, ``POST /v1/completions``, ``GET /v1/models``,
``GET /health`` (with counts of requests answered and tokens generated).

Chat requests take what OpenAI clients send: content as text or a list of text parts, the
``developer`` role (as ``system``), ``response_format`` (``json_object`` / ``json_schema``: the
answer is validated, since the transformers backend cannot constrain decoding),
``chat_template_kwargs.enable_thinking`` and ``reasoning_effort`` (handed to the model's chat
template), ``stream: true`` (server-sent events). Reasoning is never part of the answer.
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
from korag.synth.chat import message_text, schema_from_response_format
from korag.synth.generation import GenerationConfig, Generator, check_prompts


class RequestError(Exception):
    """A client error, answered with HTTP 400 and an OpenAI-style error body."""


def _config(body: dict[str, Any]) -> GenerationConfig:
    stop = body.get("stop") or ()
    if isinstance(stop, str):
        stop = (stop,)
    if not isinstance(stop, list | tuple) or not all(isinstance(s, str) for s in stop):
        raise RequestError("'stop' must be a string or a list of strings")
    if int(body.get("n") or 1) != 1:
        raise RequestError("'n' must be 1 (one answer per request)")
    kwargs = body.get("chat_template_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise RequestError("'chat_template_kwargs' must be an object")
    thinking = kwargs.get("enable_thinking")
    if thinking is not None and not isinstance(thinking, bool):
        raise RequestError("'chat_template_kwargs.enable_thinking' must be true or false")
    try:
        schema = schema_from_response_format(body.get("response_format"))
        return GenerationConfig(
            max_tokens=int(body.get("max_tokens") or body.get("max_completion_tokens") or 128),
            temperature=float(body.get("temperature", 0.0) if body.get("temperature") is not None else 0.0),
            top_p=float(body.get("top_p", 1.0) if body.get("top_p") is not None else 1.0),
            stop=tuple(stop),
            seed=int(body["seed"]) if body.get("seed") is not None else 0,
            json_schema=schema,
            thinking=thinking,
            reasoning_effort=body.get("reasoning_effort"),
        )
    except (TypeError, ValueError, KoragError) as exc:
        raise RequestError(f"invalid sampling settings: {exc}") from None


def _messages(raw: Any) -> list[dict[str, str]]:
    """OpenAI chat messages as korag prompts: text content, ``developer`` read as ``system``."""
    if not isinstance(raw, list) or not raw:
        raise RequestError("'messages' must be a non-empty list")
    out = []
    for j, m in enumerate(raw):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise RequestError(f"message {j + 1}: needs a string 'role'")
        try:
            content = message_text(m.get("content"))
        except ValueError as exc:
            raise RequestError(f"message {j + 1}: {exc}") from None
        out.append({"role": "system" if m["role"] == "developer" else m["role"], "content": content})
    return out


class _Server(ThreadingHTTPServer):
    """The HTTP server holding what every request needs: the model, its name and its lock."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], generator: Generator, model_name: str) -> None:
        super().__init__(address, _Handler)
        self.generator = generator
        self.model_name = model_name
        self.lock = threading.Lock()  # one generation at a time: the model's state is not shared
        self.answered = 0
        self.tokens = 0


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
            counts = {"requests": self.server.answered, "completion_tokens": self.server.tokens}
            self._send(200, {"status": "ok", **counts})
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
            body = self._body()
            if body.get("stream"):
                self._stream(route, body)
            else:
                self._send(200, handlers[route](body))
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
            self.server.answered += 1
            self.server.tokens += after - before
        return text, after - before

    def _stream(self, route: str, body: dict[str, Any]) -> None:
        """Server-sent events: one chunk per piece the model writes, then ``[DONE]``; the
        connection closes after the stream (no length is known in advance)."""
        chat = route == "/v1/chat/completions"
        prompt = _messages(body.get("messages")) if chat else self._prompt(body)
        cfg = _config(body)
        try:
            check_prompts([prompt])
        except KoragError as exc:
            raise RequestError(str(exc)) from None
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        kind = "chat.completion.chunk" if chat else "text_completion"
        generator = self.server.generator
        with self.server.lock:
            try:
                for piece in generator.stream(prompt, cfg):
                    choice = {"index": 0, "delta": {"content": piece}} if chat else {"index": 0, "text": piece}
                    event = self._envelope(kind, {**choice, "finish_reason": None}, 0)
                    self.wfile.write(f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode())
                    self.wfile.flush()
            except (KoragError, RuntimeError, ValueError) as exc:  # headers are out: report it in the stream
                error = {"error": {"message": f"{type(exc).__name__}: {exc}", "type": "server_error"}}
                self.wfile.write(f"data: {json.dumps(error, ensure_ascii=False)}\n\n".encode())
            self.server.answered += 1
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

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
        text, n = self._generate(_messages(body.get("messages")), body)
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        return self._envelope("chat.completion", choice, n)

    @staticmethod
    def _prompt(body: dict[str, Any]) -> str:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise RequestError("'prompt' must be a string")
        return prompt

    def _completion(self, body: dict[str, Any]) -> dict[str, Any]:
        text, n = self._generate(self._prompt(body), body)
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
