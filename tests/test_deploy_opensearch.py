"""`korag deploy opensearch` against a validating OpenSearch stub on 127.0.0.1.

No OpenSearch server can run here, so `Stub` answers like OpenSearch 2.x/3.x with ML Commons
and neural-search, and *rejects* what they reject, plus korag's own stricter policies; the rules
(named R-… as in the request specification) come from the ML Commons, neural-search and
OpenSearch sources and documentation. Every rejection is recorded in ``stub.violations``: a
deploy that passes must leave it empty. The last tests drive the stub directly with bad requests
to show each rule bites.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import re
import socket
import threading
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import pytest

from conftest import run_cli
from korag.collections import Collection, CollectionConfig
from korag.data.chunk import ChunkConfig
from korag.data.schema import Document
from korag.errors import ConfigError

pytest.importorskip("opensearchpy")

CHUNK_LIMIT = 10_000_000  # ML Commons ModelHelper.CHUNK_SIZE
JSON_TYPES = ("application/json", "application/x-ndjson", "application/smile", "application/yaml", "application/cbor")
ML_SETTINGS = {
    "plugins.ml_commons.allow_registering_model_via_local_file",
    "plugins.ml_commons.allow_registering_model_via_url",
    "plugins.ml_commons.only_run_on_ml_node",
    "plugins.ml_commons.native_memory_threshold",
    "plugins.ml_commons.jvm_heap_memory_threshold",
    "plugins.ml_commons.model_access_control_enabled",
    "plugins.ml_commons.local_model.enabled",
}
FUNCTION_NAMES = {"TEXT_EMBEDDING", "SPARSE_ENCODING", "SPARSE_TOKENIZE", "TEXT_SIMILARITY", "QUESTION_ANSWERING"}
REGISTER_KEYS = {
    "name", "version", "description", "model_format", "function_name", "model_content_size_in_bytes",
    "model_content_hash_value", "total_chunks", "model_group_id", "model_config",
}  # fmt: skip
ACCESS_KEYS = {"backend_roles", "access_mode", "add_all_backend_roles"}
PROCESSOR_KEYS = {"model_id", "field_map", "prune_type", "prune_ratio", "batch_size", "skip_existing",
                  "description", "tag", "if", "ignore_failure", "on_failure"}  # fmt: skip
PRUNE_TYPES = {"none", "max_ratio", "alpha_mass", "top_k", "abs_value"}
FIELD_TYPES = {"text", "keyword", "integer", "long", "float", "double", "boolean", "date", "rank_features", "object"}
QUERY_KEYS = {"query_text": (2, 11), "model_id": (2, 11), "query_tokens": (2, 14), "analyzer": (3, 1),
              "max_token_score": (2, 11), "boost": (0, 0), "_name": (0, 0), "method_parameters": (3, 3)}  # fmt: skip
FLOAT_MIN_NORMAL = 1.17549435e-38


class RejectError(Exception):
    """A request OpenSearch (or korag's policy) refuses: recorded as a violation."""

    def __init__(self, status: int, reason: str, kind: str = "illegal_argument_exception") -> None:
        super().__init__(reason)
        self.status, self.reason, self.kind = status, reason, kind


class ScriptedError(Exception):
    """A scripted failure (auth, a failing node): not korag's fault, not a violation."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(str(body))
        self.status, self.body, self.headers = status, body, headers or {}


def error_body(status: int, kind: str, reason: str) -> dict:
    return {
        "error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason},
        "status": status,
    }


@dataclass
class Recorded:
    method: str
    path: str
    route: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Model:
    id: str
    meta: dict
    chunks: dict[int, bytes] = field(default_factory=dict)
    state: str = "REGISTERING"
    polls_left: int = 1  # the state is written asynchronously after the last chunk: one poll sees REGISTERING
    content_error: str | None = None
    idf: dict[str, float] | None = None


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".")[:3])


def _fake_vector(text: str) -> dict[str, float]:
    """The stub's 'model': one feature per word character (never a '.')."""
    out: dict[str, float] = {}
    for ch in re.findall(r"\w", text):
        out[ch] = out.get(ch, 0.0) + 1.0
    return out


class Stub:
    """A recording, validating OpenSearch + ML Commons + neural-search on 127.0.0.1."""

    def __init__(
        self,
        *,
        version: str = "2.19.1",
        auth: tuple[str, str] | None = None,
        api_key: str | None = None,
        forbidden: str | None = None,
        fail_deploy: str | None = None,
        bulk_fail: dict[str, str] | None = None,
        chunk_size: int = CHUNK_LIMIT,
        plugins: tuple[str, ...] = ("opensearch-ml", "opensearch-neural-search"),
    ) -> None:
        self.version, self.auth, self.api_key, self.forbidden = version, auth, api_key, forbidden
        self.fail_deploy, self.bulk_fail, self.chunk_size, self.plugins = (
            fail_deploy,
            bulk_fail or {},
            chunk_size,
            plugins,
        )
        self.requests: list[Recorded] = []
        self.violations: list[str] = []
        self.settings: dict[str, Any] = {
            "plugins.ml_commons.allow_registering_model_via_local_file": False,
            "plugins.ml_commons.only_run_on_ml_node": True,
        }
        self.groups: dict[str, str] = {}
        self.models: dict[str, Model] = {}
        self.tasks: dict[str, dict] = {}
        self.pipelines: dict[str, dict] = {}
        self.indices: dict[str, dict] = {}
        self.lock = threading.Lock()
        self.routes = [
            ("GET", r"/", "info", self.info),
            ("GET", r"/_cat/plugins", "plugins", self.cat_plugins),
            ("PUT", r"/_cluster/settings", "settings", self.put_settings),
            ("POST", r"/_plugins/_ml/model_groups/_register", "register_group", self.register_group),
            ("POST", r"/_plugins/_ml/models/_register_meta", "register_meta", self.register_meta),
            ("POST", r"/_plugins/_ml/models/meta", "deprecated", self.deprecated),
            (
                "POST",
                r"/_plugins/_ml/models/(?P<id>[^/]+)/upload_chunk/(?P<n>[^/]+)",
                "upload_chunk",
                self.upload_chunk,
            ),
            ("POST", r"/_plugins/_ml/models/(?P<id>[^/]+)/chunk/(?P<n>[^/]+)", "deprecated", self.deprecated),
            ("POST", r"/_plugins/_ml/models/(?P<id>[^/_][^/]*)/_deploy", "deploy", self.deploy),
            ("GET", r"/_plugins/_ml/models/(?P<id>[^/_][^/]*)", "get_model", self.get_model),
            ("GET", r"/_plugins/_ml/tasks/(?P<id>[^/]+)", "get_task", self.get_task),
            ("PUT", r"/_ingest/pipeline/(?P<id>[^/]+)", "put_pipeline", self.put_pipeline),
            ("POST", r"/_bulk", "bulk", self.bulk),
            ("PUT", r"/_bulk", "bulk", self.bulk),
            ("POST", r"/(?P<index>[^/_][^/]*)/_refresh", "refresh", self.refresh),
            ("GET", r"/(?P<index>[^/_][^/]*)/_count", "count", self.count),
            ("POST", r"/(?P<index>[^/_][^/]*)/_count", "count", self.count),
            ("GET", r"/(?P<index>[^/_][^/]*)/_search", "search", self.search),
            ("POST", r"/(?P<index>[^/_][^/]*)/_search", "search", self.search),
            ("GET", r"/(?P<index>[^/_][^/]*)", "get_index", self.get_index),
            ("PUT", r"/(?P<index>[^/]+)", "put_index", self.put_index),
        ]

    # -- server --

    def __enter__(self) -> Stub:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                status, payload, headers = stub.dispatch(self.command, self.path, dict(self.headers.items()), body)
                data = payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode()
                self.send_response(status)
                ctype = "text/plain" if isinstance(payload, bytes) else "application/json; charset=UTF-8"
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle  # noqa: N815

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def dispatch(self, method: str, raw_path: str, headers: dict[str, str], body: bytes):
        parts = urlsplit(raw_path)
        path = unquote(parts.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        headers = {k.lower(): v for k, v in headers.items()}
        route, handler, match = "unknown", None, None
        for m, pattern, name, fn in self.routes:
            match = re.fullmatch(pattern, path)
            if match and m == method:
                route, handler = name, fn
                break
        with self.lock:
            self.requests.append(Recorded(method, path, route, query, headers, body))
            try:
                self.check_auth(headers, path)
                self.check_http(method, path, headers, body, handler)
                return 200, handler(match, query, body), {}
            except RejectError as r:
                self.violations.append(f"{method} {path}: {r.reason}")
                return r.status, error_body(r.status, r.kind, r.reason), {}
            except ScriptedError as a:
                return a.status, a.body, a.headers

    def check_auth(self, headers: dict[str, str], path: str) -> None:
        given = headers.get("authorization", "")
        if self.auth is not None:
            expected = "Basic " + base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
            if given != expected:
                raise ScriptedError(401, b"Unauthorized", {"WWW-Authenticate": 'Basic realm="OpenSearch Security"'})
        if self.api_key is not None and given != f"ApiKey {self.api_key}":
            raise ScriptedError(401, b"Unauthorized")
        if self.forbidden and re.search(self.forbidden, path):
            raise ScriptedError(403, error_body(403, "security_exception",
                                         "no permissions for [cluster:admin/opensearch/ml/register_model] and User [name=reader]"))  # fmt: skip

    def check_http(self, method, path, headers, body, handler) -> None:
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if body and not ctype:
            raise RejectError(406, "Content-Type header is missing", "status_exception")  # R-HTTP-1
        if body and ctype not in JSON_TYPES:
            raise RejectError(406, f"Content-Type header [{ctype}] is not supported", "status_exception")
        if handler is None:
            known = any(re.fullmatch(p, path) for _, p, _, _ in self.routes)  # R-HTTP-3
            raise RejectError(405 if known else 400, f"no handler found for uri [{path}] and method [{method}]")

    @staticmethod
    def parse(body: bytes, what: str) -> dict:
        if not body:
            raise RejectError(400, f"{what}: request body is required", "parse_exception")
        try:
            value = json.loads(body)
        except ValueError:
            raise RejectError(400, f"{what}: failed to parse the body as JSON", "parse_exception") from None
        if not isinstance(value, dict):
            raise RejectError(400, f"{what}: the body must be a JSON object", "parse_exception")
        return value

    # -- cluster --

    def info(self, m, q, body):
        return {"name": "n1", "version": {"number": self.version, "distribution": "opensearch"},
                "tagline": "The OpenSearch Project: https://opensearch.org/"}  # fmt: skip

    def cat_plugins(self, m, q, body):
        if q.get("format") != "json":
            raise RejectError(400, "korag reads _cat/plugins as JSON: format=json")
        return [{"name": "n1", "component": c, "version": f"{self.version}.0"} for c in self.plugins]

    def put_settings(self, m, q, body):
        data = self.parse(body, "cluster settings")
        if set(data) - {"persistent", "transient"}:
            raise RejectError(400, f"unknown keys {sorted(set(data) - {'persistent', 'transient'})}")
        for scope in data.values():
            for key, value in scope.items():
                if key not in ML_SETTINGS:  # R-SET-1
                    raise RejectError(400, f"persistent setting [{key}], not recognized")
                if key.endswith("_threshold") and not 0 <= int(value) <= 100:  # R-SET-2
                    raise RejectError(400, f"Failed to parse value [{value}] for setting [{key}]")
                self.settings[key] = str(value).lower() == "true" if str(value).lower() in ("true", "false") else value
        return {"acknowledged": True, "persistent": data.get("persistent", {}), "transient": {}}

    def require_local_file(self) -> None:  # R-SET-3
        if not self.settings["plugins.ml_commons.allow_registering_model_via_local_file"]:
            raise RejectError(400, "To upload custom model from local file, user needs to enable "
                              "allow_registering_model_via_local_file settings.")  # fmt: skip

    # -- ML Commons --

    def deprecated(self, m, q, body):
        raise RejectError(
            400, "korag policy: deprecated ML Commons path (use _register_meta / upload_chunk)"
        )  # R-HTTP-4

    def register_group(self, m, q, body):
        data = self.parse(body, "model group")
        if not data.get("name"):
            raise RejectError(400, "model group name must not be null")  # R-MG-1
        if data["name"] in self.groups:  # R-MG-2
            raise RejectError(
                400,
                f"The name you provided is already being used by a model group with ID: {self.groups[data['name']]}.",
            )
        if ACCESS_KEYS & set(data):  # R-MG-3
            raise RejectError(400, "You cannot specify model access control parameters because the Security plugin or "
                              "model access control is disabled on your cluster.")  # fmt: skip
        self.groups[data["name"]] = f"group-{len(self.groups) + 1}"
        return {"model_group_id": self.groups[data["name"]], "status": "CREATED"}

    def register_meta(self, m, q, body):
        self.require_local_file()
        if not body:
            raise RejectError(400, "Model meta request has empty body")  # R-RM-1
        data = self.parse(body, "register meta")
        for key, msg in (("name", "model name is null"), ("model_format", "model format is null"),
                         ("model_content_hash_value", "model content hash value is null"),
                         ("total_chunks", "total chunks field is null")):  # fmt: skip
            if data.get(key) is None:
                raise RejectError(400, msg)  # R-RM-2
        if data["model_format"] not in ("TORCH_SCRIPT", "ONNX"):
            raise RejectError(400, "Wrong model format")  # R-RM-3 (case-sensitive)
        function = str(data.get("function_name", "TEXT_EMBEDDING")).upper()
        if function not in FUNCTION_NAMES:
            raise RejectError(400, "Wrong function name")
        sparse = function in ("SPARSE_ENCODING", "SPARSE_TOKENIZE")
        if not sparse and data.get("model_config") is None:
            raise RejectError(400, "model config is null")  # R-RM-4
        if sparse and "model_config" in data:  # R-RM-5 (korag policy: a deploy failure on 3.1+)
            raise RejectError(
                400, "korag policy: no model_config for sparse models (ClassCastException on deploy, 3.1+)"
            )
        self.check_register_policy(data)
        model = Model(f"model-{len(self.models) + 1}", {**data, "function_name": function})
        self.models[model.id] = model
        return {"model_id": model.id, "status": "CREATED"}

    def check_register_policy(self, data: dict) -> None:
        """korag's stricter rules for _register_meta (R-RM-6 and what korag never sends)."""
        if set(data) & (ACCESS_KEYS | {"model_id", "is_hidden"}):
            raise RejectError(
                400, f"korag policy: do not send {sorted(set(data) & (ACCESS_KEYS | {'model_id', 'is_hidden'}))}"
            )
        if set(data) - REGISTER_KEYS:
            raise RejectError(400, f"korag policy: unexpected keys {sorted(set(data) - REGISTER_KEYS)}")
        if not re.fullmatch(r"[0-9a-f]{64}", str(data["model_content_hash_value"])):  # R-RM-6
            raise RejectError(400, "korag policy: model_content_hash_value must be a lowercase sha256 hex")
        size = data.get("model_content_size_in_bytes")
        if not isinstance(size, int) or size <= 0:
            raise RejectError(400, "korag policy: send model_content_size_in_bytes")
        if data["total_chunks"] != math.ceil(size / self.chunk_size):
            raise RejectError(
                400, f"korag policy: total_chunks {data['total_chunks']} != ceil({size} / {self.chunk_size})"
            )
        if "model_group_id" in data and data["model_group_id"] not in self.groups.values():
            raise RejectError(404, "Failed to find model group")

    def model(self, model_id: str) -> Model:
        if model_id not in self.models:
            raise RejectError(404, "Failed to find model", "status_exception")  # R-UC-1 / R-DP-1
        return self.models[model_id]

    def upload_chunk(self, m, q, body):
        self.require_local_file()
        model = self.model(m["id"])
        if not m["n"].isdigit():
            raise RejectError(400, f'For input string: "{m["n"]}"', "number_format_exception")  # R-UC-2
        n, total = int(m["n"]), model.meta["total_chunks"]
        if n >= total:
            raise RejectError(400, "Chunk number exceeds total chunks")
        if not body:
            raise RejectError(400, "Chunk size either 0 or null")  # R-UC-3
        if len(body) > CHUNK_LIMIT:
            raise RejectError(400, "Chunk size exceeds 10MB")
        if n in model.chunks:  # R-UC-4
            raise RejectError(400, f"korag policy: chunk {n} uploaded twice")
        size = model.meta["model_content_size_in_bytes"]
        expected = self.chunk_size if n < total - 1 else size - (total - 1) * self.chunk_size
        if len(body) != expected:
            raise RejectError(400, f"korag policy: chunk {n} has {len(body)} bytes, expected {expected}")
        model.chunks[n] = body
        if len(model.chunks) == total:
            content = b"".join(model.chunks[i] for i in range(total))
            if len(content) != size or hashlib.sha256(content).hexdigest() != model.meta["model_content_hash_value"]:
                model.content_error = "model content changed"  # what the deploy reports (MLModelManager)
                self.violations.append(f"model {model.id}: the chunks do not add up to the registered size/sha256")
            else:
                self.check_zip(model, content)
        return {"status": "Uploaded"}

    def check_zip(self, model: Model, content: bytes) -> None:
        """What the deploy would trip over: the zip's members, idf.json's weights (korag policy: query
        weights in (0, 64], token names without '.')."""
        try:
            z = zipfile.ZipFile(io.BytesIO(content))
            names = z.namelist()
        except zipfile.BadZipFile:
            model.content_error = "not a zip file"
        else:
            pts = [n for n in names if n.endswith(".pt")]
            if model.meta["function_name"] == "SPARSE_ENCODING" and (len(pts) != 1 or "tokenizer.json" not in names):
                model.content_error = f"a SPARSE_ENCODING zip needs one .pt and tokenizer.json, has {names}"
            elif model.meta["function_name"] == "SPARSE_TOKENIZE":
                if pts or sorted(names) != ["idf.json", "tokenizer.json"]:
                    model.content_error = f"a SPARSE_TOKENIZE zip holds tokenizer.json and idf.json, has {names}"
                else:
                    model.idf = json.loads(z.read("idf.json"))
                    bad = [(t, w) for t, w in model.idf.items() if not t or "." in t or not 0 < w <= 64]
                    if bad:
                        model.content_error = f"idf.json: weight must be in (0, 64.0], got: {bad[:3]}"
        if model.content_error:
            self.violations.append(f"model {model.id}: {model.content_error}")

    def get_model(self, m, q, body):
        model = self.model(m["id"])
        if model.state == "REGISTERING" and len(model.chunks) == model.meta["total_chunks"]:
            if model.polls_left:
                model.polls_left -= 1
            else:
                model.state = "REGISTERED"
        return {"name": model.meta["name"], "algorithm": model.meta["function_name"], "model_version": "1",
                "model_format": model.meta["model_format"], "model_state": model.state,
                "total_chunks": model.meta["total_chunks"]}  # fmt: skip

    def deploy(self, m, q, body):
        if body and set(self.parse(body, "deploy")) - {"node_ids"}:
            raise RejectError(400, "deploy takes only node_ids")
        if self.settings["plugins.ml_commons.only_run_on_ml_node"]:  # R-SET-4: the stub's node has no ml role
            raise RejectError(400, "no eligible node found")
        model = self.model(m["id"])
        if model.state not in ("REGISTERED", "DEPLOYED", "DEPLOY_FAILED"):  # R-DP-2
            raise RejectError(400, f"korag policy: deploy of a model in state {model.state}")
        task_id = f"task-{len(self.tasks) + 1}"
        error = model.content_error or self.fail_deploy
        self.tasks[task_id] = {"model": model, "polls": 1, "error": error}
        model.state = "DEPLOYING"
        return {"task_id": task_id, "task_type": "DEPLOY_MODEL", "status": "CREATED"}

    def get_task(self, m, q, body):
        if m["id"] not in self.tasks:
            raise RejectError(404, "Failed to find task", "status_exception")
        task = self.tasks[m["id"]]
        model: Model = task["model"]
        out = {"model_id": model.id, "task_type": "DEPLOY_MODEL", "function_name": model.meta["function_name"],
               "worker_node": ["n1"], "is_async": True}  # fmt: skip
        if task["polls"]:
            task["polls"] -= 1
            return {**out, "state": "RUNNING"}
        if task["error"]:
            model.state = "DEPLOY_FAILED"
            return {**out, "state": "FAILED", "error": task["error"]}
        model.state = "DEPLOYED"
        return {**out, "state": "COMPLETED"}

    # -- ingest, indices, bulk, search --

    def put_pipeline(self, m, q, body):
        data = self.parse(body, "pipeline")
        extra = set(data) - {"description", "version", "processors", "on_failure"}
        if extra:  # R-IP-1
            raise RejectError(
                400,
                f"pipeline [{m['id']}] doesn't support one or more provided configuration parameters {sorted(extra)}",
            )
        if not isinstance(data.get("processors"), list):
            raise RejectError(400, "[processors] required property is missing")
        for proc in data["processors"]:
            if not isinstance(proc, dict) or len(proc) != 1:
                raise RejectError(400, "a processor is an object with one key")
            kind, cfg = next(iter(proc.items()))
            if kind != "sparse_encoding":
                raise RejectError(
                    400, f"No processor type exists with name [{kind}]"
                )  # R-IP-2 (as far as the stub knows)
            self.check_sparse_processor(cfg)
        self.pipelines[m["id"]] = data
        return {"acknowledged": True}

    def check_sparse_processor(self, cfg: dict) -> None:
        allowed = set(PROCESSOR_KEYS)
        if _version(self.version) < (2, 19):
            allowed -= {"prune_type", "prune_ratio"}  # R-IP-5
        if set(cfg) - allowed:  # R-IP-2
            raise RejectError(
                400,
                f"processor [sparse_encoding] doesn't support one or more provided configuration parameters {sorted(set(cfg) - allowed)}",
            )
        if not isinstance(cfg.get("model_id"), str) or not cfg["model_id"].strip():  # R-IP-3
            raise RejectError(400, "model_id is null or empty, cannot process it")
        fmap = cfg.get("field_map")
        if (
            not isinstance(fmap, dict)
            or not fmap
            or any(
                not isinstance(k, str) or not k.strip() or not isinstance(v, str) or not v.strip()
                for k, v in fmap.items()
            )
        ):
            raise RejectError(400, "Unable to create the processor as field_map has invalid key or value")
        prune, ratio = cfg.get("prune_type"), cfg.get("prune_ratio")  # R-IP-4
        if prune is not None and prune not in PRUNE_TYPES:
            raise RejectError(400, f"Unknown prune type: {prune}")
        if prune in (None, "none") and ratio is not None:
            raise RejectError(400, "prune_ratio field is not supported when prune_type is not provided")
        if prune not in (None, "none"):
            ok = {"max_ratio": lambda r: 0 <= r < 1, "alpha_mass": lambda r: 0 <= r < 1,
                  "top_k": lambda r: r > 0 and float(r).is_integer(), "abs_value": lambda r: r >= 0}[prune]  # fmt: skip
            if not isinstance(ratio, int | float) or not ok(ratio):
                raise RejectError(400, f"Illegal prune_ratio {ratio} for prune_type: {prune}")
        model = self.models.get(cfg["model_id"])  # R-IP-6 (korag policy)
        if model is None or model.state != "DEPLOYED" or model.meta["function_name"] != "SPARSE_ENCODING":
            raise RejectError(400, f"korag policy: {cfg['model_id']} is not a deployed SPARSE_ENCODING model")

    def index(self, name: str) -> dict:
        if name not in self.indices:
            raise RejectError(404, f"no such index [{name}]", "index_not_found_exception")
        return self.indices[name]

    def get_index(self, m, q, body):
        name = m["index"]
        if name not in self.indices:
            raise ScriptedError(404, error_body(404, "index_not_found_exception", f"no such index [{name}]"))
        idx = self.indices[name]
        settings = {"index": {"number_of_shards": "1", "provided_name": name, **idx["settings"]}}
        return {name: {"aliases": {}, "mappings": idx["mappings"], "settings": settings}}

    @staticmethod
    def check_index_name(name: str) -> None:  # R-IX-1
        problem = None
        if not name:
            problem = "must not be empty"
        elif name != name.lower():
            problem = "must be lowercase"
        elif set(name) & set('\\/*?"<>| ,#:'):
            problem = 'must not contain the following characters [ , ", *, \\, <, |, ,, >, /, ?, #, :]'
        elif name.startswith(("_", "-", "+")):
            problem = "must not start with '_', '-', or '+'"
        elif name in (".", ".."):
            problem = "must not be '.' or '..'"
        elif name.startswith("."):
            problem = "korag policy: no hidden (dot) index"
        elif len(name.encode()) > 255:
            problem = "index name is too long"
        if problem:
            raise RejectError(400, f"Invalid index name [{name}], {problem}", "invalid_index_name_exception")

    def put_index(self, m, q, body):
        name = m["index"]
        self.check_index_name(name)
        if name in self.indices:
            raise RejectError(400, f"index [{name}/abc] already exists", "resource_already_exists_exception")
        data = self.parse(body, "create index") if body else {}
        if set(data) - {"settings", "mappings", "aliases"}:
            raise RejectError(
                400, f"unknown key {sorted(set(data) - {'settings', 'mappings', 'aliases'})} for create index"
            )
        settings = dict(data.get("settings", {}))
        if isinstance(settings.get("index"), dict):
            settings.update({f"index.{k}": v for k, v in settings.pop("index").items()})
        settings = {k.removeprefix("index."): v for k, v in settings.items()}  # normalizePrefix("index.")
        props = data.get("mappings", {}).get("properties", {})
        for fname, spec in props.items():
            if spec.get("type", "object") not in FIELD_TYPES:
                raise RejectError(
                    400,
                    f"No handler for type [{spec.get('type')}] declared on field [{fname}]",
                    "mapper_parsing_exception",
                )
            if spec.get("type") == "rank_features" and set(spec) - {"type", "meta"}:  # R-IX-2
                raise RejectError(400, f"unknown parameter {sorted(set(spec) - {'type', 'meta'})} on mapper [{fname}] of type [rank_features]",
                             "mapper_parsing_exception")  # fmt: skip
        pipe = settings.get("default_pipeline")  # R-IX-3 (korag policy)
        if pipe not in self.pipelines:
            raise RejectError(400, f"korag policy: default_pipeline {pipe!r} does not exist")
        for proc in self.pipelines[pipe]["processors"]:
            for src, dst in proc["sparse_encoding"]["field_map"].items():
                if props.get(dst, {}).get("type") != "rank_features":
                    raise RejectError(400, f"korag policy: the sparse field [{dst}] must be mapped rank_features")
                if props.get(src, {}).get("type") != "text":
                    raise RejectError(400, f"korag policy: the text field [{src}] must be mapped text")
        self.indices[name] = {"settings": settings, "mappings": {"properties": props}, "docs": {}}
        return {"acknowledged": True, "shards_acknowledged": True, "index": name}

    def bulk(self, m, q, body):
        if not body.endswith(b"\n"):  # R-BK-1
            raise RejectError(400, "The bulk request must be terminated by a newline [\\n]")
        lines = body.decode("utf-8").split("\n")[:-1]
        items, i = [], 0
        while i < len(lines):
            action = json.loads(lines[i])
            if (
                not isinstance(action, dict)
                or len(action) != 1
                or next(iter(action)) not in ("index", "create", "update", "delete")
            ):
                raise RejectError(400, f"Malformed action/metadata line [{i + 1}]")  # R-BK-2
            op, meta = next(iter(action.items()))
            if op == "delete":
                raise RejectError(400, "korag policy: korag does not delete")
            if i + 1 >= len(lines):
                raise RejectError(400, f"the source line of action [{i + 1}] is missing")
            if "_index" not in meta:
                raise RejectError(400, "Validation Failed: 1: index is missing;", "action_request_validation_exception")
            idx = self.index(meta["_index"])  # korag policy: no auto-created index (it would have no mapping)
            items.append({op: self.index_doc(meta["_index"], idx, meta.get("_id"), json.loads(lines[i + 1]), q)})
            i += 2
        return {"took": 1, "errors": any(next(iter(it.values()))["status"] >= 300 for it in items), "items": items}

    def index_doc(self, index: str, idx: dict, doc_id: str | None, source: dict, q: dict) -> dict:
        head = {"_index": index, "_id": doc_id}
        if doc_id in self.bulk_fail:
            reason = self.bulk_fail[doc_id]
            return {**head, "status": 400, "error": {"type": "mapper_parsing_exception", "reason": reason}}
        props = idx["mappings"]["properties"]
        self.check_field_types(doc_id, source, props)
        pipeline_name = q.get("pipeline", idx["settings"].get("default_pipeline"))
        doc = dict(source)
        processors = [] if pipeline_name == "_none" else self.pipelines[pipeline_name]["processors"]
        for proc in processors:
            cfg = proc["sparse_encoding"]
            model = self.models.get(cfg["model_id"])
            if model is None or model.state != "DEPLOYED":  # R-BK-4
                self.violations.append(f"{doc_id}: ingest with model {cfg['model_id']} not deployed")
                return {
                    **head,
                    "status": 400,
                    "error": {"type": "illegal_argument_exception", "reason": "model not deployed"},
                }
            for src, dst in cfg["field_map"].items():
                if not isinstance(doc.get(src), str):
                    return {
                        **head,
                        "status": 400,
                        "error": {"type": "illegal_argument_exception", "reason": f"field [{src}] is not a string"},
                    }
                doc[dst] = _fake_vector(doc[src])
        for fname, spec in props.items():
            if spec.get("type") == "rank_features" and fname in doc:
                problem = self.rank_features_problem(doc[fname])
                if problem:
                    return {**head, "status": 400, "error": {"type": "mapper_parsing_exception", "reason": problem}}
        idx["docs"][doc_id] = doc
        return {**head, "_version": 1, "result": "created", "status": 201}

    def check_field_types(self, doc_id: str | None, source: dict, props: dict) -> None:
        """korag policy: every field sent is mapped (no dynamic mapping), with values of its type."""
        unmapped = set(source) - set(props)
        if unmapped:
            self.violations.append(f"korag policy: unmapped fields {sorted(unmapped)} in {doc_id}")
        for fname, value in source.items():
            kind = props.get(fname, {}).get("type")
            values = value if isinstance(value, list) else [value]
            if kind == "integer" and not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                self.violations.append(f"{doc_id}: field [{fname}] is not integer: {value!r}")
            if kind in ("keyword", "text") and not all(isinstance(v, str) for v in values):
                self.violations.append(f"{doc_id}: field [{fname}] is not a string: {value!r}")

    @staticmethod
    def rank_features_problem(value: Any) -> str | None:
        if not isinstance(value, dict):  # R-RF-1
            return "[rank_features] fields must be json objects, expected a START_OBJECT"
        for key, w in value.items():
            if not key or "." in key:  # R-RF-4 (korag policy)
                return f"korag policy: feature name {key!r}"
            if isinstance(w, dict | list):  # R-RF-2
                return "[rank_features] fields take hashes that map a feature to a strictly positive float"
            if w is not None and (not math.isfinite(float(w)) or float(w) < FLOAT_MIN_NORMAL):  # R-RF-3
                return f"featureValue must be a positive normal float, got: {w}"
        return None

    def refresh(self, m, q, body):
        self.index(m["index"])
        return {"_shards": {"total": 1, "successful": 1, "failed": 0}}

    def count(self, m, q, body):
        return {"count": len(self.index(m["index"])["docs"]), "_shards": {"total": 1, "successful": 1, "failed": 0}}

    def search(self, m, q, body):
        idx = self.index(m["index"])
        data = self.parse(body, "search")
        ns = data.get("query", {}).get("neural_sparse")
        if not isinstance(ns, dict):
            raise RejectError(400, "korag sends neural_sparse queries")
        if len(ns) != 1:  # R-QS-1
            raise RejectError(
                400, f"[neural_sparse] query doesn't support multiple fields, found {sorted(ns)}", "parsing_exception"
            )
        fname, clause = next(iter(ns.items()))
        query = self.query_vector(clause)
        if idx["mappings"]["properties"].get(fname, {}).get("type") != "rank_features":  # R-QS-5
            raise RejectError(
                400, "[neural_sparse] query only works on [rank_features] fields", "search_phase_execution_exception"
            )
        scored = []
        for doc_id, doc in idx["docs"].items():
            score = sum(w * doc.get(fname, {}).get(t, 0.0) for t, w in query.items())
            if score > 0:
                scored.append((score, doc_id, doc))
        scored.sort(key=lambda s: (-s[0], s[1]))
        excludes = set(data.get("_source", {}).get("excludes", []))
        hits = [{"_index": m["index"], "_id": d, "_score": s, "_source": {k: v for k, v in doc.items() if k not in excludes}}
                for s, d, doc in scored[: data.get("size", 10)]]  # fmt: skip
        return {"took": 1, "timed_out": False,
                "hits": {"total": {"value": len(scored), "relation": "eq"}, "max_score": scored[0][0] if scored else None, "hits": hits}}  # fmt: skip

    def query_vector(self, clause: Any) -> dict[str, float]:
        if not isinstance(clause, dict):
            raise RejectError(400, "[neural_sparse] expects an object per field", "parsing_exception")
        for key in clause:
            if key not in QUERY_KEYS or _version(self.version) < QUERY_KEYS[key]:  # R-QS-2
                raise RejectError(400, f"[neural_sparse] query does not support [{key}] field", "parsing_exception")
        if "query_text" not in clause and "query_tokens" not in clause:  # R-QS-3
            raise RejectError(
                400, "either query_text field or query_tokens field must be provided for [neural_sparse] query"
            )
        for key in ("query_text", "model_id", "analyzer"):  # R-QS-4
            if clause.get(key) == "":
                raise RejectError(400, f"{key} field can not be empty")
        if "model_id" in clause and "analyzer" in clause:
            raise RejectError(400, "Cannot use both [model_id] and [analyzer]")
        if "query_tokens" in clause:
            tokens = clause["query_tokens"]
        else:
            model = self.models.get(clause.get("model_id"))  # R-QS-7 (korag policy)
            if model is None or model.state != "DEPLOYED":
                raise RejectError(
                    400, f"korag policy: query_text needs a deployed model_id, got {clause.get('model_id')!r}"
                )
            tokens = _fake_vector(clause["query_text"])
            if model.idf is not None:
                tokens = {t: model.idf.get(t, 1.0) for t in tokens}
        self.check_weights(tokens)
        return tokens

    @staticmethod
    def check_weights(tokens: Any) -> None:
        if not isinstance(tokens, dict):
            raise RejectError(400, "[neural_sparse] query_tokens must be an object", "parsing_exception")
        for token, w in tokens.items():
            if not isinstance(w, int | float) or isinstance(w, bool):
                raise RejectError(
                    400, f"[neural_sparse] query_tokens values must be numbers, got {w!r}", "parsing_exception"
                )
            if not (math.isfinite(w) and 0 < w <= 64):  # R-QS-6
                raise RejectError(400, f"weight must be in (0, 64.0], got: {w}")
            if not token or "." in token:
                raise RejectError(400, f"korag policy: query token {token!r}")

    # -- what the tests read --

    def routes_called(self) -> list[str]:
        return [r.route for r in self.requests]

    def bodies(self, route: str) -> list[Any]:
        return [
            r.json() if route not in ("upload_chunk", "bulk") else r.body for r in self.requests if r.route == route
        ]


# --- fixtures ---------------------------------------------------------------------------------------

DOCS = [
    Document("seoul", "대한민국의 수도는 서울이다. 서울에는 한강이 흐른다. 인구는 약 940만 명이다.", "서울",
             {"pages": [3, 4]}),
    Document("jeju", "제주도에는 한라산이 있다. 한라산의 높이는 1,947미터이다. 성산일출봉은 동쪽에 있다.", "제주"),
    Document("busan", "부산은 항구 도시이다. 해운대 해수욕장이 유명하다.", "부산"),
]  # fmt: skip


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("collections") / "docs"
    coll = Collection.create(root, CollectionConfig(name="docs", chunk=ChunkConfig(max_tokens=8, overlap_tokens=0)))
    coll.add_texts(DOCS)
    return root


@pytest.fixture(scope="module")
def passage_ids(collection) -> list[str]:
    return Collection.open(collection).passages().ids


@pytest.fixture(scope="module")
def bi_model(tiny_encoder, tmp_path_factory) -> Path:
    from korag.models.sparse import build_sparse_encoder, save_sparse_encoder

    out = tmp_path_factory.mktemp("sparse") / "bi"
    save_sparse_encoder(build_sparse_encoder(str(tiny_encoder), mode="bi-encoder"), out)
    return out


@pytest.fixture(scope="module")
def doc_only_model(tiny_encoder, tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A doc-only model whose IDF goes up to 100, beyond what a neural_sparse query accepts."""
    from transformers import AutoTokenizer

    from korag.models.sparse import build_sparse_encoder, save_sparse_encoder, tokenizer_vocab_size

    vocab = tokenizer_vocab_size(AutoTokenizer.from_pretrained(str(tiny_encoder)))
    idf = np.random.default_rng(0).uniform(0.5, 5.0, vocab).astype(np.float32)
    idf[::7] = 100.0
    idf[1::11] = 0.0
    out = tmp_path_factory.mktemp("sparse") / "doc-only"
    save_sparse_encoder(build_sparse_encoder(str(tiny_encoder), mode="doc-only", idf=idf), out)
    return out, idf


@pytest.fixture(scope="module")
def bi_export(bi_model, tmp_path_factory) -> Path:
    """The bi-encoder exported once (the failure tests deploy it without tracing again)."""
    from korag.export.opensearch import export_opensearch

    return export_opensearch(bi_model, tmp_path_factory.mktemp("export") / "bi", name="korag-bi").output


def deploy(stub_url: str, model: Path, collection: Path, *extra: str, index: str = "korag-docs", env=None):
    return run_cli("deploy", "opensearch", str(model), "--url", stub_url, "--index", index,
                   "--collection", str(collection), "--poll-interval", "0.01", *extra, env=env)  # fmt: skip


def one_line_error(res) -> str:
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


# --- the whole deploy ----------------------------------------------------------------------------------


def test_deploy_registers_deploys_indexes_and_queries(bi_model, collection, passage_ids, monkeypatch):
    import korag.export.deploy as deploy_module

    # a small chunk size forces a multi-chunk upload of the (small) test model
    monkeypatch.setattr(deploy_module, "CHUNK_SIZE", 200_000)
    with Stub(chunk_size=200_000) as stub:
        res = deploy(stub.url, bi_model, collection, "--batch-size", "4", "--query", "서울의 한강", "--k", "3")
    assert res.returncode == 0, res.stderr + res.stdout
    assert stub.violations == []

    meta = stub.bodies("register_meta")
    assert (
        len(meta) == 1 and meta[0]["function_name"] == "SPARSE_ENCODING" and meta[0]["model_format"] == "TORCH_SCRIPT"
    )
    assert "model_config" not in meta[0] and "model_group_id" not in meta[0]
    chunks = [r for r in stub.requests if r.route == "upload_chunk"]
    total = meta[0]["total_chunks"]
    assert total >= 2 and [r.path.rsplit("/", 1)[1] for r in chunks] == [str(n) for n in range(total)]
    content = b"".join(r.body for r in chunks)
    assert hashlib.sha256(content).hexdigest() == meta[0]["model_content_hash_value"]
    assert len(content) == meta[0]["model_content_size_in_bytes"]
    assert all(r.headers["content-type"] == "application/json" for r in stub.requests if r.body)

    n_bulk = math.ceil(len(passage_ids) / 4)
    assert stub.routes_called() == [
        "info", "plugins", "get_index", "settings", "register_meta", *["upload_chunk"] * total,
        "get_model", "get_model", "deploy", "get_task", "get_task", "get_model",
        "put_pipeline", "put_index", *["bulk"] * n_bulk, "refresh", "count", "search",
    ]  # fmt: skip
    assert stub.bodies("settings")[0] == {"persistent": {
        "plugins.ml_commons.allow_registering_model_via_local_file": True,
        "plugins.ml_commons.only_run_on_ml_node": False}}  # fmt: skip

    (pipeline,) = stub.bodies("put_pipeline")
    model_id = "model-1"
    assert pipeline["processors"] == [{"sparse_encoding": {
        "model_id": model_id, "field_map": {"passage_text": "passage_embedding"},
        "prune_type": "max_ratio", "prune_ratio": 0.1}}]  # fmt: skip
    (index,) = stub.bodies("put_index")
    props = index["mappings"]["properties"]
    assert index["settings"] == {"index.default_pipeline": "korag-docs-ingest"}
    assert props["passage_embedding"] == {"type": "rank_features"} and props["passage_text"] == {"type": "text"}
    assert props["document"]["type"] == props["file"]["type"] == "keyword" and props["pages"]["type"] == "integer"

    docs = stub.indices["korag-docs"]["docs"]
    assert sorted(docs) == sorted(passage_ids)
    seoul = next(d for d in docs.values() if d["document"] == "seoul")
    assert seoul["pages"] == [3, 4] and seoul["file"] == "seoul" and seoul["title"] == "서울"
    assert isinstance(seoul["char_start"], int) and seoul["passage_embedding"]

    (search,) = stub.bodies("search")
    assert search["query"] == {
        "neural_sparse": {"passage_embedding": {"query_text": "서울의 한강", "model_id": model_id}}
    }
    assert search["size"] == 3 and search["_source"] == {"excludes": ["passage_embedding"]}
    for step in ("uploaded", "deployed", "ingest pipeline korag-docs-ingest", "created index korag-docs",
                 f"indexed {len(passage_ids)} of {len(passage_ids)} passages", "hits for"):  # fmt: skip
        assert step in res.stdout, res.stdout
    assert "seoul#" in res.stdout  # the top hit's id in the table


def test_doc_only_deploys_the_query_tokenizer_with_weights_in_range(doc_only_model, collection, passage_ids):
    model_dir, idf = doc_only_model
    with Stub() as stub:
        res = deploy(stub.url, model_dir, collection, "--query", "한라산 높이")
        assert res.returncode == 0, res.stderr + res.stdout
        assert stub.violations == []
        assert [b["function_name"] for b in stub.bodies("register_meta")] == ["SPARSE_ENCODING", "SPARSE_TOKENIZE"]
        # idf went up to 100: the export already scaled every weight by one factor into (0, 64]
        tokenizer = stub.models["model-2"]
        assert tokenizer.state == "DEPLOYED" and max(tokenizer.idf.values()) == pytest.approx(64.0)
        assert len(tokenizer.idf) == int((idf > 0).sum())
        (pipeline,) = stub.bodies("put_pipeline")
        assert pipeline["processors"][0]["sparse_encoding"]["model_id"] == "model-1"
        (search,) = stub.bodies("search")
        assert search["query"]["neural_sparse"]["passage_embedding"]["model_id"] == "model-2"  # the tokenizer
        assert "jeju#" in res.stdout

        # query tokens: checked before any request; then sent as given to the existing index
        before = len(stub.requests)
        bad = deploy(stub.url, model_dir, collection, "--query-tokens", '{"한라산": 65}')
        assert "weight 65 must be in (0, 64]" in one_line_error(bad) and len(stub.requests) == before
        res = deploy(stub.url, model_dir, collection, "--query-tokens", '{"한": 2.5, "라": 1}')
        assert res.returncode == 0, res.stderr + res.stdout
        assert stub.violations == [] and "put_index" not in stub.routes_called()[before:]
        assert "exists with this mapping and pipeline" in res.stdout
        assert stub.bodies("search")[-1]["query"]["neural_sparse"]["passage_embedding"] == {
            "query_tokens": {"한": 2.5, "라": 1.0}
        }
        assert sorted(stub.indices["korag-docs"]["docs"]) == sorted(passage_ids)


def test_an_older_cluster_gets_no_pruning_and_no_query_tokens(bi_export, collection):
    with Stub(version="2.13.0") as stub:
        res = deploy(stub.url, bi_export, collection, "--query", "부산 항구")
        assert res.returncode == 0, res.stderr + res.stdout
        assert stub.violations == []
        assert stub.bodies("put_pipeline")[0]["processors"][0]["sparse_encoding"].keys() == {"model_id", "field_map"}
        assert "no ingest pruning" in res.stderr
        bad = deploy(stub.url, bi_export, collection, "--query-tokens", '{"부": 1.0}')
        assert "query tokens need 2.14 or later" in one_line_error(bad)
    with Stub(version="2.10.0") as stub:
        assert "needs 2.11 or later" in one_line_error(deploy(stub.url, bi_export, collection))
        assert stub.routes_called() == ["info"]
    with Stub(plugins=("opensearch-ml",)) as stub:
        assert "lacks the plugin(s) opensearch-neural-search" in one_line_error(deploy(stub.url, bi_export, collection))


# --- failures: one line, exit code 2 ---------------------------------------------------------------------


def test_connection_refused(bi_export, collection):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    line = one_line_error(deploy(f"http://127.0.0.1:{port}", bi_export, collection))
    assert f"cannot reach OpenSearch at http://127.0.0.1:{port}: connection refused" in line


@pytest.mark.parametrize(
    ("stub_args", "cli_args", "env", "message"),
    [
        ({"auth": ("admin", "s3cret")}, [], {}, "refused the credentials (HTTP 401: Unauthorized)"),
        ({"auth": ("admin", "s3cret")}, ["--user", "admin"], {"OPENSEARCH_PASSWORD": "wrong"}, "HTTP 401"),
        (
            {"forbidden": r"_register_meta"},
            [],
            {},
            "registering model 'korag-bi': permission denied at http://127.0.0.1:",
        ),
        ({"api_key": "os_abc"}, ["--api-key-env", "KORAG_TEST_KEY"], {"KORAG_TEST_KEY": "os_wrong"}, "HTTP 401"),
    ],
)
def test_auth_errors(bi_export, collection, stub_args, cli_args, env, message):
    with Stub(**stub_args) as stub:
        line = one_line_error(deploy(stub.url, bi_export, collection, *cli_args, env=env))
    assert message in line
    assert ("HTTP 403: security_exception: no permissions" in line) == ("forbidden" in stub_args)
    assert stub.violations == []


def test_credentials_reach_the_cluster(bi_export, collection, monkeypatch):
    monkeypatch.delenv("OPENSEARCH_USER", raising=False)
    with Stub(auth=("admin", "s3cret")) as stub:
        res = deploy(stub.url, bi_export, collection, env={"OPENSEARCH_USER": "admin", "OPENSEARCH_PASSWORD": "s3cret"})
        assert res.returncode == 0, res.stderr
    with Stub(api_key="os_abc") as stub:
        res = deploy(
            stub.url, bi_export, collection, "--api-key-env", "KORAG_TEST_KEY", env={"KORAG_TEST_KEY": "os_abc"}
        )
        assert res.returncode == 0, res.stderr
        assert all(r.headers["authorization"] == "ApiKey os_abc" for r in stub.requests)


def test_a_failed_deploy_says_why(bi_export, collection):
    reason = "java.lang.OutOfMemoryError: Java heap space on node n1"
    with Stub(fail_deploy=reason) as stub:
        line = one_line_error(deploy(stub.url, bi_export, collection))
    assert "deploying model 'korag-bi' (model-1): the deploy task ended FAILED" in line and reason in line
    assert "put_pipeline" not in stub.routes_called() and stub.violations == []


def test_registration_refused_without_the_local_file_setting(bi_export, collection):
    with Stub() as stub:
        line = one_line_error(deploy(stub.url, bi_export, collection, "--no-settings"))
    assert "registering model 'korag-bi': OpenSearch at http://127.0.0.1" in line
    assert "HTTP 400: illegal_argument_exception: To upload custom model from local file" in line
    assert "settings" not in stub.routes_called()


def test_an_index_with_another_mapping_is_refused_before_any_upload(bi_export, collection):
    with Stub() as stub:
        stub.pipelines["korag-docs-ingest"] = {"processors": []}
        stub.indices["korag-docs"] = {
            "settings": {"default_pipeline": "korag-docs-ingest"},
            "mappings": {"properties": {"passage_text": {"type": "text"}, "passage_embedding": {"type": "float"}}},
            "docs": {},
        }
        line = one_line_error(deploy(stub.url, bi_export, collection))
        assert "index 'korag-docs' exists at http://127.0.0.1" in line and "passage_embedding is float" in line
        assert "register_meta" not in stub.routes_called()
        stub.indices["korag-docs"]["mappings"]["properties"]["passage_embedding"] = {"type": "rank_features"}
        line = one_line_error(deploy(stub.url, bi_export, collection, "--pipeline", "other"))
        assert "default pipeline 'korag-docs-ingest', not 'other'" in line


def test_bulk_reports_per_document_errors(bi_export, collection, passage_ids):
    bad = passage_ids[1]
    with Stub(bulk_fail={bad: "failed to parse field [pages] of type [integer]"}) as stub:
        line = one_line_error(deploy(stub.url, bi_export, collection, "--batch-size", "2", "--query", "서울"))
    assert f"1 of {len(passage_ids)} passages were not indexed: {bad!r}: HTTP 400: mapper_parsing_exception" in line
    assert "failed to parse field [pages]" in line
    assert "search" not in stub.routes_called() and stub.routes_called().count("bulk") == math.ceil(
        len(passage_ids) / 2
    )
    assert len(stub.indices["korag-docs"]["docs"]) == len(passage_ids) - 1  # the other batches still went in


def test_bad_input_fails_before_any_request(bi_export, collection):
    with Stub() as stub:
        assert "index name 'Korag-Docs' must be lowercase" in one_line_error(
            deploy(stub.url, bi_export, collection, index="Korag-Docs")
        )
        assert "must not start with" in one_line_error(deploy(stub.url, bi_export, collection, index="_docs"))
        assert "not valid JSON" in one_line_error(deploy(stub.url, bi_export, collection, "--query-tokens", "{"))
        assert "token must be a non-empty string without '.'" in one_line_error(
            deploy(stub.url, bi_export, collection, "--query-tokens", '{"a.b": 1}')
        )
        assert "must be in (0, 64]" in one_line_error(
            deploy(stub.url, bi_export, collection, "--query-tokens", '{"a": 0}')
        )
        assert "prune ratio for max_ratio must be in [0, 1)" in one_line_error(
            deploy(stub.url, bi_export, collection, "--prune-ratio", "1.5")
        )
        assert "give http(s)://host:port" in one_line_error(deploy("localhost:9200", bi_export, collection))
        assert stub.requests == []


# --- the stub rejects what OpenSearch rejects ---------------------------------------------------------------


def _client(url: str):
    from opensearchpy import OpenSearch

    return OpenSearch(hosts=[url], timeout=5, max_retries=0)


def _reason(call) -> str:
    from opensearchpy.exceptions import TransportError

    with pytest.raises(TransportError) as info:
        call()
    return str(info.value.info)


def test_the_stub_enforces_the_specification():
    from opensearchpy import helpers

    with Stub(chunk_size=4) as stub:
        client = _client(stub.url)
        ml = client.plugins.ml
        good = {"name": "m", "version": "1", "model_format": "TORCH_SCRIPT", "function_name": "SPARSE_ENCODING",
                "model_content_size_in_bytes": 6, "model_content_hash_value": hashlib.sha256(b"abcdef").hexdigest(),
                "total_chunks": 2}  # fmt: skip
        assert "allow_registering_model_via_local_file" in _reason(lambda: ml.register_model_meta(body=good))
        assert "not recognized" in _reason(
            lambda: client.cluster.put_settings(body={"persistent": {"plugins.ml_commons.nope": 1}})
        )
        client.cluster.put_settings(
            body={"persistent": {"plugins.ml_commons.allow_registering_model_via_local_file": "true"}}
        )
        for change, fragment in [
            ({"model_config": {"model_type": "bert"}}, "no model_config for sparse models"),
            ({"model_format": "torch_script"}, "Wrong model format"),
            ({"function_name": None, "model_config": None}, "model config is null"),
            ({"total_chunks": 1}, "total_chunks 1 != ceil(6 / 4)"),
            ({"model_content_hash_value": "ABC"}, "lowercase sha256"),
            ({"access_mode": "public"}, "do not send"),
        ]:
            body = {k: v for k, v in {**good, **change}.items() if v is not None}
            assert fragment in _reason(lambda body=body: ml.register_model_meta(body=body)), change
        model_id = ml.register_model_meta(body=good)["model_id"]
        assert "Chunk number exceeds total chunks" in _reason(
            lambda: ml.upload_chunk(model_id=model_id, chunk_number=2, body=b"ab")
        )
        assert "chunk 0 has 3 bytes, expected 4" in _reason(
            lambda: ml.upload_chunk(model_id=model_id, chunk_number=0, body=b"abc")
        )
        assert "deprecated" in _reason(
            lambda: client.transport.perform_request("POST", f"/_plugins/_ml/models/{model_id}/chunk/0", body=b"abcd")
        )
        assert "no eligible node found" in _reason(lambda: ml.deploy_model(model_id=model_id))
        client.cluster.put_settings(body={"persistent": {"plugins.ml_commons.only_run_on_ml_node": False}})
        assert "state REGISTERING" in _reason(lambda: ml.deploy_model(model_id=model_id))
        ml.upload_chunk(model_id=model_id, chunk_number=0, body=b"abcd")
        assert "uploaded twice" in _reason(lambda: ml.upload_chunk(model_id=model_id, chunk_number=0, body=b"abcd"))
        assert "Failed to find model" in _reason(lambda: ml.get_model(model_id="nope"))

        assert "is not a deployed SPARSE_ENCODING model" in _reason(lambda: client.ingest.put_pipeline(
            id="p", body={"processors": [{"sparse_encoding": {"model_id": model_id, "field_map": {"t": "v"}}}]}))  # fmt: skip
        for proc, fragment in [
            ({"model_id": "m", "field_map": {}}, "field_map has invalid key or value"),
            ({"model_id": "", "field_map": {"t": "v"}}, "model_id is null or empty"),
            ({"model_id": "m", "field_map": {"t": "v"}, "prune_ratio": 0.1}, "prune_ratio field is not supported"),
            (
                {"model_id": "m", "field_map": {"t": "v"}, "prune_type": "max_ratio", "prune_ratio": 1.0},
                "Illegal prune_ratio",
            ),
            (
                {"model_id": "m", "field_map": {"t": "v"}, "pruning": "x"},
                "doesn't support one or more provided configuration parameters",
            ),
        ]:
            assert fragment in _reason(
                lambda proc=proc: client.ingest.put_pipeline(id="p", body={"processors": [{"sparse_encoding": proc}]})
            )
        assert "No processor type exists" in _reason(
            lambda: client.ingest.put_pipeline(id="p", body={"processors": [{"splade": {}}]})
        )

        stub.pipelines["p"] = {"processors": [{"sparse_encoding": {"model_id": model_id, "field_map": {"t": "v"}}}]}
        for name, fragment in [
            ("Docs", "must be lowercase"),
            ("a b", "must not contain"),
            ("-x", "must not start with"),
            (".x", "hidden"),
        ]:
            assert fragment in _reason(lambda name=name: client.indices.create(index=name, body={}))
        assert "must be mapped rank_features" in _reason(lambda: client.indices.create(index="i", body={
            "settings": {"default_pipeline": "p"}, "mappings": {"properties": {"t": {"type": "text"}, "v": {"type": "float"}}}}))  # fmt: skip
        assert "unknown parameter ['positive_score_impact']" in _reason(lambda: client.indices.create(index="i", body={
            "settings": {"default_pipeline": "p"},
            "mappings": {"properties": {"t": {"type": "text"}, "v": {"type": "rank_features", "positive_score_impact": False}}}}))  # fmt: skip
        assert "default_pipeline 'q' does not exist" in _reason(lambda: client.indices.create(index="i", body={
            "settings": {"index": {"default_pipeline": "q"}}, "mappings": {"properties": {}}}))  # fmt: skip
        client.indices.create(index="i", body={"settings": {"index.default_pipeline": "p"},
                                               "mappings": {"properties": {"t": {"type": "text"}, "v": {"type": "rank_features"}}}})  # fmt: skip
        assert "already exists" in _reason(lambda: client.indices.create(index="i", body={}))

        assert "terminated by a newline" in _reason(lambda: client.transport.perform_request(
            "POST", "/_bulk", body=b'{"index":{"_index":"i","_id":"1"}}\n{"t":"x"}'))  # fmt: skip
        assert "index is missing" in _reason(
            lambda: client.transport.perform_request("POST", "/_bulk", body=b'{"index":{}}\n{"t":"x"}\n')
        )
        assert "no such index [nope]" in _reason(
            lambda: helpers.bulk(client, [{"_index": "nope", "_id": "1", "t": "x"}])
        )
        assert "Content-Type header [text/plain] is not supported" in _reason(lambda: client.transport.perform_request(
            "POST", "/i/_search", body=b"{}", headers={"content-type": "text/plain"}))  # fmt: skip
        ok, errors = helpers.bulk(client, [{"_index": "i", "_id": "a", "t": "가나"}, {"_index": "i", "_id": "b", "t": 3}],
                                  raise_on_error=False)  # fmt: skip
        assert ok == 0 and len(errors) == 2 and "not deployed" in json.dumps(errors)

        model = stub.models[model_id]
        model.state = "DEPLOYED"
        ok, errors = helpers.bulk(client, [{"_index": "i", "_id": "a", "t": "가나"}, {"_index": "i", "_id": "b", "t": 3}],
                                  raise_on_error=False)  # fmt: skip
        assert ok == 1 and "[t] is not a string" in json.dumps(errors)
        ok, errors = helpers.bulk(client, [{"_index": "i", "_id": "c", "t": "x", "v": {"a": 0}}, {"_index": "i", "_id": "d", "t": "x", "v": {"a.b": 1}},
                                           {"_index": "i", "_id": "e", "t": "x", "v": [1]}], raise_on_error=False, pipeline="_none")  # fmt: skip
        assert ok == 0 and [e["index"]["error"]["reason"].split(",")[0] for e in errors] == [
            "featureValue must be a positive normal float", "korag policy: feature name 'a.b'",
            "[rank_features] fields must be json objects"]  # fmt: skip
        for clause, fragment in [
            ({"query_tokens": {"가": 0}}, "weight must be in (0, 64.0]"),
            ({"query_tokens": {"가": 64.5}}, "weight must be in (0, 64.0]"),
            ({"query_tokens": {"가": "1"}}, "must be numbers"),
            ({"query_tokens": {"a.b": 1}}, "query token 'a.b'"),
            ({"query_text": "가"}, "needs a deployed model_id"),
            ({"query_text": "", "model_id": model_id}, "query_text field can not be empty"),
            ({"model_id": model_id}, "either query_text field or query_tokens"),
            ({"query_text": "가", "model_id": model_id, "k": 3}, "does not support [k] field"),
        ]:
            body = {"query": {"neural_sparse": {"v": clause}}}
            assert fragment in _reason(lambda body=body: client.search(index="i", body=body)), clause
        assert "only works on [rank_features]" in _reason(lambda: client.search(
            index="i", body={"query": {"neural_sparse": {"t": {"query_tokens": {"가": 1}}}}}))  # fmt: skip
        assert "multiple fields" in _reason(lambda: client.search(index="i", body={"query": {"neural_sparse": {
            "v": {"query_tokens": {"가": 1}}, "w": {"query_tokens": {"가": 1}}}}}))  # fmt: skip
        hits = client.search(index="i", body={"query": {"neural_sparse": {"v": {"query_tokens": {"가": 64}}}}})
        assert [h["_id"] for h in hits["hits"]["hits"]] == ["a"] and hits["hits"]["hits"][0]["_score"] == 64
    assert len(stub.violations) > 30  # every rejection above was recorded


# --- library pieces -------------------------------------------------------------------------------------------


def test_query_tokens_index_names_and_error_reasons():
    from korag.export.deploy import check_index_name, check_query_tokens, error_reason, redact_url

    assert check_query_tokens({"▁서울": 64, "의": 0.5}) == {"▁서울": 64.0, "의": 0.5}
    for tokens, fragment in [({"a": 64.01}, "(0, 64]"), ({"a": -1}, "(0, 64]"), ({"a": float("nan")}, "(0, 64]"),
                             ({"a": True}, "not a number"), ({"": 1}, "non-empty"), ({}, "empty")]:  # fmt: skip
        with pytest.raises(ConfigError, match=re.escape(fragment)):
            check_query_tokens(tokens)
    assert check_index_name("korag-docs_2") == "korag-docs_2"
    for name in ("", "A", "a*b", "a:b", "+a", ".a", "x" * 256):
        with pytest.raises(ConfigError):
            check_index_name(name)
    assert (
        error_reason(error_body(400, "illegal_argument_exception", "bad\n thing"))
        == "illegal_argument_exception: bad thing"
    )
    ml = {
        "error": {
            "reason": "Invalid Request",
            "details": "Chunk size exceeds 10MB",
            "type": "IllegalArgumentException",
        },
        "status": 400,
    }
    assert error_reason(ml) == "IllegalArgumentException: Invalid Request: Chunk size exceeds 10MB"
    assert error_reason("Unauthorized") == "Unauthorized"
    assert redact_url("https://u:p@host:9200/") == "https://host:9200"
