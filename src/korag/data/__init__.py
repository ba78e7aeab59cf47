"""Loading, cleaning, chunking and describing data; the schema every stage shares."""

from korag.data.load import as_retrieval_set, corpus_of, detect_format, load
from korag.data.schema import Corpus, Document, QAExample, QASet, Qrels, Queries, Query, Ranking, RetrievalSet

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
