"""Term-frequency matrix of a tokenized corpus: the updatable source of lexical indexes.

Rows are documents, columns token ids, values counts. BM25 weights, document frequencies and
IDF tables are all functions of this matrix, so keeping it lets an index add or delete
documents by editing rows — no re-tokenisation of the rest of the corpus.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from korag.errors import DataError


class TermCounts:
    """Documents × vocabulary count matrix with the vocabulary and document ids."""

    def __init__(self, vocab: dict[str, int], tf: sp.csr_matrix, doc_ids: Sequence[str]) -> None:
        if tf.shape != (len(doc_ids), len(vocab)):
            raise ValueError(f"tf shape {tf.shape} does not match {len(doc_ids)} ids × {len(vocab)} tokens")
        self.vocab = vocab
        self.tf = tf
        self.doc_ids = list(doc_ids)
        self._position = {d: i for i, d in enumerate(self.doc_ids)}
        if len(self._position) != len(self.doc_ids):
            raise DataError(None, "duplicate document ids in index")

    @staticmethod
    def _rows(token_lists: Sequence[Sequence[str]], vocab: dict[str, int]) -> sp.csr_matrix:
        # setdefault with len(vocab) assigns the next id to unseen tokens in one pass.
        cols = np.fromiter((vocab.setdefault(t, len(vocab)) for toks in token_lists for t in toks), dtype=np.int64)
        lengths = np.fromiter((len(t) for t in token_lists), dtype=np.int64, count=len(token_lists))
        rows = np.repeat(np.arange(len(token_lists)), lengths)
        m = sp.csr_matrix((np.ones(len(cols), dtype=np.int32), (rows, cols)), shape=(len(token_lists), len(vocab)))
        m.sum_duplicates()
        return m

    @classmethod
    def build(cls, token_lists: Sequence[Sequence[str]], doc_ids: Sequence[str]) -> TermCounts:
        """Count the tokens of each document."""
        if len(token_lists) != len(doc_ids):
            raise ValueError("one token list per document id is needed")
        vocab: dict[str, int] = {}
        tf = cls._rows(token_lists, vocab)
        return cls(vocab, tf, doc_ids)

    def __len__(self) -> int:
        return len(self.doc_ids)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._position

    def index_of(self, doc_id: str) -> int:
        """The row of `doc_id`."""
        return self._position[doc_id]

    @property
    def doc_lengths(self) -> np.ndarray:
        """Tokens per document (repeats counted)."""
        return np.asarray(self.tf.sum(axis=1)).ravel()

    @property
    def document_frequencies(self) -> np.ndarray:
        """Number of documents containing each token id."""
        return np.bincount(self.tf.indices, minlength=len(self.vocab))

    def add(self, token_lists: Sequence[Sequence[str]], doc_ids: Sequence[str]) -> None:
        """Append documents; new tokens extend the vocabulary."""
        for d in doc_ids:
            if d in self._position:
                raise DataError(None, f"document {d!r} is already in the index; delete it first", field="id")
        if len(set(doc_ids)) != len(doc_ids):
            raise DataError(None, "duplicate ids among the added documents", field="id")
        new = self._rows(token_lists, self.vocab)
        old = self.tf
        old = sp.csr_matrix((old.data, old.indices, old.indptr), shape=(old.shape[0], len(self.vocab)))
        self.tf = sp.vstack([old, new], format="csr")
        for d in doc_ids:
            self._position[d] = len(self.doc_ids)
            self.doc_ids.append(d)

    def delete(self, doc_ids: Iterable[str]) -> int:
        """Remove documents by id (unknown ids are an error); returns how many were removed."""
        drop = set()
        for d in doc_ids:
            if d not in self._position:
                raise DataError(None, f"document {d!r} is not in the index", field="id")
            drop.add(self._position[d])
        if not drop:
            return 0
        keep = np.array([i for i in range(len(self.doc_ids)) if i not in drop], dtype=np.int64)
        self.tf = self.tf[keep]
        self.doc_ids = [self.doc_ids[i] for i in keep]
        self._position = {d: i for i, d in enumerate(self.doc_ids)}
        return len(drop)

    def save(self, directory: str | Path) -> None:
        """Arrays as ``.npy`` (memory-mappable), vocabulary and ids as JSON."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / "tf_data.npy", self.tf.data.astype(np.int32))
        np.save(d / "tf_indices.npy", self.tf.indices.astype(np.int32))
        np.save(d / "tf_indptr.npy", self.tf.indptr.astype(np.int64))
        (d / "vocab.json").write_text(json.dumps(self.vocab, ensure_ascii=False), encoding="utf-8")
        (d / "doc_ids.json").write_text(json.dumps(self.doc_ids, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path, *, mmap: bool = False) -> TermCounts:
        """Read what `save` wrote."""
        d = Path(directory)
        mode = "r" if mmap else None
        vocab = json.loads((d / "vocab.json").read_text(encoding="utf-8"))
        doc_ids = json.loads((d / "doc_ids.json").read_text(encoding="utf-8"))
        tf = sp.csr_matrix(
            (
                np.load(d / "tf_data.npy", mmap_mode=mode),
                np.load(d / "tf_indices.npy", mmap_mode=mode),
                np.load(d / "tf_indptr.npy", mmap_mode=mode),
            ),
            shape=(len(doc_ids), len(vocab)),
        )
        return cls(vocab, tf, doc_ids)
