"""Comparison reports: runs side by side as a Markdown table, a bar chart and JSON."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from korag import atomic


@dataclass
class RunSummary:
    """One row of a comparison: a named run, what it was, what it scored, how fast it was."""

    name: str
    settings: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


TIMING_LABELS = {
    "tokenize_chars_per_second": "tokenize chars/s",
    "index_seconds": "index s",
    "train_seconds": "train s",
    "queries_per_second": "queries/s",
}


def _fmt_setting(v: Any) -> str:
    if isinstance(v, dict):
        return str(v.get("name", v))
    return str(v)


def markdown_table(runs: Sequence[RunSummary], metrics: Sequence[str], *, best: bool = True) -> str:
    """Runs as rows, settings, metrics and timings as columns; the best value per metric in bold."""
    settings_cols = sorted({k for r in runs for k in r.settings})
    timing_cols = [k for k in TIMING_LABELS if any(k in r.timings for r in runs)]
    head = ["run", *settings_cols, *metrics, *(TIMING_LABELS[k] for k in timing_cols)]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    top = {m: max((r.metrics.get(m, float("-inf")) for r in runs), default=None) for m in metrics}
    for r in runs:
        cells = [r.name, *(_fmt_setting(r.settings.get(c, "")) for c in settings_cols)]
        for m in metrics:
            v = r.metrics.get(m)
            cell = "–" if v is None else f"{v:.4f}"
            if best and v is not None and len(runs) > 1 and v == top[m]:
                cell = f"**{cell}**"
            cells.append(cell)
        for k in timing_cols:
            v = r.timings.get(k)
            cells.append("–" if v is None else (f"{v:,.0f}" if v >= 100 else f"{v:.2f}"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_metrics(runs: Sequence[RunSummary], metrics: Sequence[str], path: str | Path, *, title: str = "") -> Path:
    """Grouped bar chart: one group per metric, one bar per run, values printed on the bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    metrics = [m for m in metrics if any(m in r.metrics for r in runs)]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(metrics) * max(1, len(runs)) / 2 + 2), 4.2))
    width = 0.8 / max(1, len(runs))
    x = np.arange(len(metrics))
    for i, r in enumerate(runs):
        vals = [r.metrics.get(m, 0.0) for m in metrics]
        bars = ax.bar(x + (i - (len(runs) - 1) / 2) * width, vals, width, label=r.name)
        ax.bar_label(bars, labels=[f"{v:.3f}" for v in vals], fontsize=7, padding=1, rotation=90)
    ax.set_xticks(x, metrics)
    top = max((r.metrics.get(m, 0.0) for r in runs for m in metrics), default=1.0)
    ax.set_ylim(0, 1.12 * max(1.0, top))  # IR metrics are fractions, QA scores percentages
    ax.set_ylabel("score")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp, tmp.open("wb") as fh:
        fig.savefig(fh, format="png", dpi=120)
    plt.close(fig)
    return Path(path)


def write_report(
    directory: str | Path,
    *,
    title: str,
    runs: Sequence[RunSummary],
    metrics: Sequence[str],
    plot: Sequence[str],
    sections: Mapping[str, str] | None = None,
    sort_by: str | None = None,
    table_heading: str = "Retrieval",
) -> dict[str, Path]:
    """Write ``report.md``, ``report.png`` and ``report.json`` into `directory`."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ordered = list(runs)
    if sort_by:
        ordered.sort(key=lambda r: -r.metrics.get(sort_by, float("-inf")))
    parts = [f"# {title}", ""]
    paths: dict[str, Path] = {}
    if ordered:
        parts += [f"## {table_heading}", "", markdown_table(ordered, metrics), ""]
        if any(r.metrics for r in ordered):
            paths["png"] = plot_metrics(ordered, plot, d / "report.png", title=title)
            parts += ["![metrics per run](report.png)", ""]
    for heading, body in (sections or {}).items():
        parts += [f"## {heading}", "", body.rstrip(), ""]
    atomic.write_text(d / "report.md", "\n".join(parts))
    atomic.write_json(d / "report.json", {"title": title, "runs": [asdict(r) for r in ordered]})
    paths["md"] = d / "report.md"
    paths["json"] = d / "report.json"
    return paths


def aggregate_seeds(
    points: Sequence[Mapping[str, Any]], keys: Sequence[str], metrics: Sequence[str]
) -> list[dict[str, Any]]:
    """Points that differ only in their seed merged into one: the settings `keys`, and per metric
    its mean, standard deviation (over seeds; 0 for one seed) and the number of seeds."""
    import numpy as np

    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for p in points:
        groups.setdefault(tuple(str(p.get(k)) for k in keys), []).append(p)
    out = []
    for members in groups.values():
        row: dict[str, Any] = {k: members[0].get(k) for k in keys}
        row["seeds"] = len(members)
        for m in metrics:
            vals = [float(p[m]) for p in members if p.get(m) is not None]
            if vals:
                row[m] = float(np.mean(vals))
                row[f"{m}_std"] = float(np.std(vals))
        out.append(row)
    return out


def plot_sweep(
    rows: Sequence[Mapping[str, Any]],
    x: str,
    metrics: Sequence[str],
    path: str | Path,
    *,
    group: str | None = None,
    title: str = "",
    log_x: bool = False,
) -> Path:
    """One panel per metric: metric against `x`, one line per value of `group`, error bars from
    ``<metric>_std`` where rows carry it (see `aggregate_seeds`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False)
    lines: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        lines.setdefault(str(r.get(group)) if group else "", []).append(r)
    for ax, m in zip(axes[0], metrics, strict=True):
        for name, members in lines.items():
            pts = sorted((float(r[x]), float(r[m]), float(r.get(f"{m}_std", 0.0))) for r in members if m in r)
            if not pts:
                continue
            xs, ys, es = zip(*pts, strict=True)
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=name if group else None)
        ax.set_xlabel(x)
        ax.set_title(m)
        if log_x:
            ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
        if group:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp, tmp.open("wb") as fh:
        fig.savefig(fh, format="png", dpi=120)
    plt.close(fig)
    return Path(path)
