"""Running a plan: compute keys, skip what the store already has, run the rest in order."""

from __future__ import annotations

import datetime as dt
import platform
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from korag import __version__
from korag.errors import ConfigError
from korag.pipeline.artifacts import missing_files
from korag.pipeline.stage import StageContext, Task, task_key
from korag.pipeline.store import ArtifactStore


@dataclass
class TaskOutcome:
    """What happened to one task."""

    task_id: str
    stage: str
    key: str
    status: str  # "cached", "ran", "skipped" (not selected) or "missing"
    seconds: float
    path: Path


def order_tasks(tasks: Sequence[Task]) -> list[Task]:
    """Tasks in dependency order; unknown inputs and cycles are `ConfigError`s."""
    by_id = {t.id: t for t in tasks}
    if len(by_id) != len(tasks):
        raise ConfigError("duplicate task ids in plan")
    ordered: list[Task] = []
    state: dict[str, int] = {}

    def visit(t: Task, trail: tuple[str, ...]) -> None:
        if state.get(t.id) == 2:
            return
        if state.get(t.id) == 1:
            raise ConfigError(f"cycle in plan: {' -> '.join((*trail, t.id))}")
        state[t.id] = 1
        for name, src in t.inputs.items():
            if src not in by_id:
                raise ConfigError(f"task '{t.id}' input '{name}' names unknown task '{src}'")
            visit(by_id[src], (*trail, t.id))
        state[t.id] = 2
        ordered.append(t)

    for t in tasks:
        visit(t, ())
    return ordered


def plan_keys(tasks: Sequence[Task]) -> dict[str, str]:
    """Key of every task (inputs first)."""
    keys: dict[str, str] = {}
    for t in order_tasks(tasks):
        keys[t.id] = task_key(t.stage, t.params, {n: keys[src] for n, src in t.inputs.items()})
    return keys


def run_plan(
    tasks: Sequence[Task],
    store: ArtifactStore,
    *,
    only: Iterable[str] | None = None,
    show_progress: bool = True,
    on_event: Callable[[str, Task, str], None] | None = None,
) -> list[TaskOutcome]:
    """Run every task whose output is not yet in `store` (or only the tasks in `only`, whose
    inputs must then exist). Returns one outcome per task, in execution order."""
    ordered = order_tasks(tasks)
    keys = plan_keys(ordered)
    by_id = {t.id: t for t in ordered}
    selected = set(only) if only is not None else None
    if selected is not None:
        unknown = selected - set(by_id)
        if unknown:
            raise ConfigError(f"unknown task(s) {', '.join(sorted(unknown))}; tasks: {', '.join(by_id)}")
    outcomes: list[TaskOutcome] = []
    for t in ordered:
        key = keys[t.id]
        path = store.path(t.stage.name, key)
        if selected is not None and t.id not in selected:
            art = store.get(t.stage.name, key)
            outcomes.append(TaskOutcome(t.id, t.stage.name, key, "cached" if art else "skipped", 0.0, path))
            continue
        if store.get(t.stage.name, key) is not None:
            outcomes.append(TaskOutcome(t.id, t.stage.name, key, "cached", 0.0, path))
            if on_event:
                on_event("cached", t, key)
            continue
        inputs = {
            name: store.require(by_id[src].stage.name, keys[src], needed_by=t.id, produced_by=src)
            for name, src in t.inputs.items()
        }
        if on_event and store.is_locked(t.stage.name, key):
            on_event("waiting", t, key)
        with store.lock(t.stage.name, key):
            if store.get(t.stage.name, key) is not None:  # another process finished it meanwhile
                outcomes.append(TaskOutcome(t.id, t.stage.name, key, "cached", 0.0, path))
                continue
            if on_event:
                on_event("start", t, key)
            started = dt.datetime.now(dt.UTC)
            t0 = time.perf_counter()
            with store.writing(t.stage.name, key) as tmp:
                scratch = store.scratch(t.stage.name, key)
                ctx = StageContext(t.id, tmp, dict(t.params), inputs, show_progress, scratch, store.root / ".cache")
                metrics = dict(t.stage.fn(ctx) or {})
                seconds = time.perf_counter() - t0
                missing = missing_files(t.stage.produces, tmp)
                if missing:
                    raise RuntimeError(f"stage {t.stage.name} produced a {t.stage.produces} without {missing}")
                store.write_manifest(tmp, _manifest(t, key, keys, by_id, metrics, started, seconds))
        outcomes.append(TaskOutcome(t.id, t.stage.name, key, "ran", seconds, path))
        if on_event:
            on_event("done", t, key)
    return outcomes


def _manifest(
    t: Task,
    key: str,
    keys: dict[str, str],
    by_id: dict[str, Task],
    metrics: dict[str, Any],
    started: dt.datetime,
    seconds: float,
) -> dict[str, Any]:
    return {
        "stage": t.stage.name,
        "stage_version": t.stage.version,
        "kind": t.stage.produces.value,
        "key": key,
        "task": t.id,
        "params": t.params,
        "inputs": {n: {"task": src, "stage": by_id[src].stage.name, "key": keys[src]} for n, src in t.inputs.items()},
        "started_at": started.isoformat(timespec="seconds"),
        "seconds": round(seconds, 4),
        "metrics": metrics,
        "korag_version": __version__,
        "python": platform.python_version(),
    }
