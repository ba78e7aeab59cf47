"""Locating answer spans in contexts."""

from __future__ import annotations


def find_span(context: str, answer: str, hint: int | None = None) -> int:
    """Start of the occurrence of `answer` in `context` closest to `hint` (-1 if none).

    Used where a dataset's offsets are missing, stale after cleaning, or a few characters off.
    """
    if hint is not None and hint >= 0 and context.startswith(answer, hint):
        return hint
    best, best_dist = -1, None
    start = context.find(answer)
    while start >= 0:
        if hint is None:
            return start
        dist = abs(start - hint)
        if best_dist is None or dist < best_dist:
            best, best_dist = start, dist
        elif start > hint:
            break
        start = context.find(answer, start + 1)
    return best
