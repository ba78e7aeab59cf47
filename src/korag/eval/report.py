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
        parts += ["## Retrieval", "", markdown_table(ordered, metrics), ""]
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
