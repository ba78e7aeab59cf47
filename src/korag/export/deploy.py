"""Deploy a korag learned-sparse model and a collection's passages to OpenSearch (ML Commons + neural-search).

`OpenSearchDeployer` takes what ``korag export opensearch`` writes (or writes it itself from a
model directory) and performs the hand-off a user would otherwise do by hand with curl:

1. ``GET /`` and ``GET /_cat/plugins``: the cluster is OpenSearch ≥2.11 (the first release with
   ``SPARSE_ENCODING``/``SPARSE_TOKENIZE`` models, the ``sparse_encoding`` processor and the
   ``neural_sparse`` query) with the ``opensearch-ml`` and ``opensearch-neural-search`` plugins.
   Version gates follow from it: ingest pruning needs 2.19 (older clusters reject unknown
   processor keys, so the deployer leaves pruning out there and says so), ``query_tokens`` 2.14.
2. ``GET /{index}`` *before* anything is uploaded: an index that exists with another mapping or
   another default pipeline is an error now, not after a model of hundreds of MB was sent.
3. ``PUT /_cluster/settings``: ``allow_registering_model_via_local_file`` (default false; both
   upload endpoints refuse without it) and ``only_run_on_ml_node=false`` (otherwise a cluster
   without a node of the ``ml`` role answers the deploy with "no eligible node found").
   Skippable for clusters whose administrators set these themselves.
4. Model registration by chunked upload, the route for a local file:
   ``POST /_plugins/_ml/models/_register_meta`` returns the ``model_id`` directly (no task), then
   ``POST /_plugins/_ml/models/{id}/upload_chunk/{n}`` with the raw zip bytes, ``n`` 0-based,
   every chunk 10,000,000 bytes (ML Commons' limit is 10 MB *decimal*) but the last; then
   ``GET /_plugins/_ml/models/{id}`` until ``REGISTERED`` (the state is written asynchronously
   after the last chunk). The URL route (``_register``) would need the cluster to download
   from a trusted URL, which a local export does not have. No model group is registered: ML
   Commons reuses the group named like the model or creates it, so a redeploy adds a version
   instead of failing on a duplicate group name.
   The register body omits ``model_config``, although the export's config file carries one:
   it is optional for sparse models, ML Commons ≥3.1 parses it as ``BaseModelConfig`` and the
   sparse model casts it to ``TextEmbeddingModelConfig`` (a failed deploy, inferred from the
   source), and opensearch-py-ml never sends one for sparse models. ``total_chunks``, size and
   sha256 are computed from the zip that is sent, not copied from the config.
5. ``POST /_plugins/_ml/models/{id}/_deploy``, ``GET /_plugins/_ml/tasks/{task}`` until the task
   is terminal, and ``GET /_plugins/_ml/models/{id}`` must then say ``DEPLOYED``; a ``FAILED``
   task's ``error`` is the message (this is where a corrupt upload, "model content changed",
   surfaces). Doc-only models also deploy the ``SPARSE_TOKENIZE`` query model (tokenizer +
   ``idf.json``).
6. ``PUT /_ingest/pipeline/{name}`` with one ``sparse_encoding`` processor mapping the passage
   text field to the sparse field, then ``PUT /{index}`` with ``rank_features`` for the sparse
   field (the only field type a ``neural_sparse`` query accepts before 3.3), ``text`` for the
   passage, keywords for document and file, integers for pages and offsets, and
   ``index.default_pipeline`` naming the pipeline (created first, so no document is ever indexed
   without it).
7. ``POST /_bulk`` in batches (``opensearchpy.helpers.bulk``; per-item errors are collected, not
   raised mid-way: HTTP 200 with ``errors: true`` is how a failed document is reported), then
   ``POST /{index}/_refresh`` and ``/_count``.
8. ``POST /{index}/_search`` with ``neural_sparse``: always ``model_id`` (the encoder, or for
   doc-only models the tokenizer model) or ``query_tokens`` — a ``query_text`` alone silently
   falls back to the ``bert-uncased`` analyzer on 3.1+. ``query_tokens`` weights must lie in
   (0, 64]: each token becomes Lucene's ``FeatureField.newLinearQuery``, which rejects anything
   else. The same limit applies to the weights a ``SPARSE_TOKENIZE`` model takes from
   ``idf.json``, so an ``idf.json`` above 64 is rescaled (all weights by one factor, which keeps
   every ranking) into a new tokenizer zip before upload. A bi-encoder's query weights come from
   the traced encoder at query time; should one exceed 64, OpenSearch's refusal is the error.

Limits: the sparse field encodes the passage text only (the title is stored, not encoded).
Deploying again into an existing index (same mapping and pipeline) registers new model
versions, points the pipeline at them and replaces passages with the same ids; passages removed
from the collection since stay in the index. The deploy waits at most ``wait`` seconds for each
model; it neither undeploys nor deletes models of earlier deploys.

Every failure a user can act on is one `ConfigError`/`ModelError`/`DataError` line naming the
step, the URL and OpenSearch's own reason (connection refused, 401/403, a rejected request, a
failed deploy, an index with another mapping, documents that did not index).

**Not verified against a live cluster**: no OpenSearch server can run where this was written.
The requests follow a specification written from the ML Commons, neural-search, OpenSearch and
opensearch-py sources and the OpenSearch documentation, and are tested against a validating
stub server that enforces those rules; opensearch-py's own wire behaviour was observed.
"""

from __future__ import annotations

import json
import logging
import math
import re
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from korag import atomic
from korag.data.schema import Corpus
from korag.errors import ConfigError, DataError, KoragError, ModelError
from korag.retrieval.pruning import check_prune
from korag.util.hashing import file_sha256
from korag.util.log import without_message

log = logging.getLogger(__name__)

CHUNK_SIZE = 10_000_000  # ML Commons' ModelHelper.CHUNK_SIZE: 10 MB decimal, not MiB
MAX_QUERY_WEIGHT = 64.0  # Lucene FeatureField.MAX_WEIGHT (Long.SIZE): weights must lie in (0, 64]
MIN_VERSION = (2, 11)  # sparse models, sparse_encoding processor, neural_sparse query
PRUNE_VERSION = (2, 19)
QUERY_TOKENS_VERSION = (2, 14)
REQUIRED_PLUGINS = ("opensearch-ml", "opensearch-neural-search")
ENCODER_CONFIG = "ml-commons_model_config.json"
TOKENIZER_CONFIG = "ml-commons_tokenizer_config.json"
TEXT_FIELD = "passage_text"
SPARSE_FIELD = "passage_embedding"
TERMINAL_TASK_STATES = ("COMPLETED", "COMPLETED_WITH_ERROR", "FAILED", "CANCELLED")
_BAD_INDEX_CHARS = set('\\/*?"<>| ,#:')

Progress = Callable[[str], None]


@dataclass
class ModelZip:
    """One zip to register: the export's register config and the file."""

    config: dict[str, Any]
    path: Path

    @property
    def name(self) -> str:
        """The model's name in ML Commons."""
        return str(self.config["name"])

    @property
    def function_name(self) -> str:
        """``SPARSE_ENCODING`` or ``SPARSE_TOKENIZE``."""
        return str(self.config["function_name"])


@dataclass
class ExportedModels:
    """What an export holds: the document encoder and, for doc-only models, the query tokenizer."""

    mode: str
    encoder: ModelZip
    tokenizer: ModelZip | None = None


@dataclass
class DeployedModel:
    """A model registered and deployed in ML Commons."""

    name: str
    function_name: str
    model_id: str
    chunks: int
    size: int


@dataclass
class DeployReport:
    """What `OpenSearchDeployer.deploy` did."""

    url: str
    version: str
    encoder: DeployedModel
    query_model: DeployedModel | None
    pipeline: str
    index: str
    index_created: bool
    passages: int
    index_count: int | None = None
    hits: list[dict[str, Any]] = field(default_factory=list)


# --- request bodies and local checks --------------------------------------------------------


def check_index_name(name: str) -> str:
    """OpenSearch's index name rules (``MetadataCreateIndexService.validateIndexName``), checked
    before any request; a leading '.' (hidden/system indexes) is refused too."""
    problem = None
    if not name:
        problem = "is empty"
    elif name != name.lower():
        problem = "must be lowercase"
    elif set(name) & _BAD_INDEX_CHARS:
        problem = f"must not contain any of {''.join(sorted(_BAD_INDEX_CHARS))!r}"
    elif name.startswith(("_", "-", "+", ".")):
        problem = "must not start with '_', '-', '+' or '.'"
    elif len(name.encode("utf-8")) > 255:
        problem = "is longer than 255 bytes"
    if problem:
        raise ConfigError(f"index name {name!r} {problem}")
    return name


def check_query_tokens(tokens: Mapping[str, Any]) -> dict[str, float]:
    """``query_tokens`` as OpenSearch accepts them: non-empty token strings without '.' (rank
    feature names; neural-search un-flattens dotted keys), weights finite and in (0, 64]."""
    if not tokens:
        raise ConfigError("query tokens are empty")
    out: dict[str, float] = {}
    for token, weight in tokens.items():
        if not isinstance(token, str) or not token or "." in token:
            raise ConfigError(f"query token {token!r}: a token must be a non-empty string without '.'")
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise ConfigError(f"query token {token!r}: weight {weight!r} is not a number")
        if not (math.isfinite(weight) and 0 < weight <= MAX_QUERY_WEIGHT):
            raise ConfigError(f"query token {token!r}: weight {weight} must be in (0, {MAX_QUERY_WEIGHT:g}]")
        out[token] = float(weight)
    return out


def register_body(model: ModelZip, chunk_size: int = CHUNK_SIZE) -> dict[str, Any]:
    """The ``_register_meta`` body: the export's config without ``model_config`` (see the module
    docstring), size, sha256 and ``total_chunks`` from the zip itself."""
    size = model.path.stat().st_size
    body = {k: v for k, v in model.config.items() if k not in ("model_config", "model_group_id")}
    body.update(
        model_content_size_in_bytes=size,
        model_content_hash_value=file_sha256(model.path),
        total_chunks=max(1, math.ceil(size / chunk_size)),
    )
    return body


def iter_chunks(path: Path, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """The zip's bytes in slices of `chunk_size` (the last one shorter)."""
    with path.open("rb") as fh:
        while block := fh.read(chunk_size):
            yield block


def pipeline_body(
    model_id: str,
    *,
    description: str,
    text_field: str = TEXT_FIELD,
    sparse_field: str = SPARSE_FIELD,
    prune_type: str = "none",
    prune_ratio: float | None = None,
) -> dict[str, Any]:
    """An ingest pipeline with one ``sparse_encoding`` processor (text field → sparse field)."""
    processor: dict[str, Any] = {"model_id": model_id, "field_map": {text_field: sparse_field}}
    if prune_type != "none":
        processor.update(prune_type=prune_type, prune_ratio=prune_ratio)
    return {"description": description, "processors": [{"sparse_encoding": processor}]}


def index_properties(text_field: str = TEXT_FIELD, sparse_field: str = SPARSE_FIELD) -> dict[str, dict[str, str]]:
    """The index mapping's fields: the sparse vector, the passage and what locates it."""
    return {
        text_field: {"type": "text"},
        sparse_field: {"type": "rank_features"},
        "title": {"type": "text"},
        "document": {"type": "keyword"},
        "file": {"type": "keyword"},
        "pages": {"type": "integer"},
        "char_start": {"type": "integer"},
        "char_end": {"type": "integer"},
    }


def index_body(pipeline: str, text_field: str = TEXT_FIELD, sparse_field: str = SPARSE_FIELD) -> dict[str, Any]:
    """``PUT /{index}``: the mapping, and the pipeline every indexed document goes through."""
    return {
        "settings": {"index.default_pipeline": pipeline},
        "mappings": {"properties": index_properties(text_field, sparse_field)},
    }


def passage_source(corpus: Corpus, i: int, text_field: str = TEXT_FIELD) -> dict[str, Any]:
    """The indexed document of passage `i`: its text, title and the metadata a collection keeps."""
    source: dict[str, Any] = {text_field: corpus.texts[i]}
    if corpus.titles[i]:
        source["title"] = corpus.titles[i]
    meta = corpus.metas[i] if corpus.metas is not None else {}
    for key in ("document", "file", "char_start", "char_end"):
        if meta.get(key) is not None:
            source[key] = meta[key]
    if meta.get("pages"):
        source["pages"] = [int(p) for p in meta["pages"]]
    return source


def neural_sparse_query(
    *,
    text: str | None = None,
    model_id: str | None = None,
    tokens: Mapping[str, float] | None = None,
    size: int = 5,
    sparse_field: str = SPARSE_FIELD,
) -> dict[str, Any]:
    """A ``neural_sparse`` search body: ``query_text`` with ``model_id``, or ``query_tokens``."""
    if tokens is not None:
        clause: dict[str, Any] = {"query_tokens": check_query_tokens(tokens)}
    elif text and text.strip() and model_id:
        clause = {"query_text": text, "model_id": model_id}
    else:
        raise ConfigError("a neural_sparse query needs a non-empty text and a model id, or query tokens")
    return {"size": size, "_source": {"excludes": [sparse_field]}, "query": {"neural_sparse": {sparse_field: clause}}}


def hits_of(response: Mapping[str, Any], text_field: str = TEXT_FIELD) -> list[dict[str, Any]]:
    """A search response's hits as plain dicts (id, score, document, file, pages, title, text)."""
    out = []
    for hit in response.get("hits", {}).get("hits", []):
        src = hit.get("_source") or {}
        out.append(
            {
                "id": hit.get("_id"),
                "score": hit.get("_score"),
                "document": src.get("document"),
                "file": src.get("file"),
                "pages": src.get("pages") or [],
                "title": src.get("title", ""),
                "text": src.get(text_field, ""),
            }
        )
    return out


# --- the export -------------------------------------------------------------------------------


def is_export_dir(path: str | Path) -> bool:
    """Whether `path` holds a ``korag export opensearch`` output (rather than a model)."""
    p = Path(path)
    return (p / "export.json").is_file() and (p / ENCODER_CONFIG).is_file()


def _model_zip(directory: Path, config_file: str, zip_name: Callable[[dict], str]) -> ModelZip:
    config = json.loads((directory / config_file).read_text(encoding="utf-8"))
    path = directory / zip_name(config)
    if not path.is_file():
        raise ModelError(f"{directory}: {path.name} is missing (re-run korag export opensearch)")
    if config.get("model_content_hash_value") != file_sha256(path):
        raise ModelError(f"{path}: does not match the sha256 in {config_file} (re-run korag export opensearch)")
    return ModelZip(config, path)


def read_export(directory: str | Path) -> ExportedModels:
    """The zips and register configs of an export directory (file names as the exporter writes them)."""
    d = Path(directory)
    if not is_export_dir(d):
        raise ModelError(f"{d}: not a korag export opensearch directory (no export.json / {ENCODER_CONFIG})")
    info = json.loads((d / "export.json").read_text(encoding="utf-8"))
    encoder = _model_zip(d, ENCODER_CONFIG, lambda c: f"{c['name']}-{c['version']}-torch_script.zip")
    tokenizer = None
    if (d / TOKENIZER_CONFIG).is_file():
        tokenizer = _model_zip(d, TOKENIZER_CONFIG, lambda c: f"{c['name']}-{c['version']}.zip")
    if info.get("mode") == "doc-only" and tokenizer is None:
        raise ModelError(f"{d}: a doc-only export without {TOKENIZER_CONFIG}")
    return ExportedModels(str(info.get("mode", "")), encoder, tokenizer)


def fit_query_weights(model: ModelZip, workdir: Path) -> ModelZip:
    """The tokenizer zip with ``idf.json`` weights in (0, 64], as a ``neural_sparse`` query needs.

    Weights above 64 are all scaled by one factor (64 / the largest), which multiplies every
    query's scores by the same number and so keeps every ranking; weights ≤ 0 or not finite
    (which the exporter does not write) are dropped. An ``idf.json`` already in range is kept
    as it is (same zip, same hash)."""
    with zipfile.ZipFile(model.path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    if "idf.json" not in members:
        raise ModelError(f"{model.path}: no idf.json in the query tokenizer zip")
    idf = json.loads(members["idf.json"])
    top = max((float(w) for w in idf.values() if math.isfinite(float(w))), default=0.0)
    clean = {t: float(w) for t, w in idf.items() if math.isfinite(float(w)) and float(w) > 0}
    if top <= MAX_QUERY_WEIGHT and len(clean) == len(idf):
        return model
    scale = MAX_QUERY_WEIGHT / top if top > MAX_QUERY_WEIGHT else 1.0
    log.warning(
        "idf.json weights go up to %.4g; OpenSearch accepts query weights in (0, %g]: scaling all by %.6g",
        top,
        MAX_QUERY_WEIGHT,
        scale,
    )
    members["idf.json"] = json.dumps(
        {t: min(w * scale, MAX_QUERY_WEIGHT) for t, w in clean.items()}, ensure_ascii=False
    ).encode("utf-8")
    path = workdir / model.path.name
    with atomic.atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    config = {**model.config, "model_content_size_in_bytes": path.stat().st_size}
    config["model_content_hash_value"] = file_sha256(path)
    return ModelZip(config, path)


def prepare_export(model_dir: str | Path, workdir: str | Path, *, name: str | None = None) -> ExportedModels:
    """The zips to register: `model_dir` itself when it is an export directory, else a fresh
    ``export_opensearch`` of the model into `workdir`; query weights fitted to (0, 64]."""
    work = Path(workdir)
    if is_export_dir(model_dir):
        exported = read_export(model_dir)
    else:
        from korag.export.opensearch import export_opensearch

        exported = read_export(export_opensearch(model_dir, work / "export", name=name).output)
    if exported.tokenizer is not None:
        exported.tokenizer = fit_query_weights(exported.tokenizer, work)
    return exported


# --- errors -------------------------------------------------------------------------------------


def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_reason(info: Any) -> str:
    """OpenSearch's reason in an error body: the root cause's, ML Commons' ``reason: details``,
    or the raw text."""
    if not isinstance(info, Mapping):
        return _one_line(str(info)) if info else ""
    error = info.get("error", info)
    if not isinstance(error, Mapping):
        return _one_line(str(error))
    causes = error.get("root_cause") or []
    reason = (causes[0].get("reason") if causes and isinstance(causes[0], Mapping) else None) or error.get("reason")
    details = error.get("details")
    parts = [str(p) for p in (error.get("type"), reason, details) if p]
    return _one_line(": ".join(parts) if parts else json.dumps(info, ensure_ascii=False))


def _exc_reason(exc: Any) -> str:
    """The reason of an opensearch-py `TransportError`: from the JSON body, else the raw body text."""
    reason = error_reason(exc.info)
    if reason:
        return reason
    raw = exc.error
    return _one_line(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw or ""))


def _connection_reason(exc: Exception) -> str:
    text = str(getattr(exc, "info", "") or exc)
    for needle, reason in (
        ("Connection refused", "connection refused"),
        ("Name or service not known", "unknown host"),
        ("nodename nor servname", "unknown host"),
        ("CERTIFICATE_VERIFY_FAILED", "the server's TLS certificate did not verify"),
        ("timed out", "no answer in time"),
    ):
        if needle in text:
            return reason
    return _one_line(text, 200)


def redact_url(url: str) -> str:
    """`url` without user and password (what error messages show)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url.rstrip("/")
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)).rstrip("/")


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text.split("-")[0])[:3])


# --- the deployer ---------------------------------------------------------------------------------


class OpenSearchDeployer:
    """Registers and deploys korag sparse models in ML Commons, creates the ingest pipeline and
    index, bulk-loads passages and queries them, on one OpenSearch cluster (opensearch-py).

    `timeout` is per HTTP request; `wait` bounds each wait for a model to register or deploy;
    `progress` receives one line per step (the library itself only logs)."""

    def __init__(
        self,
        url: str,
        *,
        user: str | None = None,
        password: str | None = None,
        api_key: str | None = None,
        verify_certs: bool = True,
        timeout: float = 60.0,
        wait: float = 600.0,
        poll_interval: float = 1.0,
        chunk_size: int | None = None,
        progress: Progress | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"OpenSearch URL {redact_url(url)!r}: give http(s)://host:port")
        if (user is None) != (password is None):
            raise ConfigError("OpenSearch basic authentication needs both a user and a password")
        if user is not None and api_key is not None:
            raise ConfigError("give either a user and password or an API key, not both")
        self.url = redact_url(url)
        self.timeout = timeout
        self.wait = wait
        self.poll_interval = poll_interval
        self.chunk_size = chunk_size or CHUNK_SIZE  # read at call time, so tests can lower it
        if not 0 < self.chunk_size <= CHUNK_SIZE:
            raise ConfigError(f"chunk size must be in (0, {CHUNK_SIZE}] bytes (ML Commons' limit)")
        self.progress = progress
        self.version: tuple[int, ...] = ()
        self.version_text = ""
        self.client = self._make_client(url, user, password, api_key, verify_certs, timeout)

    @staticmethod
    def _make_client(url, user, password, api_key, verify_certs, timeout):
        from opensearchpy import OpenSearch

        kwargs: dict[str, Any] = {"hosts": [url], "timeout": timeout, "http_compress": False}
        if urlsplit(url).scheme == "https":
            kwargs.update(use_ssl=True, verify_certs=verify_certs, ssl_show_warn=verify_certs)
        if user is not None:
            kwargs["http_auth"] = (user, password)
        if api_key is not None:
            # OpenSearch Security (≥3.7) API keys: "Authorization: ApiKey <token>"
            kwargs["headers"] = {"Authorization": f"ApiKey {api_key}"}
        return OpenSearch(**kwargs)

    # -- plumbing --

    def _say(self, message: str) -> None:
        log.debug(message)
        if self.progress is not None:
            self.progress(message)

    def _call(
        self,
        what: str,
        fn: Callable[..., Any],
        *,
        error: type[KoragError] = ConfigError,
        missing_ok: bool = False,
        **kwargs,
    ) -> Any:
        """`fn(**kwargs)` with opensearch-py's exceptions turned into one-line korag errors
        (with `missing_ok`, a 404 returns None)."""
        from opensearchpy.exceptions import (
            AuthenticationException,
            AuthorizationException,
            ConnectionError,
            NotFoundError,
            OpenSearchException,
            TransportError,
        )

        # opensearch-py logs each failed request (with a traceback for connection errors) as a
        # warning; the error raised below says the same in one line
        with without_message("[status:", "opensearch"):
            try:
                return fn(**kwargs)
            except ConnectionError as exc:
                raise ConfigError(f"{what}: cannot reach OpenSearch at {self.url}: {_connection_reason(exc)}") from None
            except AuthenticationException as exc:
                raise ConfigError(
                    f"{what}: OpenSearch at {self.url} refused the credentials (HTTP 401: {_exc_reason(exc)}); "
                    "check the user and password or the API key"
                ) from None
            except AuthorizationException as exc:
                raise ConfigError(f"{what}: permission denied at {self.url} (HTTP 403: {_exc_reason(exc)})") from None
            except NotFoundError as exc:
                if missing_ok:
                    return None
                raise error(f"{what}: OpenSearch at {self.url} answered HTTP 404: {_exc_reason(exc)}") from None
            except TransportError as exc:
                raise error(
                    f"{what}: OpenSearch at {self.url} answered HTTP {exc.status_code}: {_exc_reason(exc)}"
                ) from None
            except OpenSearchException as exc:
                raise ConfigError(f"{what}: unexpected answer from {self.url}: {_one_line(str(exc))}") from None

    def _sleep(self, deadline: float, what: str) -> None:
        if time.monotonic() > deadline:
            raise ModelError(f"{what}: still not done after {self.wait:g} s at {self.url}")
        time.sleep(self.poll_interval)

    def at_least(self, version: tuple[int, int]) -> bool:
        """Whether the cluster's version (read by `check_cluster`) is `version` or later."""
        return self.version >= version

    # -- steps --

    def check_cluster(self) -> str:
        """``GET /`` and ``GET /_cat/plugins``: OpenSearch ≥2.11 with ML Commons and neural-search."""
        info = self._call("connecting", self.client.info)
        version = info.get("version", {}) if isinstance(info, Mapping) else {}
        if version.get("distribution") != "opensearch":
            raise ConfigError(f"{self.url} is not OpenSearch (version: {_one_line(json.dumps(version), 120)})")
        self.version_text = str(version.get("number", ""))
        self.version = _version_tuple(self.version_text)
        if not self.at_least(MIN_VERSION):
            raise ConfigError(f"OpenSearch {self.version_text} at {self.url}: neural sparse search needs 2.11 or later")
        plugins = self._call("listing plugins", self.client.cat.plugins, format="json")
        present = {p.get("component") for p in plugins or [] if isinstance(p, Mapping)}
        lacking = [p for p in REQUIRED_PLUGINS if p not in present]
        if lacking:
            raise ConfigError(f"OpenSearch at {self.url} lacks the plugin(s) {', '.join(lacking)}")
        self._say(f"OpenSearch {self.version_text} at {self.url} with ML Commons and neural-search")
        return self.version_text

    def configure_ml(self) -> None:
        """``PUT /_cluster/settings``: allow registering a model from a local file, and deploying
        on any node (not only nodes of the ``ml`` role)."""
        body = {
            "persistent": {
                "plugins.ml_commons.allow_registering_model_via_local_file": True,
                "plugins.ml_commons.only_run_on_ml_node": False,
            }
        }
        self._call("setting ML Commons cluster settings", self.client.cluster.put_settings, body=body)
        self._say("cluster settings: allow_registering_model_via_local_file=true, only_run_on_ml_node=false")

    def register(self, model: ModelZip) -> tuple[str, int]:
        """``_register_meta`` + every ``upload_chunk`` + wait for ``REGISTERED``: (model id, chunks)."""
        ml = self.client.plugins.ml
        body = register_body(model, self.chunk_size)
        what = f"registering model {model.name!r}"
        reply = self._call(what, ml.register_model_meta, error=ModelError, body=body)
        model_id = reply.get("model_id") if isinstance(reply, Mapping) else None
        if not model_id:
            raise ModelError(f"{what}: OpenSearch at {self.url} returned no model_id ({_one_line(str(reply), 200)})")
        total = body["total_chunks"]
        for n, chunk in enumerate(iter_chunks(model.path, self.chunk_size)):
            self._call(
                f"{what}: chunk {n + 1}/{total}",
                ml.upload_chunk,
                error=ModelError,
                model_id=model_id,
                chunk_number=n,
                body=chunk,
            )
        self._say(
            f"uploaded {model.name} ({model.function_name}, {body['model_content_size_in_bytes']:,} bytes "
            f"in {total} chunk{'s' * (total > 1)}): model {model_id}"
        )
        deadline = time.monotonic() + self.wait
        while (state := self._model_state(model_id, what)) != "REGISTERED":
            log.debug("model %s is %s", model_id, state)
            self._sleep(deadline, f"{what} ({model_id}, {state})")
        return model_id, total

    def _model_state(self, model_id: str, what: str) -> str:
        reply = self._call(what, self.client.plugins.ml.get_model, error=ModelError, model_id=model_id)
        return str(reply.get("model_state", "")) if isinstance(reply, Mapping) else ""

    def deploy_model(self, model_id: str, name: str) -> None:
        """``_deploy``, then the task until it ends; the model must then be ``DEPLOYED``."""
        ml = self.client.plugins.ml
        what = f"deploying model {name!r} ({model_id})"
        reply = self._call(what, ml.deploy_model, error=ModelError, model_id=model_id)
        task_id = reply.get("task_id") if isinstance(reply, Mapping) else None
        if not task_id:
            raise ModelError(f"{what}: OpenSearch at {self.url} returned no task_id ({_one_line(str(reply), 200)})")
        deadline = time.monotonic() + self.wait
        while True:
            task = self._call(what, ml.get_task, error=ModelError, task_id=task_id)
            state = str(task.get("state", "")) if isinstance(task, Mapping) else ""
            if state in TERMINAL_TASK_STATES:
                break
            self._sleep(deadline, f"{what}: task {task_id} {state}")
        if state != "COMPLETED":
            reason = task.get("error") or "no error given"
            raise ModelError(f"{what}: the deploy task ended {state} at {self.url}: {_one_line(str(reason))}")
        final = self._model_state(model_id, what)
        if final != "DEPLOYED":
            raise ModelError(f"{what}: the task completed but the model is {final or 'in no state'} at {self.url}")
        self._say(f"deployed {name} ({model_id})")

    def register_and_deploy(self, model: ModelZip) -> DeployedModel:
        """Register `model` by chunked upload and deploy it."""
        model_id, chunks = self.register(model)
        self.deploy_model(model_id, model.name)
        return DeployedModel(model.name, model.function_name, model_id, chunks, model.path.stat().st_size)

    def existing_index(
        self, index: str, pipeline: str, text_field: str = TEXT_FIELD, sparse_field: str = SPARSE_FIELD
    ) -> bool:
        """Whether `index` exists; if it does, its mapping and default pipeline must be ours."""
        reply = self._call(f"reading index {index!r}", self.client.indices.get, missing_ok=True, index=index)
        if reply is None:
            return False
        body = reply.get(index) or next(iter(reply.values()), {})
        have = body.get("mappings", {}).get("properties", {})
        want = index_properties(text_field, sparse_field)
        wrong = [
            f"{f} is {have[f].get('type', 'an object')}, not {spec['type']}"
            for f, spec in want.items()
            if f in have and have[f].get("type") != spec["type"]
        ]
        missing = [f for f in (text_field, sparse_field) if f not in have]
        if wrong or missing:
            detail = "; ".join(wrong + [f"{f} is not mapped" for f in missing])
            raise ConfigError(
                f"index {index!r} exists at {self.url} with another mapping ({detail}); "
                "choose another index name or delete it"
            )
        settings = body.get("settings", {}).get("index", {})
        current = settings.get("default_pipeline") if isinstance(settings, Mapping) else None
        if current != pipeline:
            raise ConfigError(
                f"index {index!r} exists at {self.url} with default pipeline {current!r}, "
                f"not {pipeline!r}; pass that pipeline name or choose another index"
            )
        return True

    def put_pipeline(self, name: str, body: Mapping[str, Any]) -> None:
        """``PUT /_ingest/pipeline/{name}``."""
        self._call(f"creating ingest pipeline {name!r}", self.client.ingest.put_pipeline, id=name, body=dict(body))
        self._say(f"ingest pipeline {name}")

    def create_index(self, index: str, body: Mapping[str, Any]) -> None:
        """``PUT /{index}``."""
        self._call(f"creating index {index!r}", self.client.indices.create, index=index, body=dict(body))
        self._say(f"created index {index}")

    def load(
        self, index: str, passages: Corpus, *, batch_size: int = 200, text_field: str = TEXT_FIELD
    ) -> tuple[int, int | None]:
        """Bulk-index `passages` in batches (ids are the passage ids, so a reload replaces them),
        refresh, count. Per-document failures are collected over all batches and raised as one
        `DataError` naming how many failed and the first reasons. Returns (indexed, index count)."""
        from opensearchpy import helpers

        if batch_size < 1:
            raise ConfigError(f"batch size must be at least 1 (got {batch_size})")
        done, failed = 0, []
        for start in range(0, len(passages), batch_size):
            stop = min(start + batch_size, len(passages))
            actions = [
                {
                    "_op_type": "index",
                    "_index": index,
                    "_id": passages.ids[i],
                    "_source": passage_source(passages, i, text_field),
                }
                for i in range(start, stop)
            ]
            ok, errors = self._call(
                f"indexing passages {start + 1}-{stop}",
                helpers.bulk,
                client=self.client,
                actions=actions,
                chunk_size=batch_size,
                raise_on_error=False,
            )
            done += ok
            failed.extend(errors)
            self._say(
                f"indexed {done:,} of {len(passages):,} passages" + (f" ({len(failed)} failed)" if failed else "")
            )
        if failed:
            raise DataError(f"{self.url}/{index}", _bulk_failures(failed, len(passages)))
        self._call(f"refreshing index {index!r}", self.client.indices.refresh, index=index)
        count = self._call(f"counting index {index!r}", self.client.count, index=index)
        n = count.get("count") if isinstance(count, Mapping) else None
        if n is not None and n < done:
            log.warning("index %s holds %d documents after %d were indexed", index, n, done)
        return done, n

    def search(
        self,
        index: str,
        *,
        text: str | None = None,
        model_id: str | None = None,
        tokens: Mapping[str, float] | None = None,
        size: int = 5,
        sparse_field: str = SPARSE_FIELD,
        text_field: str = TEXT_FIELD,
    ) -> list[dict[str, Any]]:
        """A ``neural_sparse`` query: `text` encoded by `model_id`, or `tokens` with their weights."""
        if tokens is not None and self.version and not self.at_least(QUERY_TOKENS_VERSION):
            raise ConfigError(f"OpenSearch {self.version_text} at {self.url}: query tokens need 2.14 or later")
        body = neural_sparse_query(text=text, model_id=model_id, tokens=tokens, size=size, sparse_field=sparse_field)
        reply = self._call(f"searching index {index!r}", self.client.search, index=index, body=body)
        return hits_of(reply, text_field)

    # -- the whole hand-off --

    def deploy(
        self,
        model_dir: str | Path,
        *,
        index: str,
        passages: Corpus,
        pipeline: str | None = None,
        name: str | None = None,
        prune_type: str = "max_ratio",
        prune_ratio: float | None = 0.1,
        batch_size: int = 200,
        configure: bool = True,
        query: str | None = None,
        query_tokens: Mapping[str, float] | None = None,
        k: int = 5,
    ) -> DeployReport:
        """Everything, in the order the module docstring gives: check, models, pipeline, index,
        passages, and (with `query` or `query_tokens`) one search. `model_dir` is a korag sparse
        model directory or a ``korag export opensearch`` directory."""
        check_index_name(index)
        check_prune(prune_type, prune_ratio)
        if query_tokens is not None:
            query_tokens = check_query_tokens(query_tokens)
        if len(passages) == 0:
            raise ConfigError("there are no passages to index")
        pipeline = pipeline or f"{index}-ingest"
        self.check_cluster()
        if query_tokens is not None and not self.at_least(QUERY_TOKENS_VERSION):
            raise ConfigError(f"OpenSearch {self.version_text} at {self.url}: query tokens need 2.14 or later")
        exists = self.existing_index(index, pipeline)
        if prune_type != "none" and not self.at_least(PRUNE_VERSION):
            log.warning("OpenSearch %s has no ingest pruning (2.19+): indexing unpruned vectors", self.version_text)
            prune_type, prune_ratio = "none", None
        if configure:
            self.configure_ml()
        with tempfile.TemporaryDirectory(prefix="korag-deploy-") as tmp:
            if not is_export_dir(model_dir):
                self._say(f"exporting {model_dir} for ML Commons (TorchScript)")
            exported = prepare_export(model_dir, tmp, name=name)
            self._say(f"model {exported.encoder.name} ({exported.mode or 'sparse'})")
            encoder = self.register_and_deploy(exported.encoder)
            query_model = self.register_and_deploy(exported.tokenizer) if exported.tokenizer else None
        body = pipeline_body(
            encoder.model_id,
            description=f"korag {encoder.name}: sparse encoding",
            prune_type=prune_type,
            prune_ratio=prune_ratio,
        )
        self.put_pipeline(pipeline, body)
        if exists:
            self._say(f"index {index} exists with this mapping and pipeline: passages with the same ids are replaced")
        else:
            self.create_index(index, index_body(pipeline))
        done, count = self.load(index, passages, batch_size=batch_size)
        report = DeployReport(
            self.url, self.version_text, encoder, query_model, pipeline, index, not exists, done, count
        )
        if query or query_tokens:
            report.hits = self.search(
                index, text=query, model_id=(query_model or encoder).model_id, tokens=query_tokens, size=k
            )
        return report


def _bulk_failures(errors: list[Any], total: int) -> str:
    shown = []
    for item in errors[:3]:
        op = next(iter(item.values()), {}) if isinstance(item, Mapping) else {}
        shown.append(f"{op.get('_id')!r}: HTTP {op.get('status')}: {error_reason(op.get('error', {}))}")
    more = f"; and {len(errors) - 3} more" if len(errors) > 3 else ""
    return f"{len(errors)} of {total} passages were not indexed: {'; '.join(shown)}{more}"
