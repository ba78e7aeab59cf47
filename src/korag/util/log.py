"""Logging: library code logs through `logging.getLogger(__name__)`; the CLI sets the levels.

Nothing in korag changes logging globally: a third-party warning that is wrong for korag's use
is dropped by a filter on the logger that emits it, for the duration of one call.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator


class _DropContaining(logging.Filter):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


@contextlib.contextmanager
def without_message(text: str, logger: str | None = None) -> Iterator[None]:
    """Inside the block, drop the records of `logger` (the root logger by default) that contain `text`."""
    target = logging.getLogger(logger)
    drop = _DropContaining(text)
    target.addFilter(drop)
    try:
        yield
    finally:
        target.removeFilter(drop)


def configure(verbosity: int = 0) -> None:
    """The CLI's logging: korag's INFO records (or DEBUG with ``-v``, only errors with ``-q``)
    on stderr, other libraries' warnings and above."""
    level = logging.DEBUG if verbosity > 0 else logging.ERROR if verbosity < 0 else logging.INFO
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname).1s %(name)s: %(message)s" if verbosity > 0 else "%(message)s"))
    korag_log = logging.getLogger("korag")
    korag_log.handlers[:] = [handler]
    korag_log.setLevel(level)
    korag_log.propagate = False
    logging.getLogger().setLevel(logging.DEBUG if verbosity > 0 else logging.WARNING)


def time_estimate(done: int, total: int, seconds: float) -> str:
    """ "3 of 75 steps in 12 s: ~4.0 s/step, about 5 min for all of them"."""
    per = seconds / max(1, done)
    left = per * total
    span = f"{left / 60:.0f} min" if left >= 90 else f"{left:.0f} s"
    return f"{done} of {total} steps in {seconds:.0f} s: ~{per:.1f} s/step, about {span} for all of them"
