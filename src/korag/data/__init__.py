"""Loading, cleaning, chunking and describing data; the schema every stage shares.

The names below load on first use (PEP 562): `korag.data.chunk`'s settings are read when the
CLI starts, and importing the package must not pull in the schema's NumPy for that.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "as_retrieval_set": "korag.data.load",
    "corpus_of": "korag.data.load",
    "detect_format": "korag.data.load",
    "load": "korag.data.load",
    **dict.fromkeys(
        ("Corpus", "Document", "QAExample", "QASet", "Qrels", "Queries", "Query", "Ranking", "RetrievalSet"),
        "korag.data.schema",
    ),
}

__all__ = [
    "Corpus",
    "Document",
    "QAExample",
    "QASet",
    "Qrels",
    "Queries",
    "Query",
    "Ranking",
    "RetrievalSet",
    "as_retrieval_set",
    "corpus_of",
    "detect_format",
    "load",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'korag.data' has no attribute {name!r}")


if TYPE_CHECKING:
    from korag.data.load import as_retrieval_set, corpus_of, detect_format, load
    from korag.data.schema import (
        Corpus,
        Document,
        QAExample,
        QASet,
        Qrels,
        Queries,
        Query,
        Ranking,
        RetrievalSet,
    )
