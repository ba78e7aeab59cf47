"""Milvus as a collection's engine: one Milvus collection holding a korag collection's passages
and the vectors of its indexes, searched by Milvus instead of korag's in-process indexes.

`MilvusStore` wraps `pymilvus.MilvusClient` for three deployments with one API: a Milvus Lite
file (``/path/x.db``: an embedded server in this process), a ``milvus-lite server`` process
(``http://127.0.0.1:PORT``: several processes share it) and a Milvus cluster (``http(s)://…``
with a `token`). One row per passage::

    id          VARCHAR pk    the passage id (``<document>#<n>``), ≤ 512 UTF-8 bytes
    document    VARCHAR       meta["document"]
    file        VARCHAR       meta["file"]
    pages       JSON          meta["pages"] (a list of page numbers, or [])
    title, text VARCHAR       cut to 65,535 UTF-8 bytes (Milvus counts bytes, Lite characters)
    meta        JSON          the rest of the passage's meta (char offsets, …)
    dense       FLOAT_VECTOR  FLAT / IP              when `dense_dim` is given
    sparse      SPARSE_FLOAT  SPARSE_INVERTED / IP   learned sparse, when `sparse`
    bm25        SPARSE_FLOAT  SPARSE_INVERTED / IP   BM25 document weights, when `bm25`
    bm25_avgdl  DOUBLE        the average document length the row's BM25 weights were made with

Why FLAT: it is exact, so a search returns what korag's own exact `VectorIndex` returns (top-10
equal to numpy brute force on every query tried); at a collection's size (thousands to a few
hundred thousand passages) brute force costs milliseconds. Measured with milvus-lite 3.2.2:
AUTOINDEX becomes HNSW (recall@10 0.98), IVF_FLAT's default nprobe gives recall@10 0.36, and
DISKANN/SCANN are accepted at creation but fail at the next load. Sparse fields accept only
SPARSE_INVERTED_INDEX with IP, which is exact (scores equal the numpy dot product);
``drop_ratio_search`` must be 0.

BM25 as sparse vectors. A Lucene/Robertson/ATIRE BM25 score is Σ_t count_q(t)·idf(t)·tfc(t, d)
with tfc = tf/(k1·(1 − b + b·dl/avgdl) + tf): the dot product of a query vector (count·idf,
`BM25Retriever.query_vectors`) and a document vector (tfc, `BM25Retriever.document_vectors`).
IDF sits on the query side, computed at query time from the BM25 index's current statistics;
the document side depends on the corpus only through avgdl, taken at write time and recorded
per row in ``bm25_avgdl``. Hence:

- **exact** (scores equal `BM25Retriever.search` to float32 rounding, tested): every row's
  weights were made with the current avgdl — a corpus upserted at once, or `sync_bm25` run
  after the last change;
- **approximate** after an incremental add or remove: older rows keep the avgdl of their write.
  A 1% change of avgdl moves each weight by under 1% (b = 0.75), so rankings rarely change, but
  they are no longer guaranteed equal. `bm25_stale(avgdl)` counts such rows and `sync_bm25` (or
  `rewrite_bm25`) re-upserts their ``bm25`` field alone (Milvus partial update).

k1 and b are the caller's: vectors of a collection must all use the same ones. BM25L/BM25+ have
no sparse-vector form (`ConfigError`).

Traps measured on pymilvus 3.0.2 + milvus-lite 3.2.2 and handled here:

- an empty or all-zero sparse vector is refused on insert: a passage without any term gets the
  key ``EMPTY_DOC_KEY`` (2³²−2), which no query uses; query rows without a non-zero entry are
  not sent (no results), or, inside a hybrid request, become ``{NO_MATCH_KEY: 1}``, which no
  passage has; sparse keys must be below 2³²−1;
- rows not flushed are re-scanned on every search (10–30× slower): every write ends with
  ``flush``;
- a Lite file is locked by the process that opened it (even after ``close``, until the
  in-process server is released: `close` releases it when no other store of this process uses
  the file); a second process gets "Open local milvus failed" and the real cause only in a log,
  so it is reported here as one line naming ``milvus-lite server``;
- after a server restart collections are not loaded (code 101): `ensure` loads, and a search
  that meets an unloaded collection loads it and tries again; for a few seconds after a restart
  the client reconnects (code 2), which is retried for `reconnect_seconds`;
- ``insert`` of an existing id overwrites in Lite but duplicates in Milvus: writes use ``upsert``
  (idempotent: a failed write may or may not have been applied, retrying it is safe);
- one request is limited to 256 MiB (a raw gRPC error): writes go in batches of at most
  `batch_rows` rows and `batch_bytes` bytes;
- Milvus collection names are ``[A-Za-z_][A-Za-z0-9_]*`` (Lite accepts more): `milvus_name`
  derives one from a korag collection name;
- pymilvus logs every failed RPC with a traceback at ERROR, Lite's server logs its own errors:
  every failure becomes one `ConfigError` here, so the records of the loggers ``pymilvus*``,
  ``milvus_lite*`` and ``grpc*`` are dropped while a call of this module runs (a filter,
  removed afterwards; korag's logging configuration is not changed);
- Milvus' `RRFRanker` orders passages with equal fused scores by id, korag's `fuse` by the
  first field's list; with two fields RRF ties are common (ranks 1 + 3 and 3 + 1), and on
  KorQuAD this alone cost 0.0085 MRR@10. `hybrid(fusion="korag")` searches each field in Milvus
  and fuses with `fuse`, equal to `HybridRetriever` (bench/milvus_equality.py).

`korag.retrieval` is below this package and does not know Milvus; this module imports it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np
import scipy.sparse as sp

from korag.errors import ConfigError
from korag.util.extras import require_extra

if TYPE_CHECKING:
    from korag.retrieval.bm25 import BM25Retriever

log = logging.getLogger(__name__)

VectorField = Literal["dense", "sparse", "bm25"]
VECTOR_FIELDS: tuple[str, ...] = ("dense", "sparse", "bm25")
ID_MAX_BYTES = 512
TEXT_MAX_BYTES = 65_535
EMPTY_DOC_KEY = 2**32 - 2  # stands for "no term" in a passage: Milvus refuses empty sparse vectors
NO_MATCH_KEY = 2**32 - 3  # a query term no passage has: an empty query row inside a hybrid request
MAX_TOP_K = 16_384  # Milvus' limit on k and on the number of queries per request
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
_KORAG_NAME_OK = re.compile(r"^[a-z_][a-z0-9_]*$")
_CONNECT_FAILED = 2  # pymilvus Status codes
_NOT_LOADED = 101
_META_COLUMNS = ("document", "file", "pages")

T = TypeVar("T")


# -- names and logging --------------------------------------------------------------------------
def milvus_name(name: str, *, prefix: str = "korag_") -> str:
    """A Milvus collection name for the korag collection `name`: ``korag_<name>`` when `name` is
    already lower-case letters, digits and '_'; otherwise the name with every other character
    made '_' plus 8 hex digits of its hash, so that ``a-b``, ``a.b`` and ``A_b`` stay distinct."""
    if _KORAG_NAME_OK.match(name):
        out = prefix + name
    else:
        cleaned = re.sub(r"[^a-z0-9_]", "_", name.lower())
        out = f"{prefix}{cleaned}_{hashlib.sha1(name.encode('utf-8')).hexdigest()[:8]}"
    if not _NAME.match(out):
        raise ConfigError(f"cannot derive a Milvus collection name from {name!r} with prefix {prefix!r}")
    return out


class _DropAll(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return False


_DROP = _DropAll()
# pymilvus; Lite's server; grpc's server (in this process in Lite file mode), which logs the
# client's probe of an RPC Lite does not implement (AllocTimestamp) as an error
_NOISY = ("pymilvus", "milvus_lite", "grpc")
_mute_lock = threading.Lock()
_mute_depth = 0
_muted_loggers: list[logging.Logger] = []


@contextlib.contextmanager
def _muted() -> Iterator[None]:
    """Drop the records of pymilvus' and Milvus Lite's loggers while a call runs (nested and
    concurrent calls share one filter; it comes off when the last one ends)."""
    global _mute_depth
    with _mute_lock:
        if _mute_depth == 0:
            names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] in _NOISY]
            _muted_loggers[:] = [logging.getLogger(n) for n in names]
            for lg in _muted_loggers:
                lg.addFilter(_DROP)
        _mute_depth += 1
    try:
        yield
    finally:
        with _mute_lock:
            _mute_depth -= 1
            if _mute_depth == 0:
                for lg in _muted_loggers:
                    lg.removeFilter(_DROP)
                _muted_loggers.clear()


# -- Lite files: who in this process uses which ----------------------------------------------------
_lite_users: dict[str, int] = {}
_lite_lock = threading.Lock()


def _lite_locked_elsewhere(path: Path) -> bool:
    """Whether another process holds Milvus Lite's lock on `path` (an advisory flock on
    ``path/LOCK``); probing takes and drops the lock at once."""
    lock = path / "LOCK"
    if not lock.exists():
        return False
    try:
        import fcntl
    except ImportError:  # Windows: cannot tell; a failed open of an existing file is most likely the lock
        return True
    with lock.open("a") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            return exc.errno in (errno.EAGAIN, errno.EACCES)
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    return False


def _without_credentials(uri: str) -> str:
    """`uri` without a user and password (``https://user:pass@host`` → ``https://host``)."""
    if "@" not in uri or "://" not in uri:
        return uri
    scheme, rest = uri.split("://", 1)
    netloc, sep, path = rest.partition("/")
    return f"{scheme}://{netloc.rsplit('@', 1)[1]}{sep}{path}"


# -- conversions ----------------------------------------------------------------------------------
def _utf8_cut(text: str, limit: int) -> tuple[str, bool]:
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text, False
    return raw[:limit].decode("utf-8", errors="ignore"), True


def _as_csr(matrix: Any, what: str, rows: int) -> sp.csr_matrix:
    if not sp.issparse(matrix):
        raise ConfigError(f"{what}: expected a scipy sparse matrix, got {type(matrix).__name__}")
    m = sp.csr_matrix(matrix, dtype=np.float32)
    if m.shape[0] != rows:
        raise ConfigError(f"{what}: {m.shape[0]} rows for {rows} passages/queries")
    m.sum_duplicates()
    if m.nnz:
        if not np.all(np.isfinite(m.data)) or m.data.min() < 0:
            raise ConfigError(f"{what}: Milvus sparse vectors need finite weights ≥ 0")
        if int(m.indices.max()) >= NO_MATCH_KEY:
            raise ConfigError(f"{what}: sparse keys must be below {NO_MATCH_KEY}")
    return m


def _sparse_rows(m: sp.csr_matrix, empty: dict[int, float] | None) -> list[dict[int, float] | None]:
    """One ``{key: weight}`` per row, zeros dropped; an empty row becomes `empty`."""
    out: list[dict[int, float] | None] = []
    for i in range(m.shape[0]):
        s, e = m.indptr[i], m.indptr[i + 1]
        vals = m.data[s:e]
        keep = vals != 0
        row = dict(zip(m.indices[s:e][keep].tolist(), vals[keep].tolist(), strict=True))
        out.append(row if row else (dict(empty) if empty is not None else None))
    return out


def _split_meta(meta: Mapping[str, Any] | None) -> dict[str, Any]:
    meta = dict(meta or {})
    pages = meta.get("pages")
    if pages is None:
        pages = []
    elif not isinstance(pages, list | tuple):
        pages = [pages]
    rest = {k: v for k, v in meta.items() if k not in _META_COLUMNS}
    return {
        "document": str(meta.get("document", "")),
        "file": str(meta.get("file", "")),
        "pages": list(pages),
        "meta": json.loads(json.dumps(rest, ensure_ascii=False, default=str)),  # JSON-safe
    }


def _row_bytes(row: Mapping[str, Any]) -> int:
    """A generous estimate of a row's size on the wire (strings, 4 B per dense value, 8 B per
    sparse entry)."""
    n = 64
    for key, value in row.items():
        if isinstance(value, str):
            n += len(value.encode("utf-8"))
        elif isinstance(value, dict):
            n += 8 * len(value) if key in VECTOR_FIELDS else len(json.dumps(value, ensure_ascii=False))
        elif isinstance(value, list):
            n += 4 * len(value) if key == "dense" else 8 * len(value)
        else:
            n += 8
    return n


class MilvusStore:
    """A korag collection's passages and index vectors in one Milvus collection.

    `uri` is a Milvus Lite file (a path ending in ``.db``; created with its parent directories)
    or a server (``http://127.0.0.1:19530``, ``https://…``); `token` authenticates to a cluster.
    `name` is the Milvus collection name (see `milvus_name`). The fields exist as asked:
    `dense_dim` (None: no dense field), `sparse` (learned sparse) and `bm25`. Errors are one-line
    `ConfigError`s. See the module docstring for the design and for when BM25 results are exact.

    A use, with ``bm25`` a `BM25Retriever` over the same passages::

        store = MilvusStore("/tmp/k.db", milvus_name("papers"), dense_dim=384, sparse=False)
        store.ensure()
        store.upsert(ids, texts, titles, metas, dense=vectors, bm25=bm25.document_vectors(), bm25_avgdl=avgdl)
        store.hybrid({"dense": query_vectors, "bm25": bm25.query_vectors(questions)}, k=10)
        # → [[(passage id, fused score), …] per question]
    """

    batch_rows = 1000
    batch_bytes = 32 << 20  # 1/8 of the 256 MiB gRPC request limit
    search_batch = 256  # queries per search request
    reconnect_seconds = 3.0  # a restarted server is reachable again after ~0.5 s

    def __init__(
        self,
        uri: str | Path,
        name: str,
        *,
        token: str | None = None,
        dense_dim: int | None,
        sparse: bool,
        bm25: bool = True,
        timeout: float | None = None,
    ) -> None:
        require_extra("milvus", "Milvus")
        if not _NAME.match(name):
            raise ConfigError(
                f"{name!r} is not a Milvus collection name (letters, digits and '_', not starting with a digit); "
                f"e.g. {milvus_name(name)!r} (korag.collections.milvus.milvus_name)"
            )
        if dense_dim is not None and dense_dim <= 0:
            raise ConfigError(f"dense_dim must be positive (got {dense_dim})")
        if dense_dim is None and not sparse and not bm25:
            raise ConfigError("a Milvus collection needs at least one vector field (dense, sparse or bm25)")
        self.name = name
        self.dense_dim = dense_dim
        self.fields: tuple[str, ...] = tuple(
            f for f, on in (("dense", dense_dim is not None), ("sparse", sparse), ("bm25", bm25)) if on
        )
        text = str(uri)
        self.lite = "://" not in text and not text.startswith("unix:")
        self.path: Path | None = Path(text).expanduser().resolve() if self.lite else None
        self._uri = str(self.path) if self.path is not None else text
        self.uri = _without_credentials(self._uri)  # what messages show
        self._client = self._connect(token, timeout)

    def __repr__(self) -> str:
        return f"MilvusStore({self.uri!r}, {self.name!r}, fields={list(self.fields)})"

    def __enter__(self) -> MilvusStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connection and errors ------------------------------------------------------------------
    def _connect(self, token: str | None, timeout: float | None):
        from pymilvus import MilvusClient
        from pymilvus.exceptions import ConnectionConfigException, MilvusException

        if self.path is not None:
            if self.path.suffix != ".db":
                raise ConfigError(f"{self.path}: a Milvus Lite file must end in .db (or give an http:// server URI)")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # imported before the call so that their loggers exist when `_muted` looks for them
            import milvus_lite.adapter.grpc.server  # noqa: F401
        try:
            with _muted():
                client = MilvusClient(uri=self._uri, token=token or "", timeout=timeout)
        except ConnectionConfigException as exc:
            raise self._open_error(exc) from exc
        except MilvusException as exc:
            raise ConfigError(f"cannot reach Milvus at {self.uri}: {exc.message} (is the server running?)") from exc
        if self.path is not None:
            with _lite_lock:
                _lite_users[str(self.path)] = _lite_users.get(str(self.path), 0) + 1
        return client

    def _open_error(self, exc: Any) -> ConfigError:
        message = str(getattr(exc, "message", exc))
        if self.path is not None and message.startswith("Open local milvus failed"):
            if _lite_locked_elsewhere(self.path):
                return ConfigError(
                    f"{self.path} is open in another process (Milvus Lite allows one); stop it or use "
                    "`milvus-lite server --data-dir DIR --host 127.0.0.1 --port PORT` and an http:// URI"
                )
            return ConfigError(f"cannot open Milvus Lite at {self.path}: {message}")
        return ConfigError(f"bad Milvus URI {self.uri!r}: {message}")

    def _call(self, action: str, fn: Callable[[], T]) -> T:
        """Run one client call: an unloaded collection is loaded and the call repeated once, a
        lost connection retried for `reconnect_seconds`, any other failure one `ConfigError`."""
        import grpc
        from pymilvus.exceptions import MilvusException

        if self._client is None:
            raise ConfigError(f"the Milvus store {self.name} at {self.uri} is closed")
        deadline: float | None = None
        loaded = False
        with _muted():
            while True:
                try:
                    return fn()
                except MilvusException as exc:
                    if exc.code == _NOT_LOADED and not loaded:
                        loaded = True  # a restarted server does not load collections by itself
                        try:
                            self._load()
                        except MilvusException as again:
                            raise ConfigError(
                                f"Milvus at {self.uri} cannot load {self.name}: {again.message}"
                            ) from again
                        continue
                    if exc.code == _CONNECT_FAILED:
                        deadline = deadline or time.monotonic() + self.reconnect_seconds
                        if time.monotonic() < deadline:
                            time.sleep(0.2)
                            continue
                        raise ConfigError(
                            f"Milvus at {self.uri} is unreachable ({action} {self.name}): is the server running?"
                        ) from exc
                    raise ConfigError(f"Milvus at {self.uri} refused to {action} {self.name}: {exc.message}") from exc
                except grpc.RpcError as exc:  # e.g. a request over the server's size limit
                    detail = exc.details() if hasattr(exc, "details") else str(exc)
                    raise ConfigError(f"Milvus at {self.uri} failed to {action} {self.name}: {detail}") from exc

    def _load(self) -> None:
        self._client.load_collection(self.name)

    # -- schema -----------------------------------------------------------------------------------
    def _schema(self):
        from pymilvus import DataType, MilvusClient

        s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        s.add_field("id", DataType.VARCHAR, is_primary=True, max_length=ID_MAX_BYTES)
        s.add_field("document", DataType.VARCHAR, max_length=TEXT_MAX_BYTES)
        s.add_field("file", DataType.VARCHAR, max_length=TEXT_MAX_BYTES)
        s.add_field("pages", DataType.JSON)
        s.add_field("title", DataType.VARCHAR, max_length=TEXT_MAX_BYTES)
        s.add_field("text", DataType.VARCHAR, max_length=TEXT_MAX_BYTES)
        s.add_field("meta", DataType.JSON)
        if "dense" in self.fields:
            s.add_field("dense", DataType.FLOAT_VECTOR, dim=self.dense_dim)
        if "sparse" in self.fields:
            s.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        if "bm25" in self.fields:
            s.add_field("bm25", DataType.SPARSE_FLOAT_VECTOR)
            s.add_field("bm25_avgdl", DataType.DOUBLE)
        return s

    def _index_params(self, fields: Sequence[str]):
        params = self._client.prepare_index_params()
        for f in fields:
            if f == "dense":  # exact: see the module docstring for what the others gave
                params.add_index(field_name="dense", index_type="FLAT", metric_type="IP")
            else:  # the only sparse index Lite accepts; exact
                params.add_index(field_name=f, index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
        return params

    def exists(self) -> bool:
        """Whether the Milvus collection exists."""
        return self._call("look up", lambda: self._client.has_collection(self.name))

    def ensure(self) -> None:
        """Create the collection with its indexes if missing, check an existing one against this
        store's fields and dimension (creating missing indexes), and load it."""
        if not self.exists():
            self._call(
                "create",
                lambda: self._client.create_collection(
                    self.name, schema=self._schema(), index_params=self._index_params(self.fields)
                ),
            )
            log.info("created Milvus collection %s at %s (%s)", self.name, self.uri, ", ".join(self.fields))
        else:
            self._check_schema()
            indexed = set(self._call("list indexes of", lambda: self._client.list_indexes(self.name)))
            missing = [f for f in self.fields if f not in indexed]
            if missing:
                self._call(
                    "create indexes on", lambda: self._client.create_index(self.name, self._index_params(missing))
                )
        self._call("load", self._load)

    def _check_schema(self) -> None:
        desc = self._call("describe", lambda: self._client.describe_collection(self.name))
        fields = {f["name"]: f for f in desc["fields"]}
        for f in VECTOR_FIELDS:
            if f in self.fields and f not in fields:
                raise ConfigError(
                    f"Milvus collection {self.name} at {self.uri} has no {f!r} field; drop it or use another name"
                )
            if f in fields and f not in self.fields:  # an upsert could not fill it
                raise ConfigError(
                    f"Milvus collection {self.name} at {self.uri} has a {f!r} field this store does not fill; "
                    "drop it or use another name"
                )
        if "dense" in self.fields:
            dim = int(fields["dense"].get("params", {}).get("dim", 0))
            if dim != self.dense_dim:
                raise ConfigError(
                    f"Milvus collection {self.name} at {self.uri} holds {dim}-dimensional dense vectors, "
                    f"this model gives {self.dense_dim}; drop it or use another name"
                )

    # -- writing ----------------------------------------------------------------------------------
    def upsert(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        titles: Sequence[str] | None = None,
        metas: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        dense: np.ndarray | None = None,
        sparse: sp.spmatrix | None = None,
        bm25: sp.spmatrix | None = None,
        bm25_avgdl: float | None = None,
    ) -> int:
        """Insert or replace passages (by id), every field of the store given, row i of each
        matrix being passage i; then flush. `bm25_avgdl` is the average document length the
        `bm25` rows were computed with (None: unknown, always stale). Returns the rows written."""
        n = len(ids)
        titles = list(titles) if titles is not None else [""] * n
        metas = list(metas) if metas is not None else [None] * n
        if len(texts) != n or len(titles) != n or len(metas) != n:
            raise ConfigError("upsert: ids, texts, titles and metas must have the same length")
        vectors = self._vector_columns(n, dense=dense, sparse=sparse, bm25=bm25)
        rows = []
        cut = 0
        for i in range(n):
            if len(ids[i].encode("utf-8")) > ID_MAX_BYTES:
                raise ConfigError(f"passage id {ids[i][:40]!r}… is over {ID_MAX_BYTES} UTF-8 bytes")
            text, c1 = _utf8_cut(texts[i], TEXT_MAX_BYTES)
            title, c2 = _utf8_cut(titles[i] or "", TEXT_MAX_BYTES)
            cut += c1 or c2
            row = {"id": ids[i], "title": title, "text": text, **_split_meta(metas[i])}
            for f, column in vectors.items():
                row[f] = column[i]
            if "bm25" in vectors:
                row["bm25_avgdl"] = float(bm25_avgdl) if bm25_avgdl is not None else 0.0
            rows.append(row)
        if cut:
            log.warning(
                "%d passage(s) cut to %d UTF-8 bytes for Milvus (the collection keeps them whole)", cut, TEXT_MAX_BYTES
            )
        self._write(rows, "upsert into")
        return n

    def _vector_columns(self, n: int, **given: Any) -> dict[str, list]:
        out: dict[str, list] = {}
        for f in VECTOR_FIELDS:
            value = given[f]
            if f not in self.fields:
                if value is not None:
                    raise ConfigError(f"Milvus collection {self.name} has no {f!r} field (store made without it)")
                continue
            if value is None:
                raise ConfigError(f"upsert into {self.name}: the {f!r} vectors are missing")
            if f == "dense":
                out[f] = list(self._dense(value, n, "dense vectors"))
            else:
                out[f] = _sparse_rows(_as_csr(value, f"{f} vectors", n), {EMPTY_DOC_KEY: 1.0})
        return out

    def _dense(self, value: Any, n: int, what: str) -> np.ndarray:
        arr = np.asarray(value, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[0] != n:
            raise ConfigError(f"{what}: expected an array of {n} rows, got shape {arr.shape}")
        if arr.shape[1] != self.dense_dim:
            raise ConfigError(
                f"{what} have dimension {arr.shape[1]}; Milvus collection {self.name} holds {self.dense_dim}"
            )
        if not np.all(np.isfinite(arr)):
            raise ConfigError(f"{what}: not finite")
        return arr

    def _write(self, rows: list[dict[str, Any]], action: str, *, partial: bool = False) -> None:
        """Upsert `rows` in batches under the request limits, then flush."""
        extra = {"partial_update": True} if partial else {}
        batch: list[dict[str, Any]] = []
        size = 0
        for row in rows:
            b = _row_bytes(row)
            if batch and (len(batch) >= self.batch_rows or size + b > self.batch_bytes):
                self._call(action, lambda batch=batch: self._client.upsert(self.name, batch, **extra))
                batch, size = [], 0
            batch.append(row)
            size += b
        if batch:
            self._call(action, lambda: self._client.upsert(self.name, batch, **extra))
        self.flush()

    def flush(self) -> None:
        """Seal written rows into indexed segments (unflushed rows are scanned by every search)."""
        self._call("flush", lambda: self._client.flush(self.name))

    def delete(self, ids: Sequence[str]) -> None:
        """Delete passages by id (unknown ids are ignored), then flush."""
        ids = list(ids)
        for start in range(0, len(ids), self.batch_rows):
            part = ids[start : start + self.batch_rows]
            self._call("delete from", lambda part=part: self._client.delete(self.name, ids=part))
        if ids:
            self.flush()

    # -- BM25 statistics --------------------------------------------------------------------------
    def _avgdl_filter(self, avgdl: float, rel_tol: float) -> str:
        if rel_tol <= 0:
            return f"bm25_avgdl != {float(avgdl)!r}"
        lo, hi = avgdl * (1 - rel_tol), avgdl * (1 + rel_tol)
        return f"bm25_avgdl < {lo!r} || bm25_avgdl > {hi!r}"

    def bm25_stale(self, avgdl: float, *, rel_tol: float = 0.0) -> int:
        """Rows whose BM25 weights were made with an average document length other than
        `avgdl` (beyond `rel_tol`): 0 means BM25 results equal the embedded index's."""
        self._require("bm25")
        flt = self._avgdl_filter(avgdl, rel_tol)
        res = self._call("count in", lambda: self._client.query(self.name, filter=flt, output_fields=["count(*)"]))
        return int(res[0]["count(*)"])

    def rewrite_bm25(self, ids: Sequence[str], bm25: sp.spmatrix, avgdl: float) -> int:
        """Replace the ``bm25`` field (and its avgdl) of existing passages `ids` alone, row i of
        `bm25` being passage i (a Milvus partial update; Milvus ≥ 2.6 or Lite). Returns the rows."""
        self._require("bm25")
        vectors = _sparse_rows(_as_csr(bm25, "bm25 vectors", len(ids)), {EMPTY_DOC_KEY: 1.0})
        rows = [{"id": i, "bm25": v, "bm25_avgdl": float(avgdl)} for i, v in zip(ids, vectors, strict=True)]
        self._write(rows, "rewrite BM25 vectors of", partial=True)
        return len(rows)

    def sync_bm25(self, retriever: BM25Retriever, *, rel_tol: float = 0.0) -> int:
        """Bring every stored BM25 vector to `retriever`'s current statistics: the rows made with
        another avgdl get `retriever.document_vectors()`'s. Afterwards BM25 searches with
        `retriever.query_vectors` equal `retriever.search`. Returns the rows rewritten."""
        self._require("bm25")
        counts = retriever.term_counts()
        avgdl = float(counts.doc_lengths.mean()) if len(counts) else 1.0
        stale = self.ids(self._avgdl_filter(avgdl, rel_tol))
        if not stale:
            return 0
        position = {d: i for i, d in enumerate(counts.doc_ids)}
        keep = [d for d in stale if d in position]
        if len(keep) < len(stale):
            log.warning("%d passage(s) in Milvus are not in the BM25 index; left as they are", len(stale) - len(keep))
        if not keep:
            return 0
        vectors = retriever.document_vectors()[[position[d] for d in keep]]
        return self.rewrite_bm25(keep, vectors, avgdl)

    # -- reading ----------------------------------------------------------------------------------
    def _require(self, field: str) -> None:
        if field not in self.fields:
            raise ConfigError(
                f"Milvus collection {self.name} has no {field!r} field (it has: {', '.join(self.fields)})"
            )

    def count(self) -> int:
        """The number of passages."""
        res = self._call("count", lambda: self._client.query(self.name, filter="", output_fields=["count(*)"]))
        return int(res[0]["count(*)"])

    def ids(self, filter: str = "") -> list[str]:
        """The passage ids (matching a Milvus boolean `filter` expression, if given)."""

        def scan() -> list[str]:
            it = self._client.query_iterator(self.name, batch_size=1000, filter=filter, output_fields=["id"])
            out: list[str] = []
            try:
                while batch := it.next():
                    out.extend(r["id"] for r in batch)
            finally:
                it.close()
            return out

        return self._call("list ids of", scan)

    @staticmethod
    def _search_params(field: str) -> dict[str, Any]:
        if field == "dense":
            return {"metric_type": "IP"}
        return {"metric_type": "IP", "params": {"drop_ratio_search": 0}}  # anything else is refused

    def _queries(self, field: str, queries: Any, empty: dict[int, float] | None) -> list:
        """Query rows in the form pymilvus takes; a sparse row without entries is `empty`."""
        if field == "dense":
            arr = np.asarray(queries, dtype=np.float32)
            if arr.ndim == 1:
                arr = arr[None, :]
            return list(self._dense(arr, arr.shape[0], "dense queries"))
        m = queries if sp.issparse(queries) else None
        if m is None:
            raise ConfigError(f"{field} queries: expected a scipy sparse matrix, got {type(queries).__name__}")
        return _sparse_rows(_as_csr(m, f"{field} queries", m.shape[0]), empty)

    def _check_k(self, k: int) -> None:
        if not 1 <= k <= MAX_TOP_K:
            raise ConfigError(f"k must be between 1 and {MAX_TOP_K} (got {k})")

    def search(
        self, field: VectorField, queries: np.ndarray | sp.spmatrix, k: int = 10
    ) -> list[list[tuple[str, float]]]:
        """The top-`k` (passage id, score) of each query on one field: `queries` is an array
        (queries × dim) for ``dense``, a sparse matrix for ``sparse`` and ``bm25`` (a row without
        entries has no results). Scores are inner products, best first."""
        self._require(field)
        self._check_k(k)
        rows = self._queries(field, queries, None)
        out: list[list[tuple[str, float]]] = [[] for _ in rows]
        todo = [i for i, r in enumerate(rows) if r is not None]
        for start in range(0, len(todo), self.search_batch):
            part = todo[start : start + self.search_batch]
            data = [rows[i] for i in part]
            res = self._call(
                "search",
                lambda data=data: self._client.search(
                    self.name,
                    data=data,
                    anns_field=field,
                    limit=k,
                    output_fields=["id"],
                    search_params=self._search_params(field),
                ),
            )
            for i, hits in zip(part, res, strict=True):
                out[i] = [(h["id"], float(h["distance"])) for h in hits]
        return out

    def _ranker(self, method: str, weights: Sequence[float] | None, n: int, rrf_k: int, normalization: str):
        from pymilvus import RRFRanker, WeightedRanker

        if normalization not in ("none", "atan"):
            raise ConfigError(
                f"Milvus normalises scores with atan or not at all (got {normalization!r}); use fusion='korag'"
            )
        if method == "rrf":
            if weights is not None and len(set(weights)) > 1:
                raise ConfigError("Milvus' RRF has no per-field weights; use fusion='korag' or method='weighted'")
            return RRFRanker(rrf_k)
        if method == "weighted":
            w = list(weights) if weights is not None else [1.0] * n
            if len(w) != n:
                raise ConfigError(f"{len(w)} weights for {n} fields")
            return WeightedRanker(*[float(x) for x in w], norm_score=normalization == "atan")
        raise ConfigError(f"unknown fusion method {method!r}; use rrf or weighted")

    def hybrid(
        self,
        requests: Mapping[str, np.ndarray | sp.spmatrix],
        k: int = 10,
        *,
        method: Literal["rrf", "weighted"] = "rrf",
        weights: Sequence[float] | None = None,
        rrf_k: int = 60,
        depth: int = 100,
        normalization: Literal["none", "atan", "minmax", "zscore"] = "none",
        fusion: Literal["milvus", "korag"] = "milvus",
    ) -> list[list[tuple[str, float]]]:
        """Each field searched to `depth`, the lists fused into the top-`k` of each query.

        `requests` maps fields to their queries (same number of rows each). ``rrf``: score =
        Σ wᵢ/(rrf_k + rankᵢ); ``weighted``: Σ wᵢ·normᵢ(scoreᵢ) over the fields that returned the
        passage — the formulas of `korag.retrieval.fusion.fuse`.

        ``fusion="milvus"`` (one request): Milvus fuses with `RRFRanker` (no weights) or
        `WeightedRanker` (`normalization` ``none`` or ``atan``, Milvus' default, which flattens
        BM25's large scores). Milvus orders passages with equal fused scores by id, where
        `fuse` keeps the order of the first field's list — and RRF ties are common (ranks 1 + 3
        and 3 + 1): on KorQuAD this cost the hybrid 0.0085 MRR@10 against the embedded one
        (bench/milvus_equality.py). ``fusion="korag"``: each field is searched by Milvus and the
        lists are fused here by `fuse` (any weights; ``none``, ``minmax`` or ``zscore``), which
        equals `HybridRetriever` over the embedded indexes up to ties inside one field's list."""
        fields = list(requests)
        if len(fields) < 2:
            raise ConfigError("a hybrid search needs at least two fields")
        for f in fields:
            self._require(f)
        self._check_k(k)
        self._check_k(depth)
        if fusion == "korag":
            return self._fuse_here(requests, k, method, weights, rrf_k, depth, normalization)
        if fusion != "milvus":
            raise ConfigError(f"unknown fusion {fusion!r}; use milvus or korag")
        ranker = self._ranker(method, weights, len(fields), rrf_k, normalization)
        data = {f: self._queries(f, requests[f], {NO_MATCH_KEY: 1.0}) for f in fields}
        n = len(data[fields[0]])
        if any(len(rows) != n for rows in data.values()):
            raise ConfigError("hybrid: every field needs the same number of queries")
        return self._hybrid_search(data, ranker, k, depth)

    def _hybrid_search(self, data: dict[str, list], ranker: Any, k: int, depth: int) -> list[list[tuple[str, float]]]:
        from pymilvus import AnnSearchRequest

        n = len(next(iter(data.values())))
        out: list[list[tuple[str, float]]] = []
        for start in range(0, n, self.search_batch):
            stop = min(n, start + self.search_batch)
            reqs = [
                AnnSearchRequest(data=rows[start:stop], anns_field=f, param=self._search_params(f), limit=depth)
                for f, rows in data.items()
            ]
            res = self._call(
                "search",
                lambda reqs=reqs: self._client.hybrid_search(self.name, reqs, ranker, limit=k, output_fields=["id"]),
            )
            out.extend([(h["id"], float(h["distance"])) for h in hits] for hits in res)
        return out

    def _fuse_here(
        self,
        requests: Mapping[str, Any],
        k: int,
        method: str,
        weights: Sequence[float] | None,
        rrf_k: int,
        depth: int,
        normalization: str,
    ) -> list[list[tuple[str, float]]]:
        """`fusion="korag"`: one Milvus search per field, fused by `korag.retrieval.fusion.fuse`."""
        from korag.data.schema import Ranking
        from korag.retrieval.fusion import fuse

        if normalization not in ("none", "minmax", "zscore"):
            raise ConfigError(f"korag's fusion normalises with none, minmax or zscore (got {normalization!r})")
        lists = {f: self.search(f, q, k=depth) for f, q in requests.items()}
        n = len(next(iter(lists.values())))
        if any(len(rows) != n for rows in lists.values()):
            raise ConfigError("hybrid: every field needs the same number of queries")
        qids = [str(i) for i in range(n)]
        # from_dict keeps Milvus' order among equal scores (a stable sort)
        rankings = [Ranking.from_dict(dict(zip(qids, rows, strict=True))) for rows in lists.values()]
        fused = fuse(rankings, method=method, weights=weights, rrf_k=rrf_k, normalization=normalization, k=k)
        return [fused.row(i) for i in range(n)]

    # -- lifetime -----------------------------------------------------------------------------------
    def drop(self) -> None:
        """Delete the Milvus collection and everything in it."""
        self._call("drop", lambda: self._client.drop_collection(self.name))

    def close(self) -> None:
        """Close the connection; a Lite file no other store of this process uses is released, so
        another process can open it."""
        client, self._client = self._client, None
        if client is None:
            return
        with _muted():
            client.close()
        if self.path is not None:
            key = str(self.path)
            with _lite_lock:
                left = _lite_users.get(key, 1) - 1
                if left > 0:
                    _lite_users[key] = left
                else:
                    _lite_users.pop(key, None)
            if left <= 0:
                from milvus_lite.server_manager import server_manager_instance

                with _muted():
                    server_manager_instance.release_server(key)
