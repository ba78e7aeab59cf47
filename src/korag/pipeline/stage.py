"""Stages, tasks and their keys.

A *stage* is a function from input artifacts and parameters to an output directory. A *task*
is one use of a stage in a plan: its parameters and which tasks feed its inputs. A task's
*key* hashes the stage name, the stage version, the parameters and the keys of its inputs, so
a change anywhere upstream changes every key downstream — and nothing else.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from korag.pipeline.artifacts import Kind
from korag.pipeline.store import Artifact


@dataclass
class StageContext:
    """What a stage function gets: where to write, its parameters and its input artifacts."""

    task_id: str
    out: Path
    params: dict[str, Any]
    inputs: dict[str, Artifact]
    show_progress: bool = True
    scratch_dir: Path | None = None
    cache_dir: Path | None = None  # the workspace's shared cache (converted models), outside any key

    @property
    def scratch(self) -> Path:
        """A crash-surviving directory for resumable work (see `ArtifactStore.scratch`)."""
        if self.scratch_dir is None:
            raise RuntimeError(f"task {self.task_id} has no scratch directory")
        self.scratch_dir.mkdir(parents=True, exist_ok=True)
        return self.scratch_dir

    def input(self, name: str) -> Artifact:
        """The input artifact called `name`."""
        return self.inputs[name]

    def inputs_named(self, prefix: str) -> dict[str, Artifact]:
        """Inputs whose names start with ``<prefix>:``, keyed by the rest of the name."""
        p = prefix + ":"
        return {n[len(p) :]: a for n, a in self.inputs.items() if n.startswith(p)}


StageFn = Callable[[StageContext], Mapping[str, Any] | None]


@dataclass(frozen=True)
class Stage:
    """A named, versioned stage function producing one kind of artifact. Bump `version` when its
    outputs change meaning."""

    name: str
    version: int
    fn: StageFn
    produces: Kind
    description: str = ""


@dataclass(frozen=True)
class Task:
    """One node of a plan."""

    id: str
    stage: Stage
    params: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)  # input name → producing task id


def canonical_json(obj: Any) -> str:
    """Stable JSON for hashing (sorted keys, no whitespace, Unicode kept)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def task_key(stage: Stage, params: Mapping[str, Any], input_keys: Mapping[str, str]) -> str:
    """The content hash identifying a task's output."""
    payload = {"stage": stage.name, "version": stage.version, "params": params, "inputs": dict(input_keys)}
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()[:16]
