"""Sweeps: one recipe run at every point of a grid of settings, in one artifact store.

``korag sweep RECIPE --grid write.z_dim=64,128,256 --grid m_tokens=1,4,16 --grid seed=0,1,2``
plans the recipe once per point (the grid's values as ``--set`` overrides) and runs every plan in
the same workspace, so each point's stages are cached by their keys — points that share a write
phase share it, and a rerun (or a grid that grows) executes only what is new. Each point's
evaluation metrics are gathered; points that differ only in their seed are merged into mean ± std;
the result is a table (Markdown, JSON, the terminal) and one plot per numeric grid key (metric
against the key, one line per combination of the other keys).

A key without a dot is looked up among the recipe's settings and must name exactly one
(``z_dim`` → ``write.z_dim``).
"""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from korag import atomic
from korag.errors import ConfigError
from korag.pipeline.artifacts import Kind
from korag.pipeline.job import command_line, prepare
from korag.pipeline.runner import TaskOutcome, run_plan
from korag.pipeline.stage import canonical_json
from korag.pipeline.store import ArtifactStore

SEED = "seed"


def parse_grid(items: Sequence[str]) -> dict[str, list[str]]:
    """``["a.b=1,2", "c=x,y d=3"]`` → {"a.b": ["1", "2"], "c": ["x", "y"], "d": ["3"]}."""
    grid: dict[str, list[str]] = {}
    for item in items:
        for part in item.split():
            key, sep, values = part.partition("=")
            if not sep or not key or not values:
                raise ConfigError(f"--grid {part!r}: expected key=value1,value2,…")
            if key in grid:
                raise ConfigError(f"--grid names {key!r} twice")
            grid[key] = [v for v in values.split(",") if v != ""]
            if not grid[key]:
                raise ConfigError(f"--grid {part!r}: no values")
    if not grid:
        raise ConfigError("a sweep needs at least one --grid key=values")
    return grid


def _leaves(obj: Any, prefix: str = "") -> list[str]:
    if isinstance(obj, dict):
        return [leaf for k, v in obj.items() for leaf in _leaves(v, f"{prefix}{k}.")]
    return [prefix[:-1]]


def resolve_keys(recipe: Any, keys: Sequence[str]) -> dict[str, str]:
    """Each grid key as a dotted path of the recipe (short names must be unique leaves; a dotted
    key may name a leaf or a section that a value can stand for, e.g. ``read.selector=router``)."""
    leaves = _leaves(recipe.model_dump())
    out = {}
    for key in keys:
        if "." in key or key in leaves:
            if key not in leaves and not any(leaf.startswith(key + ".") for leaf in leaves):
                raise ConfigError(f"--grid {key}: the recipe has no setting {key!r}")
            out[key] = key
            continue
        matches = [leaf for leaf in leaves if leaf.rsplit(".", 1)[-1] == key]
        if len(matches) != 1:
            found = ", ".join(matches) if matches else "none"
            raise ConfigError(f"--grid {key}: it must name exactly one setting of the recipe (found: {found})")
        out[key] = matches[0]
    return out


def _value(raw: str) -> Any:
    return yaml.safe_load(raw)


@dataclass
class SweepResult:
    """Every point with its settings and metrics, the seed-merged rows and the report files."""

    keys: list[str]
    points: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    outcomes: list[list[TaskOutcome]] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def executed(self) -> list[str]:
        """Task ids that actually ran, per point, flattened."""
        return [o.task_id for run in self.outcomes for o in run if o.status == "ran"]


# The kinds of artifact whose metrics are evaluation figures.
EVALUATION_KINDS = (Kind.EVALUATION, Kind.COMPARISON, Kind.WRITE_QUALITY)


def point_metrics(outcomes: Sequence[TaskOutcome], store: ArtifactStore) -> dict[str, float]:
    """A point's evaluation figures: the metrics of its evaluation artifacts (prefixed by the run
    when a recipe evaluates several runs with one stage, as the retrieval flow does; the pqa
    flow's two evaluations measure different things and share one namespace)."""
    arts = [(o, store.get(o.stage, o.key)) for o in outcomes]
    evals = [(o, a) for o, a in arts if a is not None and a.kind in EVALUATION_KINDS]
    per_stage = Counter(o.stage for o, _ in evals)
    out: dict[str, float] = {}
    for o, art in evals:
        prefix = "" if per_stage[o.stage] == 1 else o.task_id.split("/", 1)[-1] + ":"
        out.update({prefix + k: v for k, v in art.metrics.items() if isinstance(v, int | float)})
    return out


def run_sweep(
    recipe: str | Path,
    grid_items: Sequence[str],
    *,
    workspace: str | Path,
    overrides: Sequence[str] = (),
    metrics: Sequence[str] | None = None,
    show_progress: bool = True,
    on_point: Callable[[int, int, dict[str, Any]], None] | None = None,
) -> SweepResult:
    """Run `recipe` at every grid point in `workspace`; write the sweep's table and plots under
    ``<workspace>/sweeps/<recipe>-<hash>/``."""
    grid = parse_grid(grid_items)
    template, _ = prepare(recipe, overrides)
    paths = resolve_keys(template, list(grid))
    store = ArtifactStore(workspace)
    keys = list(grid)
    result = SweepResult(keys)
    combos = list(itertools.product(*(grid[k] for k in keys)))
    for i, combo in enumerate(combos):
        settings = dict(zip(keys, combo, strict=True))
        if on_point:
            on_point(i, len(combos), settings)
        sets = [*overrides, *(f"{paths[k]}={v}" for k, v in settings.items())]
        _, tasks = prepare(recipe, sets)
        outcomes = run_plan(tasks, store, show_progress=show_progress)
        result.outcomes.append(outcomes)
        result.points.append({**{k: _value(v) for k, v in settings.items()}, **point_metrics(outcomes, store)})
    found = sorted({k for p in result.points for k in p if k not in keys})
    shown = [m for m in (metrics or found) if m in found]
    if metrics and len(shown) < len(metrics):
        missing = [m for m in metrics if m not in found]
        raise ConfigError(f"no point measured {', '.join(missing)}; measured: {', '.join(found)}")
    from korag.eval.report import aggregate_seeds

    group_keys = [k for k in keys if paths[k] != SEED]
    result.rows = aggregate_seeds(result.points, group_keys, shown)
    digest = hashlib.sha256(canonical_json({"o": list(overrides), "g": grid}).encode("utf-8")).hexdigest()[:10]
    out = store.root / "sweeps" / f"{template.name}-{digest}"
    result.files = write_sweep_report(
        out, result, group_keys, shown, title=f"sweep of {template.name}", command=_command(recipe, overrides, grid)
    )
    return result


def _command(recipe: str | Path, overrides: Sequence[str], grid: dict[str, list[str]]) -> str:
    base = command_line(str(recipe), overrides).replace("korag run", "korag sweep", 1)
    return base + "".join(f" --grid {k}={','.join(v)}" for k, v in grid.items())


def _cell(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def metric_cell(row: dict[str, Any], metric: str) -> str:
    """One seed-merged figure as shown: mean ± std where several seeds ran, – where unmeasured."""
    if metric not in row:
        return "–"
    if row.get("seeds", 1) > 1:
        return f"{row[metric]:.4f} ± {row[f'{metric}_std']:.4f}"
    return f"{row[metric]:.4f}"


def sweep_markdown(rows: Sequence[dict[str, Any]], keys: Sequence[str], metrics: Sequence[str]) -> str:
    """The seed-merged rows as a Markdown table (mean ± std where several seeds ran)."""
    head = [*keys, "seeds", *metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        cells = [_cell(r.get(k)) for k in keys] + [str(r.get("seeds", 1))] + [metric_cell(r, m) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_sweep_report(
    directory: Path, result: SweepResult, keys: Sequence[str], metrics: Sequence[str], *, title: str, command: str
) -> dict[str, Path]:
    """``sweep.md``, ``sweep.json`` and ``sweep-<key>.png`` for each numeric grid key."""
    from korag.eval.report import plot_sweep

    directory.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    parts = [f"# {title}", "", f"`{command}`", "", sweep_markdown(result.rows, keys, metrics), ""]
    plotted = [m for m in metrics if not m.endswith(("_ms_per_question", "seconds"))][:4]
    for key in keys:
        if not all(isinstance(r.get(key), int | float) and not isinstance(r.get(key), bool) for r in result.rows):
            continue
        others = [k for k in keys if k != key]
        rows = [{**r, "group": ", ".join(f"{k}={r[k]}" for k in others)} for r in result.rows]
        path = plot_sweep(
            rows, key, plotted, directory / f"sweep-{key}.png", group="group" if others else None, title=title
        )
        files[f"png:{key}"] = path
        parts += [f"![metrics against {key}]({path.name})", ""]
    atomic.write_text(directory / "sweep.md", "\n".join(parts))
    atomic.write_json(
        directory / "sweep.json",
        {"title": title, "command": command, "keys": list(keys), "points": result.points, "rows": result.rows},
    )
    files["md"] = directory / "sweep.md"
    files["json"] = directory / "sweep.json"
    return files
