"""Tables for the terminal (rich): the CLI and the benches render results with these.

Every table is built from typed results (metric dicts, `SystemRow`s, filter reports), never from
labels parsed back: a row's label is only what the first column shows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table

from korag.eval.comparison import System, SystemRow

# The systems whose rows read compressed or soft-token memories rather than text.
_MEMORY_SYSTEMS = (System.CLARA, System.CLARA_REASONER, System.CLARA_RAG)


def metric_table(title: str, metrics: Mapping[str, float], timings: Mapping[str, float] | None = None) -> Table:
    """Metrics (4 decimals) and, dimmed, timings."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        table.add_row(k, f"{v:.4f}")
    for k, v in (timings or {}).items():
        table.add_row(f"[dim]{k}[/]", f"[dim]{v:,.2f}[/]")
    return table


def _cell(row: SystemRow, key: str, fmt: str) -> str:
    value = row.get(key)
    return "–" if value is None else format(value, fmt)


def pqa_table(title: str, rows: Sequence[SystemRow]) -> Table:
    """Parametric QA and its baselines side by side (QA scores 0–100, gold-read share, latency)."""
    table = Table(title=title)
    table.add_column("system")
    scores = ["em_squad", "f1_squad", "em_korquad", "f1_korquad"]
    shares = ["all_gold_selected", "recall@1", "mrr@10"]
    for c in [*scores, *shares, "ms/question"]:
        table.add_column(c, justify="right")
    for r in rows:
        ms = r.get("ms_per_question")
        if ms is None:
            ms = r.get("select_ms_per_question", 0.0) + r.get("generate_ms_per_question", 0.0)
        cells = [_cell(r, c, ".1f") for c in scores] + [_cell(r, c, ".3f") for c in shares]
        table.add_row(r.label, *cells, f"{ms:.0f}")
    return table


def qa_table(title: str, rows: Sequence[SystemRow]) -> Table:
    """Retrieve-then-read against closed-book: EM/F1 (0–100), the answer in the passages read,
    citations, seconds per question."""
    table = Table(title=title)
    table.add_column("system")
    scores = ["em_korquad", "f1_korquad", "em_squad", "f1_squad"]
    for c in [*scores, "answer in passages", "cites a passage", "s/question"]:
        table.add_column(c, justify="right")
    for r in rows:
        recall = next((v for key, v in r.metrics.items() if key.startswith("answer_recall@")), None)
        table.add_row(
            r.label,
            *(_cell(r, c, ".1f") for c in scores),
            "–" if recall is None else f"{recall:.1%}",
            "–" if r.get("cited_share") is None else f"{r['cited_share']:.1%}",
            _cell(r, "seconds_per_question", ".2f"),
        )
    return table


def write_quality_table(write: Mapping[str, Any]) -> Table:
    """Write quality: reconstruction, free generation, identification and its controls."""
    after = write.get("measured_after", "write")
    table = Table(title=f"write quality ({write['documents']} documents, measured after the {after} phase)")
    for c in ("measure", "value"):
        table.add_column(c)
    table.add_row("reconstruction NLL / token accuracy", f"{write['nll']:.3f} / {write['token_acc']:.3f}")
    if "rouge_l" in write:
        table.add_row("ROUGE-L, free generation (word/char)", f"{write['rouge_l']:.3f} / {write['rouge_l_char']:.3f}")
    labels = {"identification": "identification", "shuffled": "z shuffled", "random_projection": "random projection"}
    for key, label in labels.items():
        if key in write:
            i = write[key]
            table.add_row(
                f"{label}: top-1 / top-5 / margin",
                f"{i['top1']:.3f} / {i['top5']:.3f} / {i['margin_mean']:.3f} (chance {i['chance_top1']:.3f})",
            )
    return table


def clara_table(title: str, rows: Sequence[SystemRow]) -> Table:
    """CLaRa and its baselines: answers, retrieval recall, compression, prompt tokens, time."""
    cols = ["em_squad", "f1_squad", "em_korquad", "f1_korquad", "cover_em_korquad", "recall@1", "recall@5"]
    table = Table(title=title)
    table.add_column("run")
    for c in [*cols, "×nominal", "×measured", "prompt tok", "compress s", "retrieve s", "generate s"]:
        table.add_column(c, justify="right")
    for r in rows:
        cells = [_cell(r, c, ".3f" if "recall" in c else ".2f") for c in cols]
        memory = r.system in _MEMORY_SYSTEMS
        prompt = {System.FULL_TEXT: "prompt_tokens_full_text"}.get(r.system, "prompt_tokens_clara" if memory else "")
        table.add_row(
            r.label,
            *cells,
            str(r["compression_nominal"]) if memory else "–",
            f"{r['compression_measured']:.1f}" if memory else "–",
            _cell(r, prompt, ".0f") if prompt else "–",
            *(_cell(r, t, ".2f") for t in ("compress_seconds", "retrieve_seconds", "generate_seconds")),
        )
    return table


def trends_table(terms: Sequence[Any], limit: int) -> Table:
    """Trending terms: document frequencies, log ratio and z-score."""
    table = Table(title=f"trending terms (top {min(limit, len(terms))} of {len(terms)})")
    for col in ("term", "recent df", "background df", "log2 ratio", "z"):
        table.add_column(col, justify="left" if col == "term" else "right")
    for t in terms[:limit]:
        table.add_row(t.term, str(t.recent_df), str(t.background_df), f"{t.log_ratio:.2f}", f"{t.z_score:.1f}")
    return table


def filter_steps_table(rows: Sequence[tuple[str, Mapping[str, int]]], methods: Sequence[str]) -> Table:
    """Synthetic queries left after each filter step, per generation method."""
    table = Table(title="synthetic queries per filter step")
    table.add_column("step")
    for m in methods:
        table.add_column(m, justify="right")
    for step, counts in rows:
        table.add_row(step, *[str(counts.get(m, 0)) for m in methods])
    return table


def report_table(report: Mapping[str, Any], metrics: Sequence[str] | None = None, limit: int = 6) -> Table:
    """A report's runs (``report.json``) with their metrics, as `korag run` shows them."""
    runs = report.get("runs", [])
    shown = list(metrics or dict.fromkeys(k for r in runs for k in r.get("metrics", {})))[:limit]
    table = Table(title=report.get("title", "report"))
    table.add_column("run", overflow="fold")
    for m in shown:
        table.add_column(m, justify="right")
    for r in runs:
        table.add_row(r["name"], *(_figure(r.get("metrics", {}).get(m)) for m in shown))
    return table


def _figure(value: Any) -> str:
    return "–" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)
