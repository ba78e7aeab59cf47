"""Parametric QA beside its baselines, on the same questions, the same base LM and the same k:

| row | what the LM sees |
|---|---|
| closed-book | the question alone |
| BM25-RAG, dense-RAG, hybrid-RAG | the top-k passages of that retriever as text |
| oracle | the gold passages as text |
| CLaRa | the BM25 top-k compressed by a trained CLaRa model (memory tokens) |
| xRAG | the dense top-k, each as one soft token projected from its dense embedding |
| PQA | the selected documents' z as soft tokens (no text, no retriever) |

Text baselines run the PQA model's own base LM with adapters off (`TextReader`). Every row
carries EM/F1 (SQuAD and KorQuAD normalisation), whether the gold passages were among the k it
read, and milliseconds per question.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from korag.data.schema import Corpus, QAExample, Queries
from korag.eval.comparison import System, SystemRow
from korag.eval.qa import evaluate_answers
from korag.memory.batches import collect_batches
from korag.memory.text_rag import TextReader

Record = tuple[QAExample, tuple[int, ...]]
RETRIEVER_LABELS = {"bm25": "BM25", "dense": "dense", "hybrid": "hybrid"}


def answer_scores(preds: Sequence[str], records: Sequence[Record]) -> dict[str, float]:
    """EM/F1/cover-EM (both normalisations) of one prediction per record."""
    golds = {f"q{i}": list(e.answers) for i, (e, _) in enumerate(records)}
    return dict(evaluate_answers({f"q{i}": p for i, p in enumerate(preds)}, golds).metrics)


def gold_read(records: Sequence[Record], chosen: Sequence[Sequence[int]]) -> dict[str, float]:
    """Share of questions whose read documents held all (and any) of their gold documents."""
    pairs = [(set(g), set(c)) for (_, g), c in zip(records, chosen, strict=True)]
    return {
        "all_gold_selected": float(np.mean([g <= c for g, c in pairs])),
        "any_gold_selected": float(np.mean([bool(g & c) for g, c in pairs])),
    }


def _row(preds: Sequence[str], records: Sequence[Record], chosen: Sequence[Sequence[int]] | None, seconds: float):
    row: dict[str, Any] = answer_scores(preds, records)
    if chosen is not None:
        row.update(gold_read(records, chosen))
    row["ms_per_question"] = 1000 * seconds / max(1, len(records))
    row["predictions"] = list(preds)
    return row


def run_batched(
    records: Sequence[Record],
    answer: Callable[[list[str], slice], tuple[list[str], list[list[int]] | None]],
    *,
    batch_size: int = 8,
) -> dict[str, Any]:
    """One table row from `answer(questions, slice)` → (answers, rows read or None), in batches."""
    questions = [e.question for e, _ in records]
    t0 = time.perf_counter()
    preds, chosen = collect_batches(len(records), lambda sl: answer(questions[sl], sl), batch_size=batch_size)
    return _row(preds, records, chosen, time.perf_counter() - t0)


def retrieved_rows(retriever, corpus: Corpus, records: Sequence[Record], k: int) -> list[list[int]]:
    """Each question's top-k rows of `corpus` (the pool's order) from an indexed retriever."""
    queries = Queries([f"q{i}" for i in range(len(records))], [e.question for e, _ in records])
    ranking = retriever.search(queries, k=k)
    position = {d: i for i, d in enumerate(corpus.ids)}
    return [[position[d] for d, _ in ranking.row(i)[:k]] for i in range(len(records))]


def text_baselines(
    text: TextReader,
    corpus: Corpus,
    records: Sequence[Record],
    *,
    k: int,
    retrieved: dict[str, list[list[int]]],
    with_title: bool = True,
    closed_book: bool = True,
    oracle: bool = True,
    batch_size: int = 8,
) -> list[SystemRow]:
    """Closed-book, text RAG for each retriever's rows in `retrieved` (keyed by retriever name:
    bm25, dense, hybrid), and the oracle."""
    contents = corpus.contents(with_title)
    rows: list[SystemRow] = []
    if closed_book:
        row = run_batched(records, lambda q, sl: (text.answer(q), None), batch_size=batch_size)
        rows.append(SystemRow(System.CLOSED_BOOK, "closed-book", row))
    for name, chosen in retrieved.items():

        def rag(q, sl, chosen=chosen):
            picked = chosen[sl]
            return text.answer(q, [[contents[r] for r in rs] for rs in picked]), picked

        label = f"{RETRIEVER_LABELS.get(name, name)}-RAG (text, top-{k})"
        row = run_batched(records, rag, batch_size=batch_size)
        rows.append(SystemRow(System.TEXT_RAG, label, row, {"retriever": name, "k": k}))
    if oracle:
        gold = [list(g) for _, g in records]
        row = run_batched(
            records,
            lambda q, sl: (text.answer(q, [[contents[r] for r in g] for g in gold[sl]]), gold[sl]),
            batch_size=batch_size,
        )
        rows.append(SystemRow(System.ORACLE, "oracle (gold passages as text)", row))
    return rows


def clara_row(reader, corpus: Corpus, records: Sequence[Record], chosen: list[list[int]], *, batch_size: int = 8):
    """CLaRa answering from the compressed passages at `chosen` (a `ClaraReader`)."""
    contents = corpus.contents(True)

    def answer(q, sl):
        picked = chosen[sl]
        return reader.answer(q, [[contents[r] for r in rs] for rs in picked]), picked

    return run_batched(records, answer, batch_size=batch_size)


def xrag_row(reader, records: Sequence[Record], chosen: list[list[int]], *, batch_size: int = 8):
    """An xRAG-style model (a `PQAReader` over encoder memories) reading the rows at `chosen`."""
    return run_batched(records, lambda q, sl: (reader.answer_from(q, chosen[sl]), chosen[sl]), batch_size=batch_size)
