"""Scoring a collection on a user's own questions: answer recall of its retrievers, and EM/F1 of
`ask` next to the same reader closed-book.

Documents people bring have no gold passages, only reference answers, so a passage counts as
relevant when it holds one under `korag.eval.qa.contains_answer` (NFC and whitespace only: a
looser rule lets "9,309" match "9309" in a reference list). Answer recall@k is the share of
questions with such a passage among the first k; MRR@k averages 1/rank of the first.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from korag.collections.ask import Reader
from korag.collections.config import CollectionConfig
from korag.collections.store import CONFIG_FILE, AddReport, Collection, collection_path
from korag.data.schema import QAExample, Queries
from korag.errors import ConfigError
from korag.eval.comparison import System, SystemRow
from korag.eval.qa import contains_answer, evaluate_answers

log = logging.getLogger(__name__)

DEFAULT_KS = (1, 3, 5, 10, 20)


def answer_ranks(
    collection: Collection, questions: Sequence[QAExample], *, retriever: str | None = None, k: int = 20
) -> list[int | None]:
    """For each question, the rank (from 1) of the first passage among the top `k` that holds a
    reference answer, or None."""
    queries = Queries([q.id for q in questions], [q.question for q in questions])
    ranking = collection.rank(queries, k, retriever=retriever)
    passages = collection.passages()
    rows = dict(ranking.items())
    ranks: list[int | None] = []
    for q in questions:
        found = None
        for rank, (pid, _) in enumerate(rows.get(q.id, [])[:k], start=1):
            if contains_answer(passages.get(pid).text, q.answers):
                found = rank
                break
        ranks.append(found)
    return ranks


def rank_metrics(ranks: Sequence[int | None], ks: Sequence[int], k: int) -> dict[str, float]:
    """Answer recall@each k (≤ `k`) and MRR@`k`, from first-answer ranks."""
    n = max(1, len(ranks))
    out = {f"recall@{c}": sum(1 for r in ranks if r is not None and r <= c) / n for c in ks if c <= k}
    out[f"mrr@{k}"] = sum(1 / r for r in ranks if r is not None and r <= k) / n
    return out


def evaluate_retrieval(
    collection: Collection,
    questions: Sequence[QAExample],
    *,
    retriever: str | None = None,
    k: int = 20,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, Any]:
    """Answer recall@k and MRR of one of the collection's retrievers, with timings and the
    questions no passage answered."""
    t0 = time.perf_counter()
    ranks = answer_ranks(collection, questions, retriever=retriever, k=k)
    seconds = time.perf_counter() - t0
    return {
        "retriever": collection.config.resolve(retriever),
        "k": k,
        "questions": len(questions),
        "metrics": rank_metrics(ranks, ks, k),
        "search_seconds": seconds,
        "ranks": {q.id: r for q, r in zip(questions, ranks, strict=True)},
        "missed": [q.id for q, r in zip(questions, ranks, strict=True) if r is None],
    }


def tune_fusion(collection: Collection, questions: Sequence[QAExample], *, depth: int = 100) -> dict[str, Any]:
    """Fit the collection's adaptive fusion on `questions` (a passage among the members' top
    `depth` is relevant when it holds a reference answer) and save it as the collection's fusion;
    returns the combiner with its cross-validated comparison to each member, RRF and weighted."""
    from korag.data.schema import Qrels
    from korag.retrieval.adaptive import fit_adaptive

    if len(collection.config.retrievers()) < 2:
        raise ConfigError(
            f"collection {collection.name!r} has one retriever ({collection.config.retrievers()[0]}): "
            "fusion needs a dense or sparse model beside BM25"
        )
    queries = Queries([q.id for q in questions], [q.question for q in questions])
    rankings = collection.member_rankings(queries, depth)
    passages = collection.passages()
    judged: dict[str, dict[str, int]] = {}
    rows = [dict(r.items()) for r in rankings]
    for q in questions:
        candidates = {pid for row in rows for pid, _ in row.get(q.id, [])}
        found = {pid: 1 for pid in candidates if contains_answer(passages.get(pid).text, q.answers)}
        if found:
            judged[q.id] = found
    combiner = fit_adaptive(rankings, Qrels(judged))
    combiner["unanswered"] = len(questions) - len(judged)
    collection.set_fusion(collection.config.fusion.model_copy(update={"method": "adaptive", "combiner": combiner}))
    return combiner


def evaluate_ask(
    collection: Collection,
    questions: Sequence[QAExample],
    reader: Reader,
    *,
    k: int = 3,
    retriever: str | None = None,
    closed_book: bool = True,
    show_progress: bool = False,
) -> list[SystemRow]:
    """EM/F1 (KorQuAD and SQuAD rules) of `ask` with `reader`, and of the reader closed-book;
    the RAG row also has the answer recall of the passages it read and its citation figures."""
    from tqdm.auto import tqdm

    from korag.collections.ask import AskStream

    rows: list[SystemRow] = []
    golds = {q.id: list(q.answers) for q in questions}
    preds: dict[str, str] = {}
    cited = invalid = answered_in_sources = 0
    t0 = time.perf_counter()
    for q in tqdm(questions, desc="ask", unit="question", disable=not show_progress):
        answer = collection.ask(q.question, k=k, retriever=retriever, reader=reader)
        preds[q.id] = answer.text
        cited += bool(answer.cited)
        invalid += answer.invalid_citations
        answered_in_sources += any(contains_answer(h.text, q.answers) for h in answer.sources)
    n = len(questions)
    rag = evaluate_answers(preds, golds).metrics
    kind = collection.config.resolve(retriever)
    rows.append(
        SystemRow(
            System.RAG,
            f"ask ({kind}, k={k})",
            {
                **rag,
                f"answer_recall@{k}": answered_in_sources / n,
                "cited_share": cited / n,
                "invalid_citations": invalid,
                "seconds_per_question": (time.perf_counter() - t0) / n,
                "predictions": preds,
            },
            {"retriever": kind, "k": k},
        )
    )
    if closed_book:
        closed: dict[str, str] = {}
        t0 = time.perf_counter()
        for q in tqdm(questions, desc="closed-book", unit="question", disable=not show_progress):
            closed[q.id] = AskStream(q.question, [], reader, "", {}).result().text
        rows.append(
            SystemRow(
                System.CLOSED_BOOK,
                "closed-book",
                {
                    **evaluate_answers(closed, golds).metrics,
                    "seconds_per_question": (time.perf_counter() - t0) / n,
                    "predictions": closed,
                },
            )
        )
    return rows


@contextmanager
def corpus_collection(
    sources: Sequence[str],
    config: CollectionConfig | None = None,
    *,
    home: str | Path | None = None,
    show_progress: bool = False,
) -> Iterator[tuple[Collection, AddReport | None]]:
    """The collection to evaluate: an existing one when `sources` is one collection name or
    directory, else a temporary one built from the files and folders (chunked and indexed as
    `korag add` would, removed afterwards)."""
    if len(sources) == 1:
        path = collection_path(sources[0], home)
        if (path / CONFIG_FILE).is_file():  # its retrievers were chosen when it was created
            yield Collection.open(path), None
            return
    with tempfile.TemporaryDirectory(prefix="korag-eval-") as tmp:
        coll = Collection.create(Path(tmp) / "c", config or CollectionConfig(name="eval"))
        report = coll.add(list(sources), show_progress=show_progress)
        if not len(coll):
            skipped = "; ".join(r for _, r in report.skipped[:3])
            raise ConfigError(f"none of {', '.join(sources)} could be read ({skipped})")
        yield coll, report
