"""The `Retriever` protocol every retriever implements, and loading a saved retriever by type."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from korag import __version__, atomic
from korag.data.schema import Corpus, Queries, Ranking
from korag.errors import ModelError
from korag.retrieval.hits import PassageSearchMixin

RETRIEVER_FILE = "retriever.json"
CORPUS_FILE = "corpus.jsonl"


@runtime_checkable
class Retriever(Protocol):
    """Indexes a corpus and returns the top-k documents for queries."""

    name: str
    timings: dict[str, float]

    def index(self, corpus: Corpus, *, show_progress: bool = False) -> None:
        """Build the index over `corpus` (replacing any previous one)."""
        ...

    def search(self, queries: Queries | Sequence[str], k: int = 10, *, show_progress: bool = False) -> Ranking:
        """Top-`k` documents for every query, best first."""
        ...

    def save(self, path: str | Path) -> None:
        """Write the retriever and its index to the directory `path` (atomically)."""
        ...

    def describe(self) -> dict[str, Any]:
        """What this retriever is: ``type``, a short ``name`` and the settings that reproduce it."""
        ...

    def corpus(self) -> Corpus | None:
        """The indexed documents when this process knows them (texts come back with results)."""
        ...


class RetrieverBase(PassageSearchMixin):
    """The half every retriever shares: timings of the last index/search, the indexed corpus,
    `describe()`, and the ``retriever.json`` header its `save` writes.

    Adding a retriever: subclass this with a class attribute `name`, implement ``index``,
    ``search``, ``save`` (calling `write_header`) and a ``load`` classmethod, override
    `settings()` (and `label()` when the type alone does not say which retriever it is), and add
    ``"<name>": "module:Class"`` to `LOADERS` so `load_retriever` opens saved ones.
    """

    name: str = ""
    FORMAT_VERSION = 1

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._corpus: Corpus | None = None
        self._corpus_dir: Path | None = None  # a saved index whose passages are read on first use

    def corpus(self) -> Corpus | None:
        """The indexed corpus, as passed to `index` in this process (or kept beside a saved index,
        read the first time it is asked for)."""
        if self._corpus is None and self._corpus_dir is not None:
            self._corpus = read_indexed_corpus(self._corpus_dir)
            self._corpus_dir = None
        return self._corpus

    def attach_corpus(self, corpus: Corpus) -> None:
        """Use `corpus` as the indexed documents (same ids, same order), kept elsewhere — a
        collection's passages — instead of a copy saved beside the index."""
        self._corpus, self._corpus_dir = corpus, None

    def settings(self) -> dict[str, Any]:
        """The settings that reproduce this retriever (what ``retriever.json`` records)."""
        return {}

    def label(self) -> str:
        """A short name for tables (the tokenizer of a BM25, the model of a dense retriever, …)."""
        return self.name

    def describe(self) -> dict[str, Any]:
        """``type``, ``name`` and the settings."""
        return {"type": self.name, "name": self.label(), **self.settings()}

    def header(self, **fields: Any) -> dict[str, Any]:
        """The common fields of ``retriever.json`` plus this retriever's `fields`."""
        return {"type": self.name, "format_version": self.FORMAT_VERSION, "korag_version": __version__, **fields}

    def write_header(self, directory: Path, *, indent: int | None = 2, **fields: Any) -> None:
        """Write ``retriever.json`` into a directory being saved (the last file of a save)."""
        atomic.write_json(directory / RETRIEVER_FILE, self.header(**fields), indent=indent)


def as_queries(queries: Queries | Sequence[str]) -> Queries:
    """Accept plain strings wherever queries are expected."""
    if isinstance(queries, Queries):
        return queries
    if isinstance(queries, str):
        return Queries.from_texts([queries])
    return Queries.from_texts(list(queries))


# The retriever types `load_retriever` opens, as "module:Class" (imported only when needed, so
# importing korag imports no retriever and nothing registers itself on import).
LOADERS: dict[str, str] = {
    "bm25": "korag.retrieval.bm25:BM25Retriever",
    "dense": "korag.retrieval.dense:DenseRetriever",
    "sparse": "korag.retrieval.sparse:SparseRetriever",
    "hybrid": "korag.retrieval.fusion:HybridRetriever",
}


def read_retriever_info(path: str | Path, kind: str | None = None) -> dict[str, Any]:
    """The ``retriever.json`` of a saved retriever directory (of type `kind`, when given)."""
    info_path = Path(path) / RETRIEVER_FILE
    if not info_path.is_file():
        raise ModelError(f"{path}: not a saved korag retriever (no {RETRIEVER_FILE})")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    if kind is not None and info.get("type") != kind:
        raise ModelError(f"{path}: holds a {info.get('type')!r} retriever, not {kind}")
    return info


def write_indexed_corpus(corpus: Corpus | None, directory: Path) -> None:
    """Keep the indexed documents beside a saved index, so search results come back with text."""
    if corpus is not None:
        from korag.data.beir import write_corpus_jsonl

        write_corpus_jsonl(corpus, directory / CORPUS_FILE)


def read_indexed_corpus(directory: Path) -> Corpus | None:
    """The documents `write_indexed_corpus` kept, if any."""
    if not (directory / CORPUS_FILE).is_file():
        return None
    from korag.data.jsonl import read_corpus_jsonl

    return read_corpus_jsonl(directory / CORPUS_FILE, id_field_name="_id", text_field="text", title_field="title")


def load_retriever(path: str | Path, *, mmap: bool = True) -> Retriever:
    """Open any saved retriever, dispatching on the type recorded in ``retriever.json``."""
    import importlib

    info = read_retriever_info(path)
    kind = info.get("type")
    if kind not in LOADERS:
        raise ModelError(f"{path}: unknown retriever type {kind!r}")
    module, cls = LOADERS[kind].split(":")
    return getattr(importlib.import_module(module), cls).load(Path(path), mmap=mmap)
