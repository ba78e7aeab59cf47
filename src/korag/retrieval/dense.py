"""Dense retrieval: a bi-encoder (E5-style prefixes) over an exact in-process vector index.

`DenseRetriever` implements the `Retriever` protocol (`index`, `search` → `Ranking`, `save`,
`load`) and the small inference API of the project it replaces: `encode_query(s)`,
`encode_passage(s)`, `similarity`, and `search_passages` / `batch_search` returning ranked
passages with their text and score.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from korag import atomic
from korag.data.schema import Corpus, Queries, Ranking
from korag.errors import DataError, ModelError
from korag.models.encoder import DenseEncoder, Precision
from korag.retrieval.base import (
    RetrieverBase,
    as_queries,
    read_retriever_info,
    write_indexed_corpus,
)
from korag.retrieval.hits import Hit
from korag.retrieval.vector_index import VectorIndex


class DenseRetriever(RetrieverBase):
    """Bi-encoder retrieval with exact inner-product search over normalised embeddings."""

    name = "dense"

    def __init__(
        self,
        model: str | Path | Any,
        *,
        query_prefix: str | None = None,
        passage_prefix: str | None = None,
        batch_size: int = 32,
        max_seq_length: int | None = None,
        precision: Precision = "auto",
        with_title: bool = True,
        device: str = "cpu",
        reference: str | None = None,
    ) -> None:
        super().__init__()
        self.encoder = DenseEncoder(
            model,
            reference=reference,
            query_prefix=query_prefix,
            passage_prefix=passage_prefix,
            batch_size=batch_size,
            max_seq_length=max_seq_length,
            precision=precision,
            device=device,
        )
        self.with_title = with_title
        self._index: VectorIndex | None = None

    # the inference API -------------------------------------------------------------------
    def encode_queries(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Normalised query embeddings."""
        return self.encoder.encode_queries(texts, show_progress=show_progress)

    def encode_documents(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Normalised document (passage) embeddings."""
        return self.encoder.encode_documents(texts, show_progress=show_progress)

    def encode_query(self, text: str) -> np.ndarray:
        """One normalised query embedding."""
        return self.encoder.encode_query(text)

    def encode_document(self, text: str) -> np.ndarray:
        """One normalised document (passage) embedding."""
        return self.encoder.encode_document(text)

    similarity = staticmethod(DenseEncoder.similarity)

    def encode_passages(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Deprecated name of `encode_documents` (korag ≤ 0.1; sentence-transformers says "document")."""
        warnings.warn("encode_passages is now encode_documents", DeprecationWarning, stacklevel=2)
        return self.encode_documents(texts, show_progress=show_progress)

    def encode_passage(self, text: str) -> np.ndarray:
        """Deprecated name of `encode_document`."""
        warnings.warn("encode_passage is now encode_document", DeprecationWarning, stacklevel=2)
        return self.encode_document(text)

    # the Retriever protocol --------------------------------------------------------------
    def index(self, corpus: Corpus, *, show_progress: bool = False) -> None:
        """Encode every document (title + text by default) into the vector index."""
        if len(corpus) == 0:
            raise DataError(None, "cannot index an empty corpus")
        t0 = time.perf_counter()
        vectors = self.encode_documents(corpus.contents(self.with_title), show_progress=show_progress)
        self.timings["encode_passages_seconds"] = time.perf_counter() - t0
        self._index = VectorIndex(vectors, corpus.ids)
        self._corpus = corpus

    def add(self, corpus: Corpus, *, show_progress: bool = False) -> None:
        """Encode and add documents (equal to indexing all of them at once)."""
        if len(corpus) == 0:
            return
        if self._index is None:
            self.index(corpus, show_progress=show_progress)
            return
        vectors = self.encode_documents(corpus.contents(self.with_title), show_progress=show_progress)
        self._index.add(vectors, corpus.ids)
        known = self.corpus()
        self._corpus = known.concat(corpus) if known is not None else None

    def delete(self, doc_ids: Sequence[str] | str) -> int:
        """Remove documents by id (unknown ids are an error); returns how many were removed."""
        ids = [doc_ids] if isinstance(doc_ids, str) else list(doc_ids)
        removed = self._require_index().delete(ids)
        known = self.corpus()
        if known is not None and removed:
            gone = set(ids)
            self._corpus = known.subset(i for i, d in enumerate(known.ids) if d not in gone)
        return removed

    def index_vectors(self, vectors: np.ndarray, corpus: Corpus) -> None:
        """Use passage embeddings computed elsewhere (e.g. cached) for `corpus`."""
        self._index = VectorIndex(np.asarray(vectors, dtype=np.float32), corpus.ids)
        self._corpus = corpus

    @property
    def doc_ids(self) -> list[str]:
        """Ids of the indexed documents."""
        return self._require_index().ids

    def _require_index(self) -> VectorIndex:
        if self._index is None:
            raise ModelError("the index is empty: call index(corpus) first")
        return self._index

    def search(self, queries: Queries | Sequence[str], k: int = 10, *, show_progress: bool = False) -> Ranking:
        """Top-`k` documents per query by cosine similarity."""
        index = self._require_index()
        qs = as_queries(queries)
        t0 = time.perf_counter()
        q = self.encode_queries(qs.texts, show_progress=show_progress)
        t1 = time.perf_counter()
        idx, scores = index.search(q, k) if len(qs) else (np.empty((0, k), np.int64), np.empty((0, k), np.float32))
        self.timings.update(encode_queries_seconds=t1 - t0, search_seconds=time.perf_counter() - t1)
        return Ranking(qs.ids, idx, scores, index.ids)

    def settings(self) -> dict[str, Any]:
        """The encoder's settings."""
        return {"encoder": self.encoder.config(), "with_title": self.with_title}

    def label(self) -> str:
        """The model's name."""
        return str(self.encoder.model_name)

    def save(self, path: str | Path, *, overwrite: bool = True, with_corpus: bool = True) -> None:
        """Vectors (memory-mappable), the corpus (unless kept elsewhere) and the encoder settings;
        an in-memory model is saved inside the directory, a model given by path or hub id is
        referenced."""
        index = self._require_index()
        with atomic.atomic_directory(path, overwrite=overwrite) as tmp:
            index.save(tmp / "vectors")
            if with_corpus:
                write_indexed_corpus(self.corpus(), tmp)
            config = self.encoder.config()
            if not config["model"]:
                self.encoder.model.save(str(tmp / "model"))
                config["model"] = "model"  # relative to the index directory
            elif Path(config["model"]).exists():
                config["model"] = str(Path(config["model"]).resolve())
            self.write_header(tmp, encoder=config, with_title=self.with_title, num_docs=len(index), dim=index.dim)

    @classmethod
    def load(cls, path: str | Path, *, mmap: bool = True, model: Any = None, device: str = "cpu") -> DenseRetriever:
        """Open a saved dense index (the encoder model is loaded from where it was saved, unless
        `model` is the already loaded model it references)."""
        p = Path(path)
        info = read_retriever_info(p, cls.name)
        enc = info["encoder"]
        model_ref = enc["model"]
        reference = model_ref if model is not None and model_ref != "model" else None
        if model is None:
            model = p / model_ref if model_ref == "model" else model_ref
        r = cls(
            model,
            query_prefix=enc["query_prefix"],
            passage_prefix=enc["passage_prefix"],
            batch_size=enc["batch_size"],
            max_seq_length=enc["max_seq_length"],
            precision=enc["precision"],
            with_title=info["with_title"],
            device=device,
            reference=reference,
        )
        r._index = VectorIndex.load(p / "vectors", mmap=mmap)
        r._corpus_dir = p
        return r


__all__ = ["DenseRetriever", "Hit"]
