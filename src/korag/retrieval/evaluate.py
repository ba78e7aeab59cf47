"""Index a corpus, search its judged queries and score the ranking — with timings."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from korag.data.schema import Ranking, RetrievalSet
from korag.eval.ir import DEFAULT_METRICS, evaluate_ranking
from korag.retrieval.base import Retriever


@dataclass
class RetrievalEvaluation:
    """Metrics, timings and the ranking of one retriever on one retrieval set."""

    metrics: dict[str, float]
    timings: dict[str, float]
    num_documents: int
    num_queries: int
    ranking: Ranking = field(repr=False)

    def to_json(self, **extra: Any) -> dict[str, Any]:
        """The JSON written by `korag eval retrieval` (``metrics`` and ``timings`` at the top)."""
        return {
            "metrics": self.metrics,
            "timings": self.timings,
            "num_documents": self.num_documents,
            "num_queries": self.num_queries,
            **extra,
        }


def evaluate_retriever(
    retriever: Retriever,
    dataset: RetrievalSet,
    *,
    k: int = 100,
    metrics: Sequence[str] = DEFAULT_METRICS,
    show_progress: bool = False,
    index: bool = True,
) -> RetrievalEvaluation:
    """Index `dataset.corpus` (unless `index` is False), search the judged queries, evaluate."""
    timings: dict[str, float] = {}
    if index:
        t0 = time.perf_counter()
        retriever.index(dataset.corpus, show_progress=show_progress)
        timings["index_seconds"] = time.perf_counter() - t0
    queries = dataset.judged_queries()
    t0 = time.perf_counter()
    ranking = retriever.search(queries, k=k, show_progress=show_progress)
    seconds = time.perf_counter() - t0
    timings["search_seconds"] = seconds
    timings["queries_per_second"] = len(queries) / seconds if seconds > 0 else 0.0
    for name, value in getattr(retriever, "timings", {}).items():
        timings.setdefault(name, value)
    result = evaluate_ranking(ranking, dataset.qrels, metrics)
    return RetrievalEvaluation(result.metrics, timings, len(dataset.corpus), len(queries), ranking)


def tune_hybrid(hybrid, tune_set: RetrievalSet, *, metric: str = "mrr@10") -> dict:
    """Choose a hybrid's fusion weights on `tune_set` (already indexed corpus, other queries than
    the evaluation's) — or, for adaptive fusion, fit its combiner — sets them on the retriever and
    returns what was tried."""
    from korag.retrieval.fusion import tune_weights

    if hybrid.method == "adaptive":
        queries = tune_set.judged_queries()
        combiner = hybrid.fit_combiner(queries, tune_set.qrels)
        return {
            "combiner": combiner,
            "chosen": combiner["chosen"],
            metric: combiner["cv_mrr@10"][combiner["chosen"]],
            "queries": len(queries),
        }
    rankings = hybrid.search_each(tune_set.judged_queries())
    weights, score, trials = tune_weights(
        rankings,
        tune_set.qrels,
        method=hybrid.method,
        metric=metric,
        normalization=hybrid.normalization,
        rrf_k=hybrid.rrf_k,
    )
    hybrid.weights = list(weights)
    return {"weights": list(weights), metric: score, "trials": trials, "queries": len(tune_set.judged_queries())}
