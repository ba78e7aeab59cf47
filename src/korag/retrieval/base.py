"""The `Retriever` protocol every retriever implements, and loading a saved retriever by type."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from korag.data.schema import Corpus, Queries, Ranking
from korag.errors import ModelError

RETRIEVER_FILE = "retriever.json"
CORPUS_FILE = "corpus.jsonl"


@runtime_checkable
class Retriever(Protocol):
    """Indexes a corpus and returns the top-k documents for queries."""

    name: str

    def index(self, corpus: Corpus, *, show_progress: bool = False) -> None:
        """Build the index over `corpus` (replacing any previous one)."""
        ...

    def search(self, queries: Queries | Sequence[str], k: int = 10, *, show_progress: bool = False) -> Ranking:
        """Top-`k` documents for every query, best first."""
        ...

    def save(self, path: str | Path) -> None:
        """Write the retriever and its index to the directory `path` (atomically)."""
        ...


def as_queries(queries: Queries | Sequence[str]) -> Queries:
    """Accept plain strings wherever queries are expected."""
    if isinstance(queries, Queries):
        return queries
    if isinstance(queries, str):
        return Queries.from_texts([queries])
    return Queries.from_texts(list(queries))


_LOADERS: dict[str, Callable[[Path, bool], Any]] = {}


def register_retriever(kind: str, loader: Callable[[Path, bool], Any]) -> None:
    """Let `load_retriever` open directories whose ``retriever.json`` names `kind`."""
    _LOADERS[kind] = loader


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
    from korag.retrieval import bm25, dense, fusion, sparse  # noqa: F401  (register the built-in loaders)

    info = read_retriever_info(path)
    kind = info.get("type")
    if kind not in _LOADERS:
        raise ModelError(f"{path}: unknown retriever type {kind!r}")
    return _LOADERS[kind](Path(path), mmap)
