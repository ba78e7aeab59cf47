"""Hard-negative mining: documents a retriever ranks high for a query but that are not relevant.

Candidates come from a rank window (the very top is skipped: unjudged relevant documents
gather there), and a false-negative guard drops a candidate that contains a known answer
string or that scores too close to the query's positive. Several retrievers (BM25 and a dense
model) can be mined together: their candidates are interleaved rank by rank, each guarded
against its own retriever's positive score, so both kinds of hard negative are represented.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from korag.data.schema import Ranking, RetrievalSet
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
    retriever: Retriever | Sequence[Retriever],
    *,
    num: int = 1,
    rank_range: tuple[int, int] = (2, 30),
    max_score_ratio: float | None = 0.95,
    answers: Mapping[str, Sequence[str]] | None = None,
) -> tuple[dict[str, list[str]], MiningReport]:
    """Up to `num` negatives per judged query from ranks [start, end) of `retriever` (or of several,
    interleaved; each already indexed on `rs.corpus`), skipping relevant documents, documents
    containing an answer, and documents scoring above `max_score_ratio` × that retriever's best
    positive score."""
    start, end = rank_range
    if not 0 <= start < end:
        raise ConfigError(f"rank_range must satisfy 0 ≤ start < end (got {rank_range})")
    retrievers = list(retriever) if isinstance(retriever, Sequence) else [retriever]
    if not retrievers:
        raise ConfigError("mine_negatives needs at least one retriever")
    queries = rs.judged_queries()
    rankings: list[Ranking] = [r.search(queries, k=end) for r in retrievers]
    report = MiningReport(queries=len(queries))
    out: dict[str, list[str]] = {}
    per_query = [dict(rk.items()) for rk in rankings]
    for qid in queries.ids:
        relevant = rs.qrels.relevant(qid)
        gold = [a for a in (answers or {}).get(qid, ()) if a]
        streams = []
        for hits in per_query:
            results = hits.get(qid, [])
            pos_scores = [s for d, s in results if d in relevant]
            ceiling = max(pos_scores) * max_score_ratio if pos_scores and max_score_ratio is not None else None
            streams.append([(d, s, ceiling) for d, s in results[start:end]])
        # rank by rank across retrievers: BM25's 3rd, the dense model's 3rd, BM25's 4th, ...
        candidates = [c for rank in zip(*streams, strict=False) for c in rank] if len(streams) > 1 else streams[0]
        chosen: list[str] = []
        seen: set[str] = set()
        for d, s, ceiling in candidates:
            if len(chosen) >= num:
                break
            if d in seen:
                continue
            seen.add(d)
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
