"""A user's documents as a lasting, updatable collection: passages with their file, pages and
offsets, the indexes of the retrievers chosen at creation, search and cited answers.

    from korag.collections import Collection, CollectionConfig

    c = Collection.create("~/korag/papers", CollectionConfig(name="papers"))
    c.add(["~/papers"])                   # PDFs, text, Markdown, HTML; unreadable files skipped
    c.search("모델 경량화 방법은?", k=5)   # passages with file, pages and text
    c.ask("모델 경량화 방법은?")           # an answer citing its passages as [n]
"""

from korag.collections.ask import Answer, make_reader
from korag.collections.config import CollectionConfig, DenseSettings, SparseSettings
from korag.collections.store import AddReport, Collection, DocumentEntry, RemoveReport, collection_path

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
