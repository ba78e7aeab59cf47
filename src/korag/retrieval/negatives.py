"""Hard-negative mining: documents a retriever ranks high for a query but that are not relevant.

Candidates come from a rank window (the very top is skipped: unjudged relevant documents
gather there), and a false-negative guard drops a candidate that contains a known answer
string or that scores too close to the query's positive. Several retrievers (BM25 and a dense
model) can be mined together: their candidates are interleaved rank by rank, each guarded
against its own retriever's positive score, so both kinds of hard negative are represented.

A query for which the retrievers run out of candidates (a lexical retriever returns only the
documents that share a term with the query, sometimes just its positive) gets random documents
from the rest — documents no retriever matched, so they score below every candidate — under the
answer guard, so every training example has the same number of negatives; the report counts
them apart (`random`).
"""

from __future__ import annotations

import itertools
import random
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
    random: int = 0  # negatives drawn at random for queries the retrievers found too few for
    short: int = 0  # queries that got fewer negatives than asked (even at random)


def mine_negatives(
    rs: RetrievalSet,
    retriever: Retriever | Sequence[Retriever],
    *,
    num: int = 1,
    rank_range: tuple[int, int] = (2, 30),
    max_score_ratio: float | None = 0.95,
    answers: Mapping[str, Sequence[str]] | None = None,
    fill_random: bool = True,
    seed: int = 0,
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
    rng = random.Random(seed)
    out: dict[str, list[str]] = {}
    per_query = [dict(rk.items()) for rk in rankings]
    for qid in queries.ids:
        relevant = rs.qrels.relevant(qid)
        gold = [a for a in (answers or {}).get(qid, ()) if a]
        candidates = _candidates([hits.get(qid, []) for hits in per_query], relevant, start, end, max_score_ratio)
        chosen = _guarded(candidates, num, relevant, gold, rs, report)
        ran_out = all(len(hits.get(qid, [])) < end for hits in per_query)
        if len(chosen) < num and fill_random and ran_out:
            matched = {d for hits in per_query for d, _ in hits.get(qid, [])}
            found = _random_negatives(rs, num - len(chosen), relevant.keys() | matched, gold, rng)
            report.random += len(found)
            chosen += found
        if len(chosen) < num:
            report.short += 1
        report.mined += len(chosen)
        out[qid] = chosen
    return out, report


def _candidates(
    results: Sequence[list[tuple[str, float]]], relevant, start: int, end: int, max_score_ratio: float | None
) -> list[tuple[str, float, float | None]]:
    """(document, score, score ceiling) in the rank window of each retriever's results, interleaved
    rank by rank: BM25's 3rd, the dense model's 3rd, BM25's 4th, … (a retriever with fewer
    results drops out; the others go on). The ceiling is `max_score_ratio` × that retriever's best
    positive score."""
    streams = []
    for hits in results:
        pos_scores = [s for d, s in hits if d in relevant]
        ceiling = max(pos_scores) * max_score_ratio if pos_scores and max_score_ratio is not None else None
        streams.append([(d, s, ceiling) for d, s in hits[start:end]])
    return [c for rank in itertools.zip_longest(*streams) for c in rank if c is not None]


def _guarded(candidates, num: int, relevant, gold: Sequence[str], rs: RetrievalSet, report: MiningReport) -> list[str]:
    """The first `num` candidates that pass the guards (counted in `report` when dropped)."""
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
        elif gold and any(a in rs.corpus.get(d).text for a in gold):
            report.dropped_answer += 1
        elif ceiling is not None and s > ceiling:
            report.dropped_margin += 1
        else:
            chosen.append(d)
    return chosen


def _random_negatives(
    rs: RetrievalSet, n: int, exclude: set[str], gold: Sequence[str], rng: random.Random, tries: int = 50
) -> list[str]:
    """Up to `n` random documents outside `exclude` that contain none of the `gold` answers."""
    ids = rs.corpus.ids
    out: list[str] = []
    for _ in range(tries):
        if len(out) >= n or len(exclude) + len(out) >= len(ids):
            break
        d = ids[rng.randrange(len(ids))]
        if d in exclude or d in out or (gold and any(a in rs.corpus.get(d).text for a in gold)):
            continue
        out.append(d)
    return out
