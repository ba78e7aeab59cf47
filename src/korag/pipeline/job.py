"""`korag run` and `korag status` as library functions."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from korag.pipeline.plan import plan_recipe
from korag.pipeline.recipe import Recipe, load_recipe
from korag.pipeline.runner import TaskOutcome, plan_keys, run_plan
from korag.pipeline.stage import Task
from korag.pipeline.store import ArtifactStore

DEFAULT_WORKSPACE = "korag-workspace"


@dataclass
class JobResult:
    """Outcome of running a recipe."""

    recipe: Recipe
    workspace: Path
    outcomes: list[TaskOutcome]

    @property
    def report_dir(self) -> Path | None:
        """Directory of the report artifact, if the report exists."""
        for o in self.outcomes:
            if o.task_id == "report" and o.status in ("ran", "cached"):
                return o.path
        return None

    @property
    def executed(self) -> list[str]:
        """Ids of the tasks that actually ran."""
        return [o.task_id for o in self.outcomes if o.status == "ran"]


def command_line(recipe: str | None, overrides: Sequence[str]) -> str:
    """The `korag run` command that reproduces a job (workspace aside)."""
    parts = ["korag", "run"] + ([recipe] if recipe else [])
    for o in overrides:
        parts += ["--set", o]
    return " ".join(shlex.quote(p) for p in parts)


def prepare(recipe: str | Path | None, overrides: Sequence[str]) -> tuple[Recipe, list[Task]]:
    """Load and validate a recipe and plan its tasks."""
    parsed = load_recipe(recipe, overrides)
    return parsed, plan_recipe(parsed, command_line(str(recipe) if recipe else None, overrides))


def run_job(
    recipe: str | Path | None = None,
    *,
    workspace: str | Path = DEFAULT_WORKSPACE,
    overrides: Sequence[str] = (),
    only: Sequence[str] | None = None,
    show_progress: bool = True,
    on_event: Callable | None = None,
) -> JobResult:
    """Run a recipe (the built-in default when None) in `workspace`; cached stages are skipped."""
    parsed, tasks = prepare(recipe, overrides)
    store = ArtifactStore(workspace)
    outcomes = run_plan(tasks, store, only=only, show_progress=show_progress, on_event=on_event)
    return JobResult(parsed, store.root, outcomes)


@dataclass
class TaskState:
    """Cache state of one planned task."""

    task_id: str
    stage: str
    key: str
    state: str  # "cached", "missing" or "running"
    path: Path


def job_status(recipe: str | Path | None, *, workspace: str | Path, overrides: Sequence[str] = ()) -> list[TaskState]:
    """For each task of the recipe's plan: is its output in the store?"""
    _, tasks = prepare(recipe, overrides)
    store = ArtifactStore(workspace)
    keys = plan_keys(tasks)
    out = []
    for t in tasks:
        key = keys[t.id]
        if store.get(t.stage.name, key) is not None:
            state = "cached"
        elif store.is_locked(t.stage.name, key):
            state = "running"
        else:
            state = "missing"
        out.append(TaskState(t.id, t.stage.name, key, state, store.path(t.stage.name, key)))
    return out
