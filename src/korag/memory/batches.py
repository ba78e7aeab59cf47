"""Answering questions in batches, for every memory model's evaluation."""

from __future__ import annotations

from collections.abc import Callable

from tqdm.auto import tqdm


def collect_batches(
    n: int,
    answer: Callable[[slice], tuple[list[str], list[list[int]] | None]],
    *,
    batch_size: int = 8,
    desc: str = "",
    show_progress: bool = False,
) -> tuple[list[str], list[list[int]] | None]:
    """(answers, rows read, or None when `answer` reports none) of `answer(slice)` over n
    questions in batches."""
    preds: list[str] = []
    chosen: list[list[int]] | None = []
    for s in tqdm(range(0, n, batch_size), desc=desc, disable=not show_progress, leave=False):
        p, c = answer(slice(s, s + batch_size))
        preds += p
        chosen = None if c is None or chosen is None else chosen + c
    return preds, chosen
