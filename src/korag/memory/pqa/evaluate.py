"""What a parametric-QA model holds and how well it answers.

- **Write quality**: reconstruction NLL and token accuracy (teacher-forced), ROUGE-L of free
  greedy generation from z alone, and the identification matrix NLL(D_i | z_j): a document is
  identified when its own memory explains it best (top-1 of its row), with the margin to the best
  other memory. Two controls say whether that is information in z read through the learned
  projection: z shuffled among documents (a derangement: top-1 must fall to chance) and a fresh
  random projection (the same z, read through weights that never saw them).
- **Reading**: selection recall@k and MRR (korag's IR metrics over the pool), QA EM/F1 from the
  gold documents' memories and from the selected ones, and their gap.
- **Efficiency**: bytes per document's memory (against its text), select and generate seconds
  per question, the process's peak memory.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from korag.data.schema import QAExample, Qrels, Ranking
from korag.eval.comparison import System, SystemRow
from korag.eval.generation import rouge_l
from korag.eval.ir import evaluate_ranking
from korag.memory.batches import collect_batches
from korag.memory.pqa.baselines import answer_scores, gold_read
from korag.memory.pqa.inference import Intermediate, PQAReader
from korag.memory.pqa.model import ParametricQA


@torch.no_grad()
def identification_matrix(
    model: ParametricQA,
    docs: Sequence[str],
    z: torch.Tensor,
    *,
    batch_size: int = 64,
    show_progress: bool = False,
) -> np.ndarray:
    """NLL(D_i | z_j) for every document i (rows) and memory j (columns)."""
    n, m = len(docs), z.shape[0]
    out = np.zeros((n, m), dtype=np.float32)
    pairs = [(i, j) for j in range(m) for i in range(n)]
    for s in tqdm(range(0, len(pairs), batch_size), desc="identification", disable=not show_progress, leave=False):
        chunk = pairs[s : s + batch_size]
        nll, _ = model.document_scores([docs[i] for i, _ in chunk], z[[j for _, j in chunk]])
        for (i, j), v in zip(chunk, nll.tolist(), strict=True):
            out[i, j] = v
    return out


def identification(matrix: np.ndarray, truth: Sequence[int] | None = None) -> dict[str, float]:
    """Top-1 / top-5 identification and margins of an NLL matrix whose document i belongs with
    memory ``truth[i]`` (the diagonal by default)."""
    n = matrix.shape[0]
    truth_arr = np.arange(n) if truth is None else np.asarray(truth)
    own = matrix[np.arange(n), truth_arr]
    others = matrix.copy()
    others[np.arange(n), truth_arr] = np.inf
    rank = (matrix < own[:, None]).sum(1)  # memories explaining document i better than its own
    margin = others.min(1) - own
    return {
        "top1": float((rank == 0).mean()),
        "top5": float((rank < 5).mean()),
        "margin_mean": float(margin.mean()),
        "margin_min": float(margin.min()),
        "chance_top1": 1.0 / matrix.shape[1],
    }


def derangement(n: int, seed: int = 0) -> np.ndarray:
    """A permutation of range(n) that moves every element (n ≥ 2)."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    while n > 1 and (perm == np.arange(n)).any():
        perm = rng.permutation(n)
    return perm


@torch.no_grad()
def write_quality(
    model: ParametricQA,
    docs: Sequence[str],
    *,
    rows: Sequence[int] | None = None,
    identify: int = 200,
    regenerate: int = 20,
    max_new_tokens: int | None = None,
    batch_size: int = 64,
    random_projection: bool = True,
    seed: int = 0,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Write-quality figures for `docs` (written at pool `rows`, default 0..n-1): reconstruction
    on all, identification on the first `identify`, free generation on the first `regenerate`."""
    rows = list(range(len(docs))) if rows is None else list(rows)
    z = model.memory()[rows]
    nll, acc = [], []
    for s in range(0, len(docs), batch_size):
        a, b = model.document_scores(docs[s : s + batch_size], z[s : s + batch_size])
        nll += a.tolist()
        acc += b.tolist()
    out: dict[str, Any] = {"documents": len(docs), "nll": float(np.mean(nll)), "token_acc": float(np.mean(acc))}
    if regenerate:
        texts = []
        for s in range(0, min(regenerate, len(docs)), batch_size):
            texts += model.regenerate(z[s : min(s + batch_size, regenerate)], max_new_tokens=max_new_tokens)
        refs = docs[: len(texts)]
        out["rouge_l"] = float(np.mean([rouge_l(t, r) for t, r in zip(texts, refs, strict=True)]))
        out["rouge_l_char"] = float(np.mean([rouge_l(t, r, "char") for t, r in zip(texts, refs, strict=True)]))
        out["generations"] = texts
    n = min(identify, len(docs))
    if n >= 2:
        matrix = identification_matrix(model, docs[:n], z[:n], batch_size=batch_size, show_progress=show_progress)
        out["identification"] = identification(matrix)
        # document i paired with memory perm[i], never its own: a reader of content must fail
        out["shuffled"] = identification(matrix[:, derangement(n, seed)])
        if random_projection:
            out["random_projection"] = identification(_with_random_projection(model, docs[:n], z[:n], seed, batch_size))
    return out


def _with_random_projection(model: ParametricQA, docs, z, seed: int, batch_size: int) -> np.ndarray:
    trained = model.projection
    torch.manual_seed(seed)
    model.projection = model.new_projection()
    try:
        return identification_matrix(model, docs, z, batch_size=batch_size)
    finally:
        model.projection = trained


def selection_metrics(
    reader: PQAReader, examples: Sequence[tuple[QAExample, tuple[int, ...]]], doc_ids: Sequence[str], *, k: int = 10
) -> dict[str, float]:
    """recall@1/@5/@10 and MRR@10 of the selector over the whole pool."""
    qids = [f"q{i}" for i in range(len(examples))]
    scores = reader.scores([e.question for e, _ in examples])
    top = torch.topk(scores, min(k, scores.shape[1]), dim=-1)
    ranking = Ranking(qids, top.indices.cpu().numpy(), top.values.float().cpu().numpy(), list(doc_ids))
    qrels = Qrels({q: {doc_ids[r]: 1 for r in g} for q, (_, g) in zip(qids, examples, strict=True)})
    metrics = [f"recall@{a}" for a in (1, 5, 10) if a <= k] + [f"mrr@{k}"]
    return evaluate_ranking(ranking, qrels, metrics).metrics


def peak_memory_mb() -> float:
    """The process's peak resident memory (CUDA: the peak allocated) in MB."""
    if torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
        return torch.cuda.max_memory_allocated() / 2**20
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def evaluate_reading(
    reader: PQAReader,
    examples: Sequence[tuple[QAExample, tuple[int, ...]]],
    doc_ids: Sequence[str],
    *,
    k: int = 1,
    multihop: bool = False,
    intermediate: Intermediate = "answer",
    batch_size: int = 8,
    show_progress: bool = False,
) -> list[SystemRow]:
    """Rows for one table: PQA from gold memories, from selected memories (one hop and, with
    `multihop`, iterative), each with EM/F1, selection recall and timings."""
    rows: list[SystemRow] = []
    questions = [e.question for e, _ in examples]
    gold = [g for _, g in examples]

    def run(system: System, name: str, fn) -> None:
        before = dict(reader.timings)
        t0 = time.perf_counter()
        preds, chosen = collect_batches(
            len(examples), fn, batch_size=batch_size, desc=name, show_progress=show_progress
        )
        assert chosen is not None  # every PQA row reports the memories it read
        row: dict[str, Any] = {**answer_scores(preds, examples), **gold_read(examples, chosen), "predictions": preds}
        n = len(examples)
        for t in reader.timings:
            row[f"{t.removesuffix('_seconds')}_ms_per_question"] = 1000 * (reader.timings[t] - before[t]) / n
        row["seconds"] = time.perf_counter() - t0
        rows.append(SystemRow(system, name, row, {"k": width}))

    width = max(len(g) for g in gold) if multihop else k
    gold_rows = [list(g[:width]) + [g[0]] * (width - len(g[:width])) for g in gold]
    run(
        System.PQA_GOLD,
        "pqa (gold z)",
        lambda sl: (reader.answer_from(questions[sl], gold_rows[sl]), gold_rows[sl]),
    )
    if reader.selector is not None:
        run(System.PQA_SELECTED, f"pqa (selected z, top-{width})", lambda sl: reader.answer(questions[sl], width))
        if multihop:
            run(
                System.PQA_ITERATIVE,
                f"pqa (iterative, {width} hops)",
                lambda sl: reader.answer_iterative(questions[sl], width, intermediate=intermediate)[:2],
            )
        sel = selection_metrics(reader, examples, doc_ids, k=min(10, len(doc_ids)))
        gold_row = rows[0].metrics
        for row in rows[1:]:
            row.metrics.update(sel)
            for metric in ("em_squad", "em_korquad"):
                row.metrics[f"{metric}_gap_to_gold"] = gold_row[metric] - row.metrics[metric]
    for row in rows:
        row.metrics["bytes_per_document"] = reader.model.storage_bytes_per_document()
        row.metrics["peak_memory_mb"] = peak_memory_mb()
    return rows
