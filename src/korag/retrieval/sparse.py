"""Learned sparse retrieval (SPLADE, doc-only or bi-encoder) over an embedded inverted index.

`SparseRetriever` implements the `Retriever` protocol. Documents are encoded by the model's
transformer and sparse head (optionally pruned as OpenSearch's ingest processor would), queries
either by the same encoder (bi-encoder) or — doc-only models — by tokenising and looking up the
trained per-token weights in numpy: no transformer, no torch call at query time.

`efficiency()` reports what sentence-transformers' sparse evaluator reports — average active
dimensions of queries and documents and FLOPS, the expected number of multiplications per
(query, document) pair, Σ_t P(q_t ≠ 0)·P(d_t ≠ 0) — plus the index's size on disk.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from korag import atomic
from korag.data.schema import Corpus, Queries, Ranking
from korag.errors import DataError, ModelError
from korag.models.device import bf16_autocast, wants_bf16
from korag.retrieval.base import (
    RetrieverBase,
    as_queries,
    read_retriever_info,
    write_indexed_corpus,
)
from korag.retrieval.inverted_index import InvertedIndex
from korag.retrieval.pruning import check_prune, prune

if TYPE_CHECKING:
    from korag.retrieval.expansion import QueryExpansion


def _torch_sparse_to_scipy(t) -> sp.csr_matrix:
    # sentence-transformers builds these with `to_sparse()`, so they are coalesced; `coalesce()`
    # itself is unavailable on inference-mode tensors
    rows, cols = t._indices().cpu().numpy()
    return sp.csr_matrix((t._values().float().cpu().numpy(), (rows, cols)), shape=tuple(t.shape))


class SparseRetriever(RetrieverBase):
    """Sparse dot-product retrieval with a korag sparse model (see `korag.models.sparse`)."""

    name = "sparse"

    def __init__(
        self,
        model: str | Path | Any,
        *,
        batch_size: int = 16,
        max_seq_length: int | None = None,
        with_title: bool = True,
        prune_type: str = "none",
        prune_ratio: float | None = None,
        precision: str = "auto",
        device: str = "cpu",
        reference: str | None = None,
    ) -> None:
        from korag.models.sparse import load_sparse_encoder

        check_prune(prune_type, prune_ratio)
        super().__init__()
        if isinstance(model, str | Path):
            self.model_path: str | None = str(Path(model).resolve()) if Path(model).exists() else str(model)
            self.model = load_sparse_encoder(model, device=device)
        else:
            self.model_path = reference  # None: an in-memory model, saved with the index
            self.model = model
        if max_seq_length:
            self.model.max_seq_length = max_seq_length
        self.info = self.model.korag_info
        self.batch_size = batch_size
        self.with_title = with_title
        self.prune_type = prune_type
        self.prune_ratio = prune_ratio
        self.precision = precision
        self.device = device
        self.use_bf16 = wants_bf16(precision, device)
        self._query_weights: np.ndarray | None = None
        self._index: InvertedIndex | None = None
        self._doc_ids: list[str] = []
        self._last_queries: sp.csr_matrix | None = None

    # -- encoding ---------------------------------------------------------------------------
    @property
    def doc_only(self) -> bool:
        """Whether queries are encoded without the transformer."""
        return self.info.mode == "doc-only"

    def encode_documents(self, texts: Sequence[str], *, show_progress: bool = False) -> sp.csr_matrix:
        """Document vectors (documents × vocabulary), pruned as configured."""
        import torch

        with torch.inference_mode(), bf16_autocast(self.use_bf16, self.device):
            t = self.model.encode_document(
                list(texts), batch_size=self.batch_size, convert_to_sparse_tensor=True, show_progress_bar=show_progress
            )
        return prune(_torch_sparse_to_scipy(t), self.prune_type, self.prune_ratio)

    def encode_queries(
        self, texts: Sequence[str], *, show_progress: bool = False, expansion: QueryExpansion | None = None
    ) -> sp.csr_matrix:
        """Query vectors (queries × vocabulary); with an `expansion`, plus w × the vector of each
        dictionary synonym of the query (see `korag.retrieval.expansion`)."""
        if expansion is not None:
            q = self.encode_queries(texts, show_progress=show_progress)
            synonyms, weights = expansion.weight_matrix(texts)
            if not synonyms:
                return q
            return (q + weights @ self.encode_queries(synonyms)).tocsr()
        if not self.doc_only:
            import torch

            with torch.inference_mode(), bf16_autocast(self.use_bf16, self.device):
                t = self.model.encode_query(
                    list(texts), batch_size=self.batch_size, convert_to_sparse_tensor=True, show_progress_bar=False
                )
            return prune(_torch_sparse_to_scipy(t))
        from korag.models.sparse import document_tokenizer, query_weights

        if self._query_weights is None:
            self._query_weights = query_weights(self.model)
        tokenizer = document_tokenizer(self.model)
        ids = tokenizer(list(texts), add_special_tokens=False, truncation=True)["input_ids"]
        rows = np.repeat(np.arange(len(ids)), [len(x) for x in ids])
        cols = np.fromiter((i for x in ids for i in x), dtype=np.int64, count=len(rows))
        # a repeated query token counts once, as in OpenSearch's tokenizer and SparseStaticEmbedding
        presence = sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)), shape=(len(ids), self.info.vocab_size))
        presence.data[:] = 1.0
        return prune(presence.multiply(self._query_weights[None, :]).tocsr())

    # -- the Retriever protocol ---------------------------------------------------------------
    def index(self, corpus: Corpus, *, show_progress: bool = False) -> None:
        """Encode every document into the inverted index (replacing any previous one)."""
        if len(corpus) == 0:
            raise DataError(None, "cannot index an empty corpus")
        t0 = time.perf_counter()
        docs = self.encode_documents(corpus.contents(self.with_title), show_progress=show_progress)
        self.timings["encode_documents_seconds"] = time.perf_counter() - t0
        self._index = InvertedIndex.from_documents(docs)
        self._doc_ids = list(corpus.ids)
        self._corpus = corpus

    def add(self, corpus: Corpus, *, show_progress: bool = False) -> None:
        """Encode and add documents (equal to indexing all of them at once)."""
        if len(corpus) == 0:
            return
        if self._index is None:
            self.index(corpus, show_progress=show_progress)
            return
        self._index.add(self.encode_documents(corpus.contents(self.with_title), show_progress=show_progress))
        self._doc_ids = self._doc_ids + list(corpus.ids)
        known = self.corpus()
        self._corpus = known.concat(corpus) if known is not None else None

    def delete(self, doc_ids: Sequence[str] | str) -> int:
        """Remove documents by id (unknown ids are an error); returns how many were removed."""
        gone = {doc_ids} if isinstance(doc_ids, str) else set(doc_ids)
        unknown = gone - set(self._doc_ids)
        if unknown:
            raise DataError(None, f"document {sorted(unknown)[0]!r} is not in the index", field="id")
        positions = [i for i, d in enumerate(self._doc_ids) if d in gone]
        if positions:
            self._require_index().delete(positions)
            self._doc_ids = [d for d in self._doc_ids if d not in gone]
            known = self.corpus()
            if known is not None:
                self._corpus = known.subset(i for i, d in enumerate(known.ids) if d not in gone)
        return len(positions)

    def index_vectors(self, doc_vectors: sp.csr_matrix, corpus: Corpus) -> None:
        """Index document vectors computed elsewhere (e.g. once, then pruned several ways);
        this retriever's pruning is applied on top."""
        if doc_vectors.shape[0] != len(corpus):
            raise DataError(None, f"{doc_vectors.shape[0]} vectors for {len(corpus)} documents")
        self._index = InvertedIndex.from_documents(prune(doc_vectors, self.prune_type, self.prune_ratio))
        self._doc_ids = list(corpus.ids)
        self._corpus = corpus

    def _require_index(self) -> InvertedIndex:
        if self._index is None:
            raise ModelError("the index is empty: call index(corpus) first")
        return self._index

    @property
    def doc_ids(self) -> list[str]:
        """Ids of the indexed documents."""
        return self._doc_ids

    def search(
        self,
        queries: Queries | Sequence[str],
        k: int = 10,
        *,
        show_progress: bool = False,
        expansion: QueryExpansion | None = None,
    ) -> Ranking:
        """Top-`k` documents per query by sparse dot product (exact), queries optionally expanded."""
        index = self._require_index()
        qs = as_queries(queries)
        t0 = time.perf_counter()
        q = self.encode_queries(qs.texts, show_progress=show_progress, expansion=expansion)
        t1 = time.perf_counter()
        if len(qs):
            idx, scores = index.search(q, k)
            # a document sharing no dimension with the query scores 0: not a result
            idx, scores = np.where(scores > 0, idx, -1), np.where(scores > 0, scores, -np.inf).astype(np.float32)
        else:
            idx, scores = np.empty((0, k), np.int64), np.empty((0, k), np.float32)
        self.timings.update(encode_queries_seconds=t1 - t0, search_seconds=time.perf_counter() - t1)
        self._last_queries = q
        return Ranking(qs.ids, idx, scores, self._doc_ids)

    def efficiency(self, queries: Queries | Sequence[str] | None = None) -> dict[str, float]:
        """Active dimensions, FLOPS per (query, document) pair and postings size, for `queries`
        or else the last batch searched."""
        index = self._require_index()
        if queries is not None:
            q = self.encode_queries(as_queries(queries).texts)
        elif self._last_queries is not None:
            q = self._last_queries
        else:
            raise ModelError("efficiency() needs queries (none have been searched yet)")
        doc_dims = index.document_active_dims()
        q_dims = np.diff(q.indptr)
        p_doc = index.document_frequencies() / max(1, index.n_docs)
        p_query = np.bincount(q.indices, minlength=index.vocab_size) / max(1, q.shape[0])
        postings_bytes = sum(getattr(index.postings, a).nbytes for a in ("indptr", "indices", "data"))
        return {
            "query_active_dims": float(q_dims.mean()) if len(q_dims) else 0.0,
            "document_active_dims": float(doc_dims.mean()),
            "flops": float(p_query @ p_doc),
            "postings": float(index.nnz),
            "index_mb": postings_bytes / 2**20,
        }

    # -- persistence ----------------------------------------------------------------------------
    def label(self) -> str:
        """``sparse <mode>``."""
        return f"sparse {self.info.mode}"

    def settings(self) -> dict[str, Any]:
        """The encoder's settings."""
        return {"encoder": self.config(), "with_title": self.with_title}

    def config(self) -> dict[str, Any]:
        """Settings that reproduce this retriever's encoder."""
        return {
            "model": self.model_path,
            "mode": self.info.mode,
            "expansion": self.info.expansion,
            "batch_size": self.batch_size,
            "max_seq_length": self.model.max_seq_length,
            "prune_type": self.prune_type,
            "prune_ratio": self.prune_ratio,
            "precision": self.precision,
        }

    def save(self, path: str | Path, *, overwrite: bool = True, with_corpus: bool = True) -> None:
        """Postings (memory-mappable), the corpus (unless kept elsewhere) and the model reference
        (or the model itself)."""
        from korag.models.sparse import save_sparse_encoder

        index = self._require_index()
        with atomic.atomic_directory(path, overwrite=overwrite) as tmp:
            size = index.save(tmp)
            if with_corpus:
                write_indexed_corpus(self.corpus(), tmp)
            config = self.config()
            if not config["model"]:
                save_sparse_encoder(self.model, tmp / "model")
                config["model"] = "model"
            self.write_header(
                tmp,
                indent=None,
                encoder=config,
                with_title=self.with_title,
                num_docs=index.n_docs,
                doc_ids=self._doc_ids,
                postings_bytes=size,
            )

    @classmethod
    def load(cls, path: str | Path, *, mmap: bool = True, model: Any = None, device: str = "cpu") -> SparseRetriever:
        """Open a saved sparse index (memory-mapped postings), with the model it references
        loaded, or given as `model` when already loaded."""
        p = Path(path)
        info = read_retriever_info(p, cls.name)
        enc = info["encoder"]
        reference = enc["model"] if model is not None and enc["model"] != "model" else None
        if model is None:
            model = p / "model" if enc["model"] == "model" else enc["model"]
        r = cls(
            model,
            batch_size=enc["batch_size"],
            max_seq_length=enc["max_seq_length"],
            with_title=info["with_title"],
            prune_type=enc["prune_type"],
            prune_ratio=enc["prune_ratio"],
            precision=enc["precision"],
            device=device,
            reference=reference,
        )
        r._index = InvertedIndex.load(p, mmap=mmap)
        r._doc_ids = list(info["doc_ids"])
        r._corpus_dir = p
        return r
