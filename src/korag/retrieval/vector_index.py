"""Exact inner-product search over an in-process matrix of vectors, saved as memory-mappable ``.npy``.

For the corpora this machine handles (up to a few million passages of 384 floats) an exact
matrix product in blocks is fast and has no recall loss; an approximate index (faiss, Milvus)
belongs to the serving backends, not here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from korag.errors import ModelError


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the k largest scores per row, best first."""
    k = min(k, scores.shape[1])
    if k <= 0:
        return np.empty((scores.shape[0], 0), np.int64), np.empty((scores.shape[0], 0), np.float32)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1).astype(np.int64), np.take_along_axis(vals, order, axis=1)


class VectorIndex:
    """Row vectors (one per document) and their ids; `search` returns exact top-k by dot product."""

    def __init__(self, vectors: np.ndarray, ids: Sequence[str]) -> None:
        if vectors.ndim != 2 or vectors.shape[0] != len(ids):
            raise ValueError(f"vectors {vectors.shape} do not match {len(ids)} ids")
        self.vectors = vectors
        self.ids = list(ids)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return int(self.vectors.shape[1])

    def search(self, queries: np.ndarray, k: int, *, block: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """(indices, scores) of the k best documents for each query vector."""
        queries = np.asarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ModelError(f"query vectors of dimension {queries.shape[-1]} for an index of dimension {self.dim}")
        k = max(1, min(k, len(self)))
        out_i = np.empty((len(queries), k), dtype=np.int64)
        out_s = np.empty((len(queries), k), dtype=np.float32)
        for start in range(0, len(queries), block):
            scores = queries[start : start + block] @ self.vectors.T
            out_i[start : start + block], out_s[start : start + block] = top_k(scores, k)
        return out_i, out_s

    def add(self, vectors: np.ndarray, ids: Sequence[str]) -> None:
        """Append rows (the index is then in memory, whatever it was loaded as)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(self.ids) and vectors.shape[1:] != self.vectors.shape[1:]:
            raise ValueError(f"vectors of dimension {vectors.shape[1:]} for an index of dimension {self.dim}")
        self.vectors = (
            np.concatenate([np.asarray(self.vectors, dtype=np.float32), vectors]) if len(self.ids) else vectors
        )
        self.ids = self.ids + list(ids)

    def delete(self, ids: Sequence[str]) -> int:
        """Remove the rows of `ids` (unknown ids are an error); returns how many were removed."""
        gone = set(ids)
        unknown = gone - set(self.ids)
        if unknown:
            from korag.errors import DataError

            raise DataError(None, f"document {sorted(unknown)[0]!r} is not in the index", field="id")
        keep = [i for i, d in enumerate(self.ids) if d not in gone]
        removed = len(self.ids) - len(keep)
        if removed:
            self.vectors = np.asarray(self.vectors)[keep]
            self.ids = [self.ids[i] for i in keep]
        return removed

    def save(self, directory: str | Path) -> None:
        """``vectors.npy`` and ``ids.json`` in `directory`."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / "vectors.npy", np.ascontiguousarray(self.vectors, dtype=np.float32))
        (d / "ids.json").write_text(json.dumps(self.ids, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path, *, mmap: bool = True) -> VectorIndex:
        """Read what `save` wrote; with `mmap` the vectors stay on disk until used."""
        d = Path(directory)
        vectors = np.load(d / "vectors.npy", mmap_mode="r" if mmap else None)
        return cls(vectors, json.loads((d / "ids.json").read_text(encoding="utf-8")))
