"""Training examples for bi-encoders from korag's schema: (query, positive[, negatives]) pairs."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from korag.data.schema import Corpus, QASet, Qrels, Queries, RetrievalSet
from korag.errors import DataError


@dataclass(frozen=True, slots=True)
class TrainingPair:
    """A query, one relevant passage and optional hard-negative passages (texts, not ids)."""

    query: str
    positive: str
    negatives: tuple[str, ...] = ()
    query_id: str = ""
    positive_id: str = ""
    negative_ids: tuple[str, ...] = field(default=())


def as_retrieval_set(data: RetrievalSet | QASet) -> RetrievalSet:
    """Training reads RetrievalSets; QA sets train on question → gold passage."""
    return data.to_retrieval_set() if isinstance(data, QASet) else data


def training_pairs(
    data: RetrievalSet | QASet,
    *,
    with_title: bool = True,
    negatives: Mapping[str, Sequence[str]] | None = None,
    min_grade: int = 1,
) -> list[TrainingPair]:
    """One pair per (query, relevant document); `negatives` maps query ids to negative doc ids."""
    rs = as_retrieval_set(data)
    contents = dict(zip(rs.corpus.ids, rs.corpus.contents(with_title), strict=True))
    pairs: list[TrainingPair] = []
    for q in rs.queries:
        for doc_id in rs.qrels.relevant(q.id, min_grade):
            neg_ids = tuple(negatives.get(q.id, ())) if negatives else ()
            pairs.append(
                TrainingPair(q.text, contents[doc_id], tuple(contents[n] for n in neg_ids), q.id, doc_id, neg_ids)
            )
    if not pairs:
        raise DataError(rs.name or None, "no training pairs: no query has a relevant document in this split")
    return pairs


def split_queries(rs: RetrievalSet, fraction: float, seed: int = 0) -> tuple[RetrievalSet, RetrievalSet]:
    """Two retrieval sets over the same corpus, the second holding ~`fraction` of the judged queries."""
    judged = [q for q in rs.queries.ids if rs.qrels.relevant(q)]
    if fraction <= 0 or len(judged) < 2:
        return rs, RetrievalSet(rs.corpus, Queries([], []), Qrels(), name=f"{rs.name}-dev")
    rng = random.Random(seed)
    held = set(rng.sample(judged, max(1, round(fraction * len(judged)))))
    train_ids = [q for q in judged if q not in held]
    dev_ids = [q for q in judged if q in held]
    return (
        RetrievalSet(rs.corpus, rs.queries.subset(train_ids), rs.qrels.restrict(train_ids), name=rs.name),
        RetrievalSet(rs.corpus, rs.queries.subset(dev_ids), rs.qrels.restrict(dev_ids), name=f"{rs.name}-dev"),
    )


def split_by_group(
    data: QASet, group_of: Mapping[str, str], fraction: float = 0.5, seed: int = 0
) -> tuple[QASet, QASet, list[str]]:
    """Split a QA set by document group (e.g. KorQuAD article): questions on the first groups vs
    the rest, both over the whole corpus. Returns (first, second, groups of the first)."""
    groups = sorted(set(group_of.values()))
    rng = random.Random(seed)
    rng.shuffle(groups)
    first_groups = set(groups[: round(fraction * len(groups))])
    first = [e for e in data.examples if e.doc_ids and group_of[e.doc_ids[0]] in first_groups]
    second = [e for e in data.examples if e.doc_ids and group_of[e.doc_ids[0]] not in first_groups]
    return (
        QASet(data.corpus, first, name=f"{data.name}-a"),
        QASet(data.corpus, second, name=f"{data.name}-b"),
        sorted(first_groups),
    )


def dev_corpus(rs: RetrievalSet, max_docs: int, seed: int = 0) -> Corpus:
    """A corpus for evaluation during training: every relevant document plus random others, at most
    `max_docs` (encoding the whole corpus at every evaluation is too slow on a CPU)."""
    relevant = {d for q in rs.qrels for d in rs.qrels.relevant(q)}
    if len(rs.corpus) <= max_docs:
        return rs.corpus
    others = [i for i, d in enumerate(rs.corpus.ids) if d not in relevant]
    rng = random.Random(seed)
    keep = {rs.corpus.index_of(d) for d in relevant} | set(rng.sample(others, max(0, max_docs - len(relevant))))
    return rs.corpus.subset(sorted(keep))


def write_pairs_jsonl(pairs: Sequence[TrainingPair], path: str | Path) -> int:
    """Training pairs (or triplets, with negatives) as JSONL for other tools:
    ``{"query", "positive", "negatives", "query_id", "positive_id", "negative_ids"}`` per line."""
    import json

    from korag import atomic

    lines = [
        json.dumps(
            {
                "query": p.query,
                "positive": p.positive,
                "negatives": list(p.negatives),
                "query_id": p.query_id,
                "positive_id": p.positive_id,
                "negative_ids": list(p.negative_ids),
            },
            ensure_ascii=False,
        )
        for p in pairs
    ]
    atomic.write_text(path, "\n".join(lines) + ("\n" if lines else ""))
    return len(lines)
