"""An embedded inverted index for sparse vectors: exact top-k by one sparse matrix product.

Documents are stored token-major (a CSR matrix of vocabulary × documents: row t is token t's
posting list of (document, weight)), so a batch of queries scores as ``Q · P`` — scipy's
sparse × sparse product touches only the postings of the tokens the queries contain, which is
what an inverted index does, without per-query Python. Scores for a block of queries are
densified (block × documents) for an exact `argpartition` top-k; the block size bounds memory.
Saved as plain ``.npy`` arrays and memory-mapped on load.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from korag.errors import ModelError
from korag.retrieval.vector_index import top_k

_ARRAYS = ("indptr", "indices", "data")


class InvertedIndex:
    """Token-major postings over `n_docs` documents and a `vocab_size` vocabulary."""

    def __init__(self, postings: sp.csr_matrix) -> None:
        self.postings = postings

    @classmethod
    def from_documents(cls, doc_vectors: sp.csr_matrix) -> InvertedIndex:
        """Build from document vectors (documents × vocabulary)."""
        p = sp.csr_matrix(doc_vectors, dtype=np.float32).T.tocsr()
        p.sort_indices()
        return cls(p)

    def add(self, doc_vectors: sp.csr_matrix) -> None:
        """Append documents (columns), in order: equal to building from all of them."""
        new = sp.csr_matrix(doc_vectors, dtype=np.float32)
        if new.shape[1] != self.vocab_size:
            raise ModelError(f"document vectors have {new.shape[1]} dimensions, the index {self.vocab_size}")
        p = sp.hstack([self.postings, new.T], format="csr", dtype=np.float32)
        p.sort_indices()
        self.postings = p

    def delete(self, positions) -> None:
        """Remove the documents at `positions` (columns); the others keep their order."""
        keep = np.setdiff1d(np.arange(self.n_docs), np.asarray(list(positions), dtype=np.int64))
        p = sp.csr_matrix(self.postings[:, keep], dtype=np.float32)
        p.sort_indices()
        self.postings = p

    @property
    def n_docs(self) -> int:
        return self.postings.shape[1]

    @property
    def vocab_size(self) -> int:
        return self.postings.shape[0]

    @property
    def nnz(self) -> int:
        return int(self.postings.nnz)

    def document_frequencies(self) -> np.ndarray:
        """Documents per token (posting-list lengths)."""
        return np.diff(self.postings.indptr)

    def document_active_dims(self) -> np.ndarray:
        """Active (non-zero) dimensions per document."""
        return np.bincount(self.postings.indices, minlength=self.n_docs)

    def scores(self, queries: sp.csr_matrix) -> np.ndarray:
        """Dense (queries × documents) dot products."""
        if queries.shape[1] != self.vocab_size:
            raise ModelError(f"query vectors have {queries.shape[1]} dimensions, the index {self.vocab_size}")
        return np.asarray((sp.csr_matrix(queries, dtype=np.float32) @ self.postings).todense())

    def search(self, queries: sp.csr_matrix, k: int, *, block: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """(document positions, scores) of the top-`k` per query, best first."""
        k = max(1, min(k, self.n_docs))
        n = queries.shape[0]
        idx = np.empty((n, k), dtype=np.int64)
        val = np.empty((n, k), dtype=np.float32)
        q = sp.csr_matrix(queries, dtype=np.float32)
        for start in range(0, n, block):
            i, s = top_k(self.scores(q[start : start + block]), k)
            idx[start : start + block], val[start : start + block] = i, s
        return idx, val

    def save(self, directory: Path) -> int:
        """Write the arrays into `directory` (which the caller makes atomic); returns bytes written."""
        size = 0
        for name in _ARRAYS:
            path = directory / f"postings.{name}.npy"
            np.save(path, getattr(self.postings, name))
            size += path.stat().st_size
        (directory / "postings.json").write_text(json.dumps({"shape": list(self.postings.shape)}), encoding="utf-8")
        return size

    @classmethod
    def load(cls, directory: Path, *, mmap: bool = True) -> InvertedIndex:
        """Open saved postings, memory-mapped by default."""
        try:
            shape = tuple(json.loads((directory / "postings.json").read_text(encoding="utf-8"))["shape"])
            arrays = [np.load(directory / f"postings.{n}.npy", mmap_mode="r" if mmap else None) for n in _ARRAYS]
        except FileNotFoundError as exc:
            raise ModelError(f"{directory}: incomplete sparse index ({Path(exc.filename).name} missing)") from None
        indptr, indices, data = arrays
        m = sp.csr_matrix((data, indices, indptr), shape=shape, copy=False)
        return cls(m)
