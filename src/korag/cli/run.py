"""`korag run`, `korag sweep`, `korag status` and `korag tensorboard`: recipes over the artifact store."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from korag.cli.common import SetOpt, WorkspaceOpt, err, out
from korag.errors import ConfigError

RecipeArg = Annotated[str | None, typer.Argument(help="recipe file or built-in name [default: default]")]
NewRunOpt = Annotated[bool, typer.Option("--new-run", help="let --set runs.<name>.… add a run the recipe lacks")]


def register(app: typer.Typer) -> None:
    """Add the commands of this group to the top-level app."""
    app.command()(run)
    app.command()(sweep)
    app.command()(status)
    app.command()(tensorboard)


def run(
    recipe: RecipeArg = None,
    workspace: WorkspaceOpt = Path("korag-workspace"),
    set_: SetOpt = None,
    new_run: NewRunOpt = False,
    only: Annotated[list[str] | None, typer.Option("--only", help="run just this task (its inputs must exist)")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress output")] = False,
) -> None:
    """Run a recipe: every stage whose output is not yet in the workspace, then show the report."""
    from korag.eval.tables import report_table
    from korag.pipeline.job import run_job

    def event(kind: str, task, key: str) -> None:
        if quiet:
            return
        if kind == "start":
            err.print(f"[bold]▶ {task.id}[/] [dim]({task.stage.name} {key})[/]")
        elif kind == "waiting":
            err.print(f"[yellow]… {task.id} is being run by another process; waiting for it[/]")

    result = run_job(
        recipe,
        workspace=workspace,
        overrides=set_ or [],
        only=only,
        show_progress=not quiet,
        on_event=event,
        new_runs=new_run,
    )
    table = Table(title=f"korag run {result.recipe.name} — {result.workspace}")
    for col in ("task", "stage", "key", "status", "seconds"):
        table.add_column(col, justify="right" if col == "seconds" else "left")
    for o in result.outcomes:
        style = {"ran": "green", "cached": "cyan"}.get(o.status, "yellow")
        table.add_row(o.task_id, o.stage, o.key, f"[{style}]{o.status}[/]", f"{o.seconds:.2f}" if o.seconds else "")
    out.print(table)
    ran = len(result.executed)
    out.print(f"{ran} stage(s) executed, {len(result.outcomes) - ran} reused.")
    report = result.report()
    if report is not None:
        if any(r.get("metrics") for r in report.get("runs", [])):
            out.print(report_table(report, getattr(getattr(result.recipe, "eval", None), "metrics", None)))
        for line in result.notes():
            out.print(line)
        out.print(f"Report: {result.report_dir / 'report.md'}")


def sweep(
    recipe: Annotated[str, typer.Argument(help="recipe file or built-in name")],
    more: Annotated[
        list[str] | None, typer.Argument(help="further key=v1,v2,… grid entries (as in --grid a=1,2 b=3,4)")
    ] = None,
    grid: Annotated[
        list[str] | None,
        typer.Option(help="key=v1,v2,… (repeatable, or followed by more entries); 'seed=0,1,2' adds seeds"),
    ] = None,
    workspace: WorkspaceOpt = Path("korag-workspace"),
    set_: SetOpt = None,
    metric: Annotated[list[str] | None, typer.Option("--metric", help="metrics to show [default: all]")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress output")] = False,
) -> None:
    """Run a recipe at every point of a grid (each point's stages cached), then tabulate and plot."""
    from korag.pipeline.sweep import metric_cell, run_sweep

    def point(i: int, n: int, settings: dict) -> None:
        if not quiet:
            err.print(f"[bold]▶ point {i + 1}/{n}[/] " + " ".join(f"{k}={v}" for k, v in settings.items()))

    result = run_sweep(
        recipe,
        [*(grid or []), *(more or [])],
        workspace=workspace,
        overrides=set_ or [],
        metrics=metric,
        show_progress=not quiet,
        on_point=point,
    )
    shown = [m for m in (metric or sorted({k for r in result.rows for k in r})) if m not in result.keys]
    shown = [m for m in shown if m != "seeds" and not m.endswith("_std")][:8]
    group = [k for k in result.keys if any(k in r for r in result.rows)]
    table = Table(title=f"korag sweep {recipe}: {len(result.points)} point(s)")
    for col in [*group, "seeds", *shown]:
        table.add_column(col, justify="left" if col in group else "right")
    for r in result.rows:
        table.add_row(*[str(r.get(k)) for k in group], str(r["seeds"]), *[metric_cell(r, m) for m in shown])
    out.print(table)
    ran = len(result.executed)
    out.print(f"{ran} stage(s) executed across the points; sweep report: {result.files['md']}")


def status(
    recipe: Annotated[
        str | None, typer.Argument(help="recipe file or built-in name; omit to list the whole store")
    ] = None,
    workspace: WorkspaceOpt = Path("korag-workspace"),
    set_: SetOpt = None,
    new_run: NewRunOpt = False,
    all_: Annotated[bool, typer.Option("--all", help="list every artifact in the workspace")] = False,
) -> None:
    """Show which stages of a recipe are cached, missing or running — or every artifact in the store."""
    from korag.pipeline.job import job_status
    from korag.pipeline.store import ArtifactStore

    store = ArtifactStore(workspace)  # reading a store never creates it
    if all_ or (recipe is None and set_ is None):
        entries = store.entries()
        if not entries:
            out.print(f"{store.root}: no artifacts yet (korag run creates them)")
            return
        table = Table(title=f"artifacts in {store.root}")
        for col in ("stage", "key", "state", "task", "s", "created"):
            table.add_column(col, justify="right" if col == "s" else "left", overflow="fold")
        for e in entries:
            m = e.manifest or {}
            seconds = m.get("seconds")
            table.add_row(
                e.stage,
                e.key[:8],
                "ok" if e.complete else "[red]incomplete[/]",
                str(m.get("task", "")),
                f"{seconds:.0f}" if isinstance(seconds, int | float) else "",
                str(m.get("started_at", ""))[:16].replace("T", " "),
            )
        out.print(table)
        return
    states = job_status(recipe, workspace=workspace, overrides=set_ or [], new_runs=new_run)
    table = Table(title=f"{recipe or 'default'} in {store.root}")
    for col in ("task", "stage", "key", "state"):
        table.add_column(col, overflow="fold")
    for s in states:
        style = {"cached": "cyan", "running": "yellow"}.get(s.state, "red")
        table.add_row(s.task_id, s.stage, s.key[:8], f"[{style}]{s.state}[/]")
    out.print(table)


def tensorboard(
    logdir: Annotated[Path, typer.Argument(help="a workspace or training output directory")],
    port: Annotated[int, typer.Option(help="port to serve on")] = 6006,
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
) -> None:
    """Launch TensorBoard over every run found under LOGDIR."""
    import subprocess

    from korag.cli.common import require_extra

    require_extra("dense", "korag tensorboard")
    if not logdir.exists():
        raise ConfigError(f"{logdir}: no such directory")
    out.print(f"TensorBoard on http://{host}:{port} for {logdir} (Ctrl-C to stop)")
    raise typer.Exit(
        subprocess.call(
            [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--port", str(port), "--host", host]
        )
    )
