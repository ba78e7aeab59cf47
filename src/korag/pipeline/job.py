"""`korag run` and `korag status` as library functions."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from korag.pipeline.flows.common import RecipeBase
from korag.pipeline.recipe import load_recipe
from korag.pipeline.runner import TaskOutcome, plan_keys, run_plan
from korag.pipeline.stage import Task
from korag.pipeline.store import ArtifactStore

DEFAULT_WORKSPACE = "korag-workspace"


@dataclass
class JobResult:
    """Outcome of running a recipe."""

    recipe: RecipeBase
    workspace: Path
    outcomes: list[TaskOutcome]

    @property
    def report_dir(self) -> Path | None:
        """Directory of the report artifact, if the report exists."""
        for o in self.outcomes:
            if o.task_id == "report" and o.status in ("ran", "cached"):
                return o.path
        return None

    def report(self) -> dict | None:
        """The report's ``report.json`` (runs, settings, metrics), if the report exists."""
        import json

        d = self.report_dir
        if d is None or not (d / "report.json").is_file():
            return None
        return json.loads((d / "report.json").read_text(encoding="utf-8"))

    def notes(self) -> list[str]:
        """Lines a person needs after the run: where an index is and how to search it, when the
        recipe built indexes it did not evaluate."""
        lines = []
        load = next((o for o in self.outcomes if o.task_id == "load" and o.status in ("ran", "cached")), None)
        loaded = _metrics(load.path) if load else {}
        skipped = loaded.get("skipped", [])
        if skipped:
            lines.append(f"[yellow]{len(skipped)} file(s) could not be read and were skipped:[/]")
            lines += [f"  {reason}" for reason in skipped]
        if loaded.get("questions_without_answer_passage"):
            lines.append(
                f"[yellow]{loaded['questions_without_answer_passage']} question(s) have no passage containing "
                "their answer and are not scored[/] (korag eval retrieval QUESTIONS --corpus … counts them as misses)"
            )
        for o in self.outcomes:
            if o.stage == "bm25-index" and o.status in ("ran", "cached") and not self._evaluated(o.task_id):
                lines.append(f"Index {o.task_id}: {o.path}")
                lines.append(f'  search it: korag search {o.path} "질문" -k 5')
        return lines

    def _evaluated(self, index_task: str) -> bool:
        run = index_task.split("/", 1)[-1]
        return any(o.task_id == f"evaluate/{run}" for o in self.outcomes)

    @property
    def executed(self) -> list[str]:
        """Ids of the tasks that actually ran."""
        return [o.task_id for o in self.outcomes if o.status == "ran"]


def command_line(recipe: str | None, overrides: Sequence[str]) -> str:
    """The `korag run` command that reproduces a job (workspace aside); ``korag run`` and ``korag
    run default`` are the same job, so they give the same command (and report key)."""
    parts = ["korag", "run", recipe or "default"]
    for o in overrides:
        parts += ["--set", o]
    return " ".join(shlex.quote(p) for p in parts)


def prepare(
    recipe: str | Path | None, overrides: Sequence[str], *, new_runs: bool = False
) -> tuple[RecipeBase, list[Task]]:
    """Load and validate a recipe and plan its tasks (`new_runs`: ``--set runs.<new>.…`` may add a run)."""
    parsed = load_recipe(recipe, overrides, new_runs=new_runs)
    return parsed, parsed.plan(command_line(str(recipe) if recipe else None, overrides))


def run_job(
    recipe: str | Path | None = None,
    *,
    workspace: str | Path = DEFAULT_WORKSPACE,
    overrides: Sequence[str] = (),
    only: Sequence[str] | None = None,
    show_progress: bool = True,
    on_event: Callable | None = None,
    new_runs: bool = False,
) -> JobResult:
    """Run a recipe (the built-in default when None) in `workspace`; cached stages are skipped."""
    parsed, tasks = prepare(recipe, overrides, new_runs=new_runs)
    store = ArtifactStore(workspace)
    outcomes = run_plan(tasks, store, only=only, show_progress=show_progress, on_event=on_event)
    return JobResult(parsed, store.root, outcomes)


def _metrics(artifact_dir: Path) -> dict:
    import json

    manifest = artifact_dir / "manifest.json"
    return json.loads(manifest.read_text(encoding="utf-8")).get("metrics", {}) if manifest.is_file() else {}


@dataclass
class TaskState:
    """Cache state of one planned task."""

    task_id: str
    stage: str
    key: str
    state: str  # "cached", "missing" or "running"
    path: Path


def job_status(
    recipe: str | Path | None, *, workspace: str | Path, overrides: Sequence[str] = (), new_runs: bool = False
) -> list[TaskState]:
    """For each task of the recipe's plan: is its output in the store?"""
    _, tasks = prepare(recipe, overrides, new_runs=new_runs)
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
