"""Continuing a training run from its checkpoints only under the settings that wrote them.

Every trainer (dense, sparse, reranker, CLaRa, parametric QA) records its settings in
``run_config.json`` beside its checkpoints; a rerun that finds checkpoints compares the two and
refuses to continue when anything that changes what is trained differs. Silently mixing two
configurations — or skipping training because an old run already reached its last step — is
worse than stopping.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from korag import atomic
from korag.errors import ConfigError

RUN_CONFIG = "run_config.json"


# settings that may change between a run and its continuation without changing what is trained
_RESUME_FREE = {"keep_checkpoints", "logging_steps", "histogram_steps", "histogram_layers", "device"}


def check_resumable(output: Path, config: BaseModel, last: str | None) -> None:
    """Refuse to continue the checkpoints in `output` (the newest is `last`; None: not resuming)
    when they were written under different settings, then record this run's settings."""
    path = output / RUN_CONFIG
    current = json.loads(config.model_dump_json())
    if last is not None and path.is_file():
        before = json.loads(path.read_text(encoding="utf-8"))
        changed = sorted(
            k for k in set(before) | set(current) if k not in _RESUME_FREE and before.get(k) != current.get(k)
        )
        if changed:
            raise ConfigError(
                f"{output}: its checkpoints were trained with different settings ({', '.join(changed)}); "
                "use another output directory or start over (--no-resume)"
            )
    if last is None and (output / "checkpoints").is_dir():
        shutil.rmtree(output / "checkpoints")  # not resuming: stale checkpoints must not be picked up later
    atomic.write_json(path, current)


def intact_records(path: Path) -> list[tuple[Any, int]]:
    """The records of an append-only JSON Lines progress file up to its first torn or undecodable
    line (a crash mid-write), each with the byte offset where its line ends."""
    out: list[tuple[Any, int]] = []
    end = 0
    with path.open("rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                break
            try:
                rec = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                break
            end += len(raw)
            out.append((rec, end))
    return out


def drop_torn_tail(path: Path, good: int) -> None:
    """Cut `path` back to its first `good` bytes (the intact lines) so appends continue cleanly."""
    if good != path.stat().st_size:
        with path.open("r+b") as fh:
            fh.truncate(good)
