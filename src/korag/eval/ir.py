"""Retrieval metrics over a `Ranking` and graded `Qrels`, vectorised over queries.

Conventions follow trec_eval (the tests compare against it through pytrec_eval):
- only queries with at least one relevant document (grade ≥ `relevance_threshold`) are scored;
  a judged query missing from the ranking scores 0;
- nDCG uses the grade as gain (linear, Järvelin & Kekäläinen) and the ideal ordering of all
  judged documents; MAP@k divides by the number of relevant documents;
- Accuracy@k (a.k.a. hit rate, success) is 1 when any relevant document is in the top k.

Metric names are lowercase ``<name>@<k>``: mrr, ndcg, recall, precision, map, accuracy.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from korag.data.schema import Qrels, Ranking
from korag.errors import ConfigError

METRIC_NAMES = ("mrr", "ndcg", "recall", "precision", "map", "accuracy")
DEFAULT_METRICS = (
    "mrr@10",
    "ndcg@10",
    "map@100",
    "recall@1",
    "recall@5",
    "recall@10",
    "recall@20",
    "recall@100",
    "precision@1",
    "accuracy@1",
    "accuracy@5",
)
_METRIC = re.compile(r"^(mrr|ndcg|recall|precision|map|accuracy)@(\d+)$")


def parse_metric(name: str) -> tuple[str, int]:
    """``"ndcg@10"`` → ``("ndcg", 10)``; anything else is a `ConfigError`."""
    m = _METRIC.match(name.strip().lower())
    if not m or int(m.group(2)) < 1:
        raise ConfigError(f"unknown metric {name!r}; use <name>@<k> with name in {', '.join(METRIC_NAMES)}")
    return m.group(1), int(m.group(2))


@dataclass
class IRResult:
    """Mean metrics plus the per-query values behind them (same query order for all)."""

    metrics: dict[str, float]
    per_query: dict[str, np.ndarray]
    query_ids: list[str]

    def __getitem__(self, name: str) -> float:
        return self.metrics[name]


def _grades(ranking: Ranking, qrels: Qrels, qids: Sequence[str], depth: int) -> np.ndarray:
    """Matrix [query, rank] of the judged grade of each retrieved document (0 if unjudged)."""
    row_of = {q: i for i, q in enumerate(ranking.query_ids)}
    doc_ids = ranking.doc_ids
    g = np.zeros((len(qids), depth), dtype=np.float64)
    width = min(depth, ranking.k)
    for i, q in enumerate(qids):
        r = row_of.get(q)
        if r is None:
            continue
        judged = qrels[q]
        for j, d in enumerate(ranking.indices[r, :width]):
            if d < 0:
                break
            grade = judged.get(doc_ids[d])
            if grade:
                g[i, j] = grade
    return g


def evaluate_ranking(
    ranking: Ranking,
    qrels: Qrels,
    metrics: Sequence[str] = DEFAULT_METRICS,
    *,
    relevance_threshold: int = 1,
) -> IRResult:
    """Compute `metrics` (names like ``"mrr@10"``) for `ranking` against `qrels`."""
    parsed = [(m.lower(), *parse_metric(m)) for m in metrics]
    qids = [q for q in qrels if qrels.relevant(q, relevance_threshold)]
    if not qids:
        raise ConfigError("no query has a relevant document: nothing to evaluate")
    depth = max(k for _, _, k in parsed)
    grades = _grades(ranking, qrels, qids, depth)
    rel = grades >= relevance_threshold
    # Positive grades below the threshold still count as gain in nDCG (as in trec_eval).
    gains = np.where(grades > 0, grades, 0.0)
    n_rel = np.array([len(qrels.relevant(q, relevance_threshold)) for q in qids], dtype=np.float64)
    ideal = np.zeros((len(qids), depth))
    for i, q in enumerate(qids):
        ig = sorted((g for g in qrels[q].values() if g > 0), reverse=True)[:depth]
        ideal[i, : len(ig)] = ig
    discount = 1.0 / np.log2(np.arange(2, depth + 2))
    ranks = np.arange(1, depth + 1)
    per_query: dict[str, np.ndarray] = {}
    for label, name, k in parsed:
        r = rel[:, :k]
        if name == "mrr":
            first = np.where(r.any(axis=1), r.argmax(axis=1) + 1, 0)
            v = np.where(first > 0, 1.0 / np.maximum(first, 1), 0.0)
        elif name == "ndcg":
            dcg = (gains[:, :k] * discount[:k]).sum(axis=1)
            idcg = (ideal[:, :k] * discount[:k]).sum(axis=1)
            v = np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0)
        elif name == "recall":
            v = r.sum(axis=1) / n_rel
        elif name == "precision":
            v = r.sum(axis=1) / k
        elif name == "map":
            prec_at = np.cumsum(r, axis=1) / ranks[:k]
            v = (prec_at * r).sum(axis=1) / n_rel
        else:  # accuracy
            v = r.any(axis=1).astype(np.float64)
        per_query[label] = v
    return IRResult({m: float(v.mean()) for m, v in per_query.items()}, per_query, qids)
