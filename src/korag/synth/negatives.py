"""Hard-negative mining: documents a retriever ranks high for a query but that are not relevant.

Candidates come from a rank window (the very top is skipped: unjudged relevant documents
gather there), and a false-negative guard drops a candidate that contains a known answer
string or that scores too close to the query's positive.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from korag.data.schema import RetrievalSet
from korag.errors import ConfigError
from korag.retrieval.base import Retriever


@dataclass
class MiningReport:
    """What the miner kept and why it dropped the rest."""

    queries: int = 0
    mined: int = 0
    dropped_relevant: int = 0
    dropped_answer: int = 0
    dropped_margin: int = 0
    short: int = 0  # queries that got fewer negatives than asked


def mine_negatives(
    rs: RetrievalSet,
    retriever: Retriever,
    *,
    num: int = 1,
    rank_range: tuple[int, int] = (2, 30),
    max_score_ratio: float | None = 0.95,
    answers: Mapping[str, Sequence[str]] | None = None,
) -> tuple[dict[str, list[str]], MiningReport]:
    """Up to `num` negatives per judged query from ranks [start, end) of `retriever` (already
    indexed on `rs.corpus`), skipping relevant documents, documents containing an answer, and
    documents scoring above `max_score_ratio` × the best positive's score."""
    start, end = rank_range
    if not 0 <= start < end:
        raise ConfigError(f"rank_range must satisfy 0 ≤ start < end (got {rank_range})")
    queries = rs.judged_queries()
    ranking = retriever.search(queries, k=end)
    report = MiningReport(queries=len(queries))
    out: dict[str, list[str]] = {}
    for qid, results in ranking.items():
        relevant = rs.qrels.relevant(qid)
        pos_scores = [s for d, s in results if d in relevant]
        ceiling = max(pos_scores) * max_score_ratio if pos_scores and max_score_ratio is not None else None
        gold = [a for a in (answers or {}).get(qid, ()) if a]
        chosen: list[str] = []
        for d, s in results[start:end]:
            if len(chosen) >= num:
                break
            if d in relevant:
                report.dropped_relevant += 1
                continue
            if gold and any(a in rs.corpus.get(d).text for a in gold):
                report.dropped_answer += 1
                continue
            if ceiling is not None and s > ceiling:
                report.dropped_margin += 1
                continue
            chosen.append(d)
        if len(chosen) < num:
            report.short += 1
        report.mined += len(chosen)
        out[qid] = chosen
    return out, report
