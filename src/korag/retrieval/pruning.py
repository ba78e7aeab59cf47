"""Pruning of sparse vectors the way OpenSearch's `sparse_encoding` processor does.

Same four rules and the same validity ranges as neural-search's `PruneUtils`, applied to every
row of a CSR matrix at once (vectorised; a Python loop per document would dominate indexing):

* ``top_k`` k — keep the k largest weights (k a positive integer);
* ``max_ratio`` r — keep weights ≥ r × the row's largest (0 ≤ r < 1);
* ``alpha_mass`` α — in descending order, keep weights while the running sum including them
  stays ≤ α × the row's total (0 ≤ α < 1);
* ``abs_value`` t — keep weights ≥ t (t ≥ 0).

Ties at the boundary of ``top_k`` keep the lower token id, which OpenSearch leaves unspecified.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp

from korag.errors import ConfigError

PruneType = Literal["none", "top_k", "max_ratio", "alpha_mass", "abs_value"]
PRUNE_TYPES = ("none", "top_k", "max_ratio", "alpha_mass", "abs_value")


def check_prune(prune_type: str, ratio: float | None) -> None:
    """OpenSearch's validity rules for `prune_ratio`."""
    if prune_type not in PRUNE_TYPES:
        raise ConfigError(f"unknown prune type {prune_type!r}; choose from {', '.join(PRUNE_TYPES)}")
    if prune_type == "none":
        return
    if ratio is None:
        raise ConfigError(f"prune type {prune_type} needs a prune ratio")
    ok = {
        "top_k": ratio > 0 and float(ratio).is_integer(),
        "max_ratio": 0 <= ratio < 1,
        "alpha_mass": 0 <= ratio < 1,
        "abs_value": ratio >= 0,
    }[prune_type]
    if not ok:
        rule = {
            "top_k": "a positive integer",
            "max_ratio": "in [0, 1)",
            "alpha_mass": "in [0, 1)",
            "abs_value": "non-negative",
        }[prune_type]
        raise ConfigError(f"prune ratio for {prune_type} must be {rule}, got {ratio}")


def _row_of_entries(m: sp.csr_matrix) -> np.ndarray:
    return np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))


def _descending_order(m: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
    # sort entries by row, then weight descending, then token id: stable and vectorised
    return np.lexsort((m.indices, -m.data, rows))


def prune(matrix: sp.csr_matrix, prune_type: str = "none", ratio: float | None = None) -> sp.csr_matrix:
    """A pruned copy of `matrix` (rows = vectors); zero and negative weights are always dropped."""
    check_prune(prune_type, ratio)
    m = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    m.data[m.data < 0] = 0
    m.eliminate_zeros()
    m.sort_indices()
    if prune_type == "none" or m.nnz == 0:
        return m
    rows = _row_of_entries(m)
    keep = np.ones(m.nnz, dtype=bool)
    if prune_type == "abs_value":
        keep = m.data >= ratio
    elif prune_type == "max_ratio":
        row_max = np.zeros(m.shape[0], dtype=np.float32)
        np.maximum.at(row_max, rows, m.data)
        keep = m.data >= ratio * row_max[rows]
    else:
        order = _descending_order(m, rows)
        sorted_rows = rows[order]
        starts = m.indptr[:-1][sorted_rows]
        if prune_type == "top_k":
            rank = np.arange(m.nnz) - starts
            keep_sorted = rank < int(ratio)
        else:  # alpha_mass
            values = m.data[order].astype(np.float64)
            csum = np.cumsum(values)
            before = np.concatenate([[0.0], csum])[starts]
            running = csum - before
            totals = np.add.reduceat(values, m.indptr[:-1][np.diff(m.indptr) > 0])
            row_total = np.zeros(m.shape[0])
            row_total[np.diff(m.indptr) > 0] = totals
            keep_sorted = running <= ratio * row_total[sorted_rows] * (1 + 1e-7)
        keep = np.empty(m.nnz, dtype=bool)
        keep[order] = keep_sorted
    m.data[~keep] = 0
    m.eliminate_zeros()
    return m
