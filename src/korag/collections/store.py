"""A collection: a user's documents cut into passages and indexed, kept on disk between runs.

One directory holds it::

    collection.json        the `CollectionConfig`, written once at creation
    HEAD                   the name of the current generation
    gens/gen-000007/       one complete state: documents.json (what was added, with content
                           hashes), passages.jsonl (the passages with file, pages and offsets)
                           and one index directory per retriever (bm25/, dense/, sparse/)
    .lock                  held by the one writer

Every change (`add`, `remove`) builds the next generation from the current one — the passages
of replaced or removed documents deleted from every index, only new passages encoded — in a
temporary directory, renames it into place and then replaces ``HEAD``; both steps are atomic
renames. A reader sees whatever ``HEAD`` names, the old state or the new, never a mixture; a
writer killed at any moment leaves ``HEAD`` naming the old generation and the next writer
removes its leftovers. Writers are serialised by a file lock (the `filelock` package: it knows
the platforms' locking quirks); readers take no lock. The previous generation is kept, so a
reader that opened it just before a change can still finish reading it.

Whole generations rather than changes in place, because every index file is rewritten whole on
save anyway (bm25s' matrices, the vector array, the postings); updates stay proportional to the
new passages in encoding time, which is what costs (a dense encoder, not file copies).

A document is named by its file name: `korag remove NAME report.pdf` is what a user types. Two
different files with one name in the same call are refused (the second is skipped and
reported); a later file with the name of a stored one replaces it when its content differs.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from korag import __version__, atomic
from korag.collections.config import CollectionConfig, FusionSettings, RerankSettings
from korag.data.folder import DOCUMENT_SUFFIXES, list_documents, load_files
from korag.data.schema import Corpus, Document, Queries, Ranking
from korag.errors import ConfigError, DataError
from korag.retrieval.hits import Hit, ranking_hits
from korag.util.hashing import file_sha256

if TYPE_CHECKING:
    from korag.collections.ask import Answer, AskStream, Reader

log = logging.getLogger(__name__)

CONFIG_FILE = "collection.json"
HEAD_FILE = "HEAD"
GENS_DIR = "gens"
DOCUMENTS_FILE = "documents.json"
PASSAGES_FILE = "passages.jsonl"
LOCK_FILE = ".lock"
FORMAT_VERSION = 1
_GEN = re.compile(r"^gen-(\d{6,})$")


def default_home() -> Path:
    """Where named collections live: ``$KORAG_HOME/collections``, by default
    ``$XDG_DATA_HOME/korag/collections`` (``~/.local/share/korag/collections``)."""
    home = os.environ.get("KORAG_HOME")
    if home:
        return Path(home).expanduser() / "collections"
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "korag" / "collections"


def collection_path(name_or_path: str | Path, home: str | Path | None = None) -> Path:
    """A collection's directory: a name under `home` (default `default_home`), or a path when
    it contains a separator or starts with '.' or '~'."""
    s = str(name_or_path)
    if "/" in s or os.sep in s or s.startswith((".", "~")):
        return Path(s).expanduser()
    return (Path(home).expanduser() if home is not None else default_home()) / s


def list_collections(home: str | Path | None = None) -> list[Path]:
    """The collection directories under `home`, sorted by name."""
    base = Path(home).expanduser() if home else default_home()
    if not base.is_dir():
        return []
    return sorted(p for p in base.iterdir() if (p / CONFIG_FILE).is_file())


@dataclass
class DocumentEntry:
    """A document of the collection: where it came from and what it became."""

    id: str
    sha256: str
    passages: int
    title: str = ""
    path: str = ""  # the file it was read from ("" for text added through the API)
    bytes: int = 0
    pages: int | None = None
    thin_pages: list[int] = field(default_factory=list)
    added: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON for documents.json."""
        return dict(self.__dict__)


@dataclass
class AddReport:
    """What one `add` did, document by document."""

    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    warnings: list[str] = field(default_factory=list)
    passages_added: int = 0
    passages_removed: int = 0
    generation: int = 0
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        """Whether the collection changed."""
        return bool(self.added or self.replaced)

    def summary(self) -> str:
        """``added 3, replaced 1, unchanged 2, skipped 1`` (with passage counts)."""
        parts = [
            f"added {len(self.added)}",
            f"replaced {len(self.replaced)}",
            f"unchanged {len(self.unchanged)}",
            f"skipped {len(self.skipped)}",
        ]
        return ", ".join(parts) + f" document(s); {self.passages_added} passage(s) indexed in {self.seconds:.1f} s"

    def to_dict(self) -> dict[str, Any]:
        """JSON for scripts."""
        d = dict(self.__dict__)
        d["skipped"] = [{"file": f, "reason": r} for f, r in self.skipped]
        return d


@dataclass
class RemoveReport:
    """What one `remove` did."""

    removed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    passages_removed: int = 0
    generation: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON for scripts."""
        return dict(self.__dict__)


@dataclass
class _State:
    """One generation as loaded: its documents, passages and (lazily) retrievers."""

    generation: int
    directory: Path
    documents: dict[str, DocumentEntry]
    passages: Corpus
    retrievers: dict[str, Any] = field(default_factory=dict)
    _keys: dict[str, str] | None = None

    def keys(self) -> dict[str, str]:
        """Each passage's row key in a Milvus engine (its id and its document's hash)."""
        if self._keys is None:
            from korag.collections.milvus_engine import row_key

            metas = self.passages.metas or [{}] * len(self.passages)
            self._keys = {
                pid: row_key(pid, self.documents[m["document"]].sha256)
                for pid, m in zip(self.passages.ids, metas, strict=True)
            }
        return self._keys


def _gen_name(n: int) -> str:
    return f"gen-{n:06d}"


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


class Collection:
    """A persistent, searchable set of documents (see the module docstring for the layout).

    Open one with `Collection.create` or `Collection.open`; `add`, `remove`, `search` and
    `ask` are what the ``korag`` commands of the same names call. An instance caches the
    loaded indexes and models, and notices when another process changed the collection.
    """

    def __init__(self, root: str | Path, config: CollectionConfig, *, device: str = "auto") -> None:
        self.root = Path(root)
        self.config = config
        self.device = device
        self._state: _State | None = None
        self._models: dict[str, Any] = {}  # "dense"/"sparse" → the model, loaded once per instance
        self._readers: dict[str, Reader] = {}
        self._encoders: dict[str, Any] | None = None  # Milvus engine: dense/sparse encoders
        self._milvus = None  # Milvus engine: the MilvusIndexes, connected on first use

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | Path, config: CollectionConfig, *, device: str = "auto") -> Collection:
        """A new, empty collection at `root` (which must not hold one yet)."""
        root = Path(root)
        if (root / CONFIG_FILE).exists():
            raise ConfigError(f"{root}: a collection already exists here (korag collection info {config.name})")
        if root.exists() and any(root.iterdir()):
            raise ConfigError(f"{root}: exists and is not an empty directory")
        with atomic.atomic_directory(root, overwrite=True) as tmp:
            (tmp / GENS_DIR).mkdir()
            _write_generation(tmp / GENS_DIR / _gen_name(0), {}, Corpus.from_documents([]), {})
            atomic.write_json(
                tmp / CONFIG_FILE,
                {
                    "format_version": FORMAT_VERSION,
                    "korag_version": __version__,
                    "created": _now(),
                    "config": config.model_dump(mode="json"),
                },
            )
            atomic.write_text(tmp / HEAD_FILE, _gen_name(0) + "\n")
        log.info("created collection %s at %s", config.name, root)
        coll = cls(root, config, device=device)
        if config.engine.kind == "milvus":
            coll._engine()  # connect and create the Milvus collection now: a wrong URI fails here
        return coll

    @classmethod
    def open(cls, root: str | Path, *, device: str = "auto") -> Collection:
        """An existing collection."""
        root = Path(root)
        path = root / CONFIG_FILE
        if not path.is_file():
            raise ConfigError(f"{root}: no collection here (create one: korag collection create NAME)")
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
            config = CollectionConfig.model_validate(info["config"])
        except (json.JSONDecodeError, KeyError, ValueError) as exc:
            raise DataError(path, f"not a korag collection file ({exc})") from None
        if info.get("format_version", 0) > FORMAT_VERSION:
            raise ConfigError(f"{root}: written by a newer korag ({info.get('korag_version')}); upgrade korag")
        return cls(root, config, device=device)

    @property
    def name(self) -> str:
        """The collection's name."""
        return self.config.name

    # -- reading -------------------------------------------------------------------------------
    def head(self) -> int:
        """The current generation number."""
        text = (self.root / HEAD_FILE).read_text(encoding="utf-8").strip()
        m = _GEN.match(text)
        if not m:
            raise DataError(self.root / HEAD_FILE, f"names no generation ({text!r})")
        return int(m.group(1))

    def _current(self) -> _State:
        """The loaded state of the generation HEAD names (reloaded when another process moved it)."""
        gen = self.head()
        if self._state is None or self._state.generation != gen:
            self._state = self._load_state(gen)
        return self._state

    def _load_state(self, gen: int) -> _State:
        directory = self.root / GENS_DIR / _gen_name(gen)
        docs_path = directory / DOCUMENTS_FILE
        raw = json.loads(docs_path.read_text(encoding="utf-8"))
        documents = {d["id"]: DocumentEntry(**d) for d in raw["documents"]}
        passages = _read_passages(directory / PASSAGES_FILE)
        return _State(gen, directory, documents, passages)

    def documents(self) -> list[DocumentEntry]:
        """The documents, in the order they were added."""
        return list(self._current().documents.values())

    def passages(self) -> Corpus:
        """Every passage (ids ``<document>#<n>``; meta: document, file, pages, char offsets)."""
        return self._current().passages

    def __len__(self) -> int:
        return len(self._current().documents)

    def info(self) -> dict[str, Any]:
        """Name, settings, counts and size on disk."""
        state = self._current()
        size = sum(f.stat().st_size for f in state.directory.rglob("*") if f.is_file())
        return {
            "name": self.name,
            "path": str(self.root),
            "generation": state.generation,
            "documents": len(state.documents),
            "passages": len(state.passages),
            "pages": sum(d.pages or 0 for d in state.documents.values()),
            "retrievers": self.config.retrievers(),
            "default_retriever": self.config.resolve(None),
            "engine": self.config.engine.kind,
            "bytes": size,
            "config": self.config.model_dump(mode="json"),
        }

    def retriever(self, kind: str | None = None, *, weights: Sequence[float] | None = None):
        """The retriever a search with `kind` (bm25, dense, sparse, hybrid; default: the
        collection's) uses, loaded for the current generation; `weights` override the hybrid's
        fusion weights."""
        return self._retriever(self._current(), kind, weights)

    def _retriever(self, state: _State, kind: str | None, weights: Sequence[float] | None = None):
        kind = self.config.resolve(kind)
        if not len(state.passages):
            raise DataError(self.root, f"collection {self.name!r} is empty: korag add {self.name} FILES")
        if self.config.engine.kind == "milvus":
            return self._milvus_retriever(state, kind, weights)
        if kind == "hybrid":
            from korag.retrieval.fusion import HybridRetriever

            f = self.config.fusion
            members = [self._member(state, m) for m in self.config.retrievers()]
            if weights is not None and len(weights) != len(members):
                raise ConfigError(
                    f"{len(members)} hybrid members ({', '.join(self.config.retrievers())}) need as many weights"
                )
            method = "weighted" if weights is not None else f.method
            return HybridRetriever(
                members, method=method, weights=weights or f.weights, rrf_k=f.rrf_k, combiner=f.combiner
            )
        if weights is not None:
            raise ConfigError("fusion weights apply to the hybrid retriever only")
        return self._member(state, kind)

    def _milvus_retriever(self, state: _State, kind: str, weights: Sequence[float] | None):
        from korag.collections.milvus_engine import MilvusRetriever

        f = self.config.fusion
        return MilvusRetriever(
            self._engine(),
            kind,
            bm25=self._member(state, "bm25"),
            encoders=self._encoder_members(),
            key_of=state.keys(),
            passages=state.passages,
            method="weighted" if weights is not None else f.method,
            weights=weights if weights is not None else f.weights,
            rrf_k=f.rrf_k,
            combiner=f.combiner,
        )

    def _encoder_members(self) -> dict[str, Any]:
        """Milvus engine: the dense and sparse retrievers used only to encode (no local index)."""
        if self._encoders is None:
            self._encoders = {k: self._new_member(k) for k in self.config.retrievers() if k != "bm25"}
        return self._encoders

    def _engine(self):
        """Milvus engine: the connected `MilvusIndexes` (created on first use)."""
        if self._milvus is None:
            from korag.collections.milvus_engine import MilvusIndexes, dense_dim

            encoders = self._encoder_members()
            dim = dense_dim(encoders["dense"]) if "dense" in encoders else None
            self._milvus = MilvusIndexes(self.root, self.config, dense_dim=dim)
        return self._milvus

    def _local_kinds(self) -> list[str]:
        """The retrievers indexed in the collection's directory (with Milvus: BM25's counts only)."""
        return ["bm25"] if self.config.engine.kind == "milvus" else self.config.retrievers()

    def _member(self, state: _State, kind: str):
        if kind not in state.retrievers:
            state.retrievers[kind] = self._load_member(kind, state.directory / kind)
            state.retrievers[kind].attach_corpus(state.passages)  # the collection keeps the passages
        return state.retrievers[kind]

    def _load_member(self, kind: str, path: Path):
        if kind == "bm25":
            from korag.retrieval.bm25 import BM25Retriever

            return BM25Retriever.load(path, mmap=False)
        if kind == "dense":
            from korag.retrieval.dense import DenseRetriever

            r = DenseRetriever.load(path, mmap=False, model=self._models.get(kind), device=self._device())
            self._models.setdefault(kind, r.encoder.model)
            return r
        from korag.retrieval.sparse import SparseRetriever

        r = SparseRetriever.load(path, mmap=False, model=self._models.get(kind), device=self._device())
        self._models.setdefault(kind, r.model)
        return r

    def close(self) -> None:
        """Release the Milvus connection, if this collection opened one: a Milvus Lite file can be
        open in one process only, so a process that built a collection closes it before another
        (``korag serve``) opens it. Embedded indexes hold nothing to release."""
        if self._milvus is not None:
            self._milvus.store.close()
            self._milvus = None

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def warm_up(self) -> None:
        """Load the models the collection's retrievers use, the current indexes and the query
        tokenizer, so the first search or add does not wait for them (a server calls this at start:
        Kiwi alone takes seconds to load, more than an HTTP client's default timeout on 2 busy cores)."""
        for kind in self.config.retrievers():
            if kind != "bm25" and kind not in self._models:
                self._new_member(kind)
        if self.config.engine.kind == "milvus":
            self._engine()
        if len(self._current().passages):
            self.search("준비", 1)  # one query through every member (and the reranker, if any)

    def _device(self) -> str:
        from korag.models.device import resolve_device

        self.device = resolve_device(self.device)
        return self.device

    def _new_member(self, kind: str):
        """An empty retriever of `kind` with the collection's settings; a model already loaded
        by this instance is shared, not loaded again."""
        cfg = self.config
        if kind == "bm25":
            from korag.retrieval.bm25 import BM25Retriever

            b = cfg.bm25
            return BM25Retriever(b.tokenizer, k1=b.k1, b=b.b, with_title=cfg.with_title)
        loaded = self._models.get(kind)
        if kind == "dense":
            from korag.retrieval.dense import DenseRetriever

            d = cfg.dense
            assert d is not None
            ref = resolve_model(d.model)
            r = DenseRetriever(
                loaded if loaded is not None else ref,
                reference=ref if loaded is not None else None,
                batch_size=d.batch_size,
                max_seq_length=d.max_seq_length,
                precision=d.precision,
                with_title=cfg.with_title,
                device=self._device(),
            )
            self._models[kind] = r.encoder.model
            return r
        from korag.retrieval.sparse import SparseRetriever

        s = cfg.sparse
        assert s is not None
        r = SparseRetriever(
            loaded if loaded is not None else s.model,
            reference=s.model if loaded is not None else None,
            batch_size=s.batch_size,
            with_title=cfg.with_title,
            device=self._device(),
        )
        self._models[kind] = r.model
        return r

    def search(
        self,
        query: str,
        k: int = 10,
        *,
        retriever: str | None = None,
        weights: Sequence[float] | None = None,
        rerank: RerankSettings | str | bool | None = None,
    ) -> list[Hit]:
        """The top-`k` passages for `query`, with file, pages and text."""
        return self.batch_search([query], k, retriever=retriever, weights=weights, rerank=rerank)[0]

    def batch_search(
        self,
        queries: Sequence[str],
        k: int = 10,
        *,
        retriever: str | None = None,
        weights: Sequence[float] | None = None,
        rerank: RerankSettings | str | bool | None = None,
    ) -> list[list[Hit]]:
        """The top-`k` passages for each query (all from one generation, even while a writer
        publishes the next), reordered by a cross-encoder when `rerank` says so (None: the
        collection's reranker, if it has one; False: none; a reranker directory)."""
        state = self._current()
        r = self._reranked(state, self._retriever(state, retriever, weights), rerank)
        ranking = r.search(list(queries), k=k)
        return ranking_hits(ranking, state.passages)

    def rank(
        self,
        queries: Queries | Sequence[str],
        k: int = 10,
        *,
        retriever: str | None = None,
        rerank: RerankSettings | str | bool | None = None,
    ) -> Ranking:
        """The ranking of passage ids for `queries` (what evaluation scores)."""
        state = self._current()
        return self._reranked(state, self._retriever(state, retriever), rerank).search(queries, k=k)

    def _reranked(self, state: _State, base, rerank: RerankSettings | str | bool | None):
        """`base` behind the cross-encoder `rerank` names: None → the collection's own
        (`config.rerank`, if any), False → none, a model path or `RerankSettings` → that one
        (loaded once per instance)."""
        if rerank is None or rerank is True:
            wanted = rerank is True
            rerank = self.config.rerank
            if rerank is None and wanted:
                raise ConfigError(f"collection {self.name!r} has no reranker: give one (--rerank DIR)")
        if not rerank:
            return base
        settings = RerankSettings(model=rerank) if isinstance(rerank, str) else rerank
        from korag.retrieval.rerank import CrossEncoderReranker, RerankingRetriever

        key = f"rerank:{settings.model}:{settings.batch_size}:{settings.windows}"
        if key not in self._models:
            self._models[key] = CrossEncoderReranker(
                settings.model, batch_size=settings.batch_size, device=self._device(), windows=settings.windows
            )
        return RerankingRetriever(
            base, self._models[key], rerank_k=settings.k, blend=settings.blend, corpus=state.passages
        )

    # -- asking -------------------------------------------------------------------------------
    def reader(self, spec: str = "gemma3-270m", **options: Any) -> Reader:
        """The reader of `spec` (see `make_reader`), loaded once per instance and spec."""
        from korag.collections.ask import make_reader

        key = json.dumps([spec, options], sort_keys=True, default=str)
        if key not in self._readers:
            self._readers[key] = make_reader(spec, device=self.device, **options)
        return self._readers[key]

    def ask_stream(
        self,
        question: str,
        *,
        k: int = 3,
        retriever: str | None = None,
        reader: Reader | str = "gemma3-270m",
        rerank: RerankSettings | str | bool | None = None,
    ) -> AskStream:
        """Retrieve `k` passages and start answering: the returned `AskStream` has the sources
        at once and yields the answer in pieces; its `answer` is complete when iteration ends."""
        from korag.collections.ask import AskStream

        if not question.strip():
            raise ConfigError("the question is empty")
        if k < 1:
            raise ConfigError(f"k must be at least 1 (got {k})")
        chosen = self.reader(reader) if isinstance(reader, str) else reader
        t0 = time.perf_counter()
        hits = self.search(question, k, retriever=retriever, rerank=rerank)
        timings = {"retrieve_seconds": time.perf_counter() - t0}
        return AskStream(question, hits, chosen, self.config.resolve(retriever), timings)

    def ask(
        self,
        question: str,
        *,
        k: int = 3,
        retriever: str | None = None,
        reader: Reader | str = "gemma3-270m",
        rerank: RerankSettings | str | bool | None = None,
    ) -> Answer:
        """Retrieve `k` passages and answer from them, citing them (`korag ask`)."""
        return self.ask_stream(question, k=k, retriever=retriever, reader=reader, rerank=rerank).result()

    def member_rankings(self, queries: Queries | Sequence[str], depth: int = 100) -> list[Ranking]:
        """Each hybrid member's ranking of `queries` (what adaptive fusion is fitted on)."""
        state = self._current()
        if self.config.engine.kind == "milvus":
            return [self._milvus_retriever(state, m, None).search(queries, k=depth) for m in self.config.retrievers()]
        return [self._member(state, m).search(queries, k=depth) for m in self.config.retrievers()]

    def set_fusion(self, fusion: FusionSettings) -> None:
        """Replace the hybrid's fusion settings (they change no index) and save them, under the
        writer lock so a concurrent add keeps them."""
        with self._writing():
            path = self.root / CONFIG_FILE
            info = json.loads(path.read_text(encoding="utf-8"))
            config = self.config.model_copy(update={"fusion": fusion})
            info["config"] = config.model_dump(mode="json")
            atomic.write_json(path, info)
            self.config = config

    # -- writing -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _writing(self) -> Iterator[_State]:
        """Hold the writer lock, clean up what a killed writer left, and yield a private copy of
        the current generation to change: readers keep the published one until `_publish`
        swaps it, so they never see an index half-changed."""
        from filelock import FileLock, Timeout

        lock = FileLock(str(self.root / LOCK_FILE))
        try:
            lock.acquire(timeout=0.2)
        except Timeout:
            log.info("collection %s is being changed by another process; waiting for it", self.name)
            lock.acquire()
        try:
            self._clean_leftovers()
            state = self._load_state(self.head())  # under the lock: no other writer moves HEAD now
            if self.config.engine.kind == "milvus":
                self._engine().recover(set(state.keys().values()))
            yield state
        finally:
            lock.release()

    def _clean_leftovers(self) -> None:
        """Remove temporary generations of killed writers and generations older than the
        previous one (called under the lock)."""
        for stale in self.root.glob(f".{HEAD_FILE}.*.tmp"):  # a HEAD write that never finished
            stale.unlink(missing_ok=True)
        gens = self.root / GENS_DIR
        current = self.head()
        for p in gens.iterdir():
            m = _GEN.match(p.name)
            if (m and int(m.group(1)) < current - 1) or (not m and p.name.startswith(".")):
                shutil.rmtree(p, ignore_errors=True)

    def _publish(self, state: _State, documents: dict[str, DocumentEntry], passages: Corpus) -> int:
        """Write the next generation from the in-memory retrievers and point HEAD at it."""
        gen = state.generation + 1
        directory = self.root / GENS_DIR / _gen_name(gen)
        retrievers = {k: r for k, r in state.retrievers.items() if k in self.config.retrievers()}
        _write_generation(directory, documents, passages, retrievers if len(passages) else {})
        atomic.write_text(self.root / HEAD_FILE, _gen_name(gen) + "\n")
        for r in retrievers.values():
            r.attach_corpus(passages)  # the generation's passages, not a copy per retriever
        # one assignment: a reader holds either the old state or this one
        self._state = _State(gen, directory, documents, passages, retrievers if len(passages) else {})
        self._clean_leftovers()
        return gen

    def add(
        self,
        paths: Sequence[str | Path],
        *,
        strict: bool = False,
        workers: int | None = None,
        show_progress: bool = False,
        origin: str | None = None,
    ) -> AddReport:
        """Add files and folders (searched recursively): new documents are added, changed ones
        replaced, identical ones left alone; files korag cannot read are skipped with their
        reason (with `strict`, the first one stops the call and nothing changes). `origin`
        labels where files came from when their paths do not last (``upload``)."""
        t0 = time.perf_counter()
        report = AddReport()
        files = self._gather(paths, report, strict)
        with self._writing() as state:
            todo = self._changed_files(files, state, report)
            jobs = [(p, doc_id) for p, doc_id, _ in todo]
            loaded = load_files(jobs, chunk=self.config.chunk, workers=workers, show_progress=show_progress)
            new_docs: list[tuple[DocumentEntry, list[Document]]] = []
            for (path, doc_id, sha), result in zip(todo, loaded, strict=True):
                if isinstance(result, DataError):
                    if strict:
                        raise result
                    report.skipped.append((str(path), str(result)))
                    continue
                passages, load_report = result
                report.warnings.extend(load_report.warnings)
                entry = DocumentEntry(
                    id=doc_id,
                    sha256=sha,
                    passages=len(passages),
                    title=passages[0].title if passages else "",
                    path=f"{origin}:{path.name}" if origin else str(path.resolve()),
                    bytes=path.stat().st_size,
                    pages=load_report.pages.get(path.name),
                    thin_pages=load_report.thin_pages.get(path.name, []),
                    added=_now(),
                )
                new_docs.append((entry, [_passage(p, doc_id, path.name) for p in passages]))
            self._apply(state, new_docs, report, show_progress)
        report.seconds = time.perf_counter() - t0
        for name, reason in report.skipped:
            log.debug("skipped %s: %s", name, reason)  # returned in the report; the caller shows it
        return report

    def add_texts(self, documents: Sequence[Document], *, show_progress: bool = False) -> AddReport:
        """Add documents given as text (id, text, title): the API's and the server's way in.
        Ids name documents as file names do; the same id with other text replaces it."""
        import hashlib

        from korag.data.chunk import chunk_document

        t0 = time.perf_counter()
        report = AddReport()
        seen: set[str] = set()
        with self._writing() as state:
            new_docs = []
            for d in documents:
                if not d.id or d.id in seen:
                    report.skipped.append((d.id, "an empty or repeated document id"))
                    continue
                seen.add(d.id)
                sha = hashlib.sha256(f"{d.title}\0{d.text}".encode()).hexdigest()
                old = state.documents.get(d.id)
                if old is not None and old.sha256 == sha:
                    report.unchanged.append(d.id)
                    continue
                if not d.text.strip():
                    report.skipped.append((d.id, "no text"))
                    continue
                pieces = chunk_document(Document(d.id, d.text, d.title, dict(d.meta)), self.config.chunk)
                entry = DocumentEntry(d.id, sha, len(pieces), d.title, added=_now(), bytes=len(d.text.encode()))
                new_docs.append((entry, [_passage(p, d.id, d.id) for p in pieces]))
            self._apply(state, new_docs, report, show_progress)
        report.seconds = time.perf_counter() - t0
        return report

    def _gather(self, paths: Sequence[str | Path], report: AddReport, strict: bool) -> list[Path]:
        """The files named or found under the folders named; what cannot be a document is
        skipped (or, `strict`, refused) with its reason."""
        files: list[Path] = []
        for raw in paths:
            p = Path(raw).expanduser()
            problem = None
            if p.is_dir():
                found = list_documents(p)
                if not found:
                    problem = f"no supported files ({', '.join(DOCUMENT_SUFFIXES)})"
                files.extend(found)
            elif not p.exists():
                problem = "no such file or folder"
            elif p.suffix.lower() not in DOCUMENT_SUFFIXES:
                kind = p.suffix or "files without an extension"
                problem = f"korag cannot read {kind} (it reads {', '.join(DOCUMENT_SUFFIXES)})"
            else:
                files.append(p)
            if problem:
                if strict:
                    raise DataError(p, problem)
                report.skipped.append((str(p), problem))
        return files

    def _changed_files(self, files: list[Path], state: _State, report: AddReport) -> list[tuple[Path, str, str]]:
        """(path, document id, hash) of the files to read: not yet stored or changed."""
        first: dict[str, Path] = {}
        todo = []
        for p in files:
            doc_id = p.name
            if doc_id in first:
                if first[doc_id].resolve() != p.resolve():
                    why = f"has the same file name as {first[doc_id]} (documents are named by file name; rename one)"
                    report.skipped.append((str(p), why))
                continue
            first[doc_id] = p
            try:
                sha = file_sha256(p)
            except OSError as exc:
                report.skipped.append((str(p), f"cannot be read ({exc.strerror or exc})"))
                continue
            old = state.documents.get(doc_id)
            if old is not None and old.sha256 == sha:
                report.unchanged.append(doc_id)
                continue
            todo.append((p, doc_id, sha))
        return todo

    def _apply(
        self,
        state: _State,
        new_docs: list[tuple[DocumentEntry, list[Document]]],
        report: AddReport,
        show_progress: bool,
    ) -> None:
        """Replace and add the documents in every index and publish the next generation."""
        if not new_docs:
            report.generation = state.generation
            return
        documents = dict(state.documents)
        replaced = [e.id for e, _ in new_docs if e.id in documents]
        gone = self._passage_ids(state, replaced)
        keep = [i for i, pid in enumerate(state.passages.ids) if pid not in gone]
        passages = state.passages.subset(keep) if gone else state.passages
        fresh = Corpus.from_documents([p for _, ps in new_docs for p in ps])
        for entry, _ in new_docs:
            documents.pop(entry.id, None)  # a replaced document moves to the end, as its passages do
            documents[entry.id] = entry
            (report.replaced if entry.id in replaced else report.added).append(entry.id)
        passages = passages.concat(fresh) if len(passages) else fresh
        self._update_indexes(state, gone, fresh, len(passages), show_progress)
        report.passages_added, report.passages_removed = len(fresh), len(gone)
        self._change(state, documents, passages, gone, fresh, report, show_progress)

    def _change(
        self,
        state: _State,
        documents: dict[str, DocumentEntry],
        passages: Corpus,
        gone: set[str],
        fresh: Corpus,
        report: AddReport | RemoveReport,
        show_progress: bool = False,
    ) -> None:
        """Publish the next generation (with a Milvus engine: its rows written first and the
        old ones deleted after, see `korag.collections.milvus_engine`)."""
        if self.config.engine.kind != "milvus":
            report.generation = self._publish(state, documents, passages)
            return
        from korag.collections.milvus_engine import row_key

        old_keys = state.keys()
        gone_keys = [old_keys[pid] for pid in sorted(gone)]
        metas = fresh.metas or [{}] * len(fresh)
        fresh_keys = [row_key(pid, documents[m["document"]].sha256) for pid, m in zip(fresh.ids, metas, strict=True)]
        engine = self._engine()
        bm25 = state.retrievers.get("bm25")
        engine.write(fresh, fresh_keys, gone_keys, self._encoder_members(), bm25, show_progress=show_progress)
        report.generation = self._publish(state, documents, passages)
        engine.finish(gone_keys, bm25 if len(passages) else None, self._state.keys() if self._state else {})

    def _update_indexes(self, state: _State, gone: set[str], fresh: Corpus, total: int, show_progress: bool) -> None:
        """Delete `gone` from and add `fresh` to every retriever (built new when the
        collection was empty or is left empty)."""
        for kind in self._local_kinds():
            if total == 0:
                state.retrievers.pop(kind, None)
                continue
            if len(state.passages) == 0 or len(state.passages) == len(gone):
                r = self._new_member(kind)
                if len(fresh):
                    r.index(fresh, show_progress=show_progress)
                state.retrievers[kind] = r
                continue
            r = self._member(state, kind)
            if gone:
                r.delete(sorted(gone))
            if len(fresh):
                r.add(fresh, show_progress=show_progress)

    @staticmethod
    def _passage_ids(state: _State, doc_ids: Sequence[str]) -> set[str]:
        wanted = set(doc_ids)
        metas = state.passages.metas or [{}] * len(state.passages)
        return {pid for pid, m in zip(state.passages.ids, metas, strict=True) if m.get("document") in wanted}

    def remove(self, doc_ids: Sequence[str]) -> RemoveReport:
        """Remove documents (by file name, or a path whose file name is one) and all their
        passages from every index."""
        t0 = time.perf_counter()
        report = RemoveReport()
        with self._writing() as state:
            names = [Path(d).name if d not in state.documents else d for d in doc_ids]
            report.removed = [n for n in dict.fromkeys(names) if n in state.documents]
            report.missing = [d for d, n in zip(doc_ids, names, strict=True) if n not in state.documents]
            if report.removed:
                gone = self._passage_ids(state, report.removed)
                keep = [i for i, pid in enumerate(state.passages.ids) if pid not in gone]
                passages = state.passages.subset(keep)
                documents = {k: v for k, v in state.documents.items() if k not in set(report.removed)}
                self._update_indexes(state, gone, Corpus.from_documents([]), len(passages), False)
                report.passages_removed = len(gone)
                self._change(state, documents, passages, gone, Corpus.from_documents([]), report)
            else:
                report.generation = state.generation
        report.seconds = time.perf_counter() - t0
        return report


def _passage(p: Document, doc_id: str, file: str) -> Document:
    """A passage as the collection stores it: its document, file and character offsets in meta."""
    meta = {"char_start": 0, "char_end": len(p.text)} | {
        k: v for k, v in p.meta.items() if k not in ("source", "source_id")
    }
    return Document(p.id, p.text, p.title, {**meta, "document": doc_id, "file": file})


def _write_generation(directory: Path, documents: dict[str, DocumentEntry], passages: Corpus, retrievers: dict) -> None:
    """One complete generation, atomically (the directory appears whole or not at all)."""
    from korag.data.beir import write_corpus_jsonl

    with atomic.atomic_directory(directory) as tmp:
        write_corpus_jsonl(passages, tmp / PASSAGES_FILE)
        for kind, r in retrievers.items():
            r.save(tmp / kind, with_corpus=False)
        atomic.write_json(tmp / DOCUMENTS_FILE, {"documents": [d.to_dict() for d in documents.values()]})


def _read_passages(path: Path) -> Corpus:
    if not path.stat().st_size:
        return Corpus.from_documents([])
    from korag.data.jsonl import read_corpus_jsonl

    return read_corpus_jsonl(path, id_field_name="_id", text_field="text", title_field="title")


def resolve_model(spec: str) -> str:
    """A dense model spec as a loadable path: 'e5-small' is built offline once into korag's
    model cache; anything else is a directory or a hub id, as given."""
    from korag.models.offline import OFFLINE_MODELS, offline_model_dir

    return str(offline_model_dir(spec)) if spec in OFFLINE_MODELS else spec
