"""A user's documents as a lasting, updatable collection: passages with their file, pages and
offsets, the indexes of the retrievers chosen at creation, search and cited answers.

    from korag.collections import Collection, CollectionConfig

    c = Collection.create("~/korag/papers", CollectionConfig(name="papers"))
    c.add(["~/papers"])                   # PDFs, text, Markdown, HTML; unreadable files skipped
    c.search("모델 경량화 방법은?", k=5)   # passages with file, pages and text
    c.ask("모델 경량화 방법은?")           # an answer citing its passages as [n]
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# loaded on first use (PEP 562): the CLI reads `korag.collections.config` at start-up, and
# importing the package must not pull in the store, the readers and NumPy for that
_WHERE = {
    "Answer": "korag.collections.ask",
    "make_reader": "korag.collections.ask",
    "CollectionConfig": "korag.collections.config",
    "DenseSettings": "korag.collections.config",
    "SparseSettings": "korag.collections.config",
    "AddReport": "korag.collections.store",
    "Collection": "korag.collections.store",
    "DocumentEntry": "korag.collections.store",
    "RemoveReport": "korag.collections.store",
    "collection_path": "korag.collections.store",
}

__all__ = [
    "AddReport",
    "Answer",
    "Collection",
    "CollectionConfig",
    "DenseSettings",
    "DocumentEntry",
    "RemoveReport",
    "SparseSettings",
    "collection_path",
    "make_reader",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'korag.collections' has no attribute {name!r}")


if TYPE_CHECKING:
    from korag.collections.ask import Answer, make_reader
    from korag.collections.config import CollectionConfig, DenseSettings, SparseSettings
    from korag.collections.store import AddReport, Collection, DocumentEntry, RemoveReport, collection_path
