"""Systems compared side by side: typed rows, selected by what a system is, shown by its label.

A comparison (parametric QA against its baselines, CLaRa against full-text RAG, `korag eval qa`
of a reader against closed-book) is a list of `SystemRow`s. Code that needs one row asks for its
`System` (and detail, e.g. which retriever fed a text-RAG row), never for the label a table
shows: labels are for people and may change. In JSON a comparison stays a mapping from label to
figures, each carrying its ``system`` and ``detail``, so files written before rows were typed
read the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class System(StrEnum):
    """What produced a row's answers."""

    PQA_GOLD = "pqa-gold"  # parametric QA reading the gold documents' memories
    PQA_SELECTED = "pqa-selected"  # … reading the memories its selector picked
    PQA_ITERATIVE = "pqa-iterative"  # … selecting again after each hop
    CLOSED_BOOK = "closed-book"  # the LM alone
    TEXT_RAG = "text-rag"  # the LM reading a retriever's passages as text (detail: retriever)
    ORACLE = "oracle"  # the LM reading the gold passages as text
    FULL_TEXT = "full-text"  # the LM reading the given documents as text (CLaRa's baseline)
    CLARA = "clara"  # CLaRa reading the given documents compressed
    CLARA_REASONER = "clara-reasoner"  # CLaRa's query reasoner choosing among candidates
    CLARA_RAG = "clara-rag"  # CLaRa reading a retriever's passages compressed
    XRAG = "xrag"  # one soft token per passage from its dense embedding
    RAG = "rag"  # korag's own retrieve-then-read (`korag ask`)


@dataclass
class SystemRow:
    """One system's figures (EM/F1, selection, timings, predictions) with its label."""

    system: System
    label: str
    metrics: dict[str, Any] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.metrics[key]

    def __contains__(self, key: object) -> bool:
        return key in self.metrics

    def get(self, key: str, default: Any = None) -> Any:
        """A figure, or `default`."""
        return self.metrics.get(key, default)

    def to_dict(self) -> dict[str, Any]:
        """Figures plus ``system`` and ``detail`` (the JSON form, keyed by the label outside)."""
        return {**self.metrics, "system": self.system.value, "detail": dict(self.detail)}


def find(rows: Iterable[SystemRow], system: System, **detail: Any) -> SystemRow:
    """The row of `system` (whose detail matches `detail`); KeyError when there is none."""
    for row in rows:
        if row.system == system and all(row.detail.get(k) == v for k, v in detail.items()):
            return row
    raise KeyError(f"no {system.value} row" + (f" with {detail}" if detail else ""))


def find_any(rows: Iterable[SystemRow], system: System, **detail: Any) -> SystemRow | None:
    """The row of `system`, or None."""
    try:
        return find(rows, system, **detail)
    except KeyError:
        return None


def rows_to_json(rows: Sequence[SystemRow]) -> dict[str, dict[str, Any]]:
    """{label: figures with system and detail}, in row order; labels must be unique."""
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row.label in out:
            raise ValueError(f"two rows share the label {row.label!r}")
        out[row.label] = row.to_dict()
    return out


def rows_from_json(data: Mapping[str, Mapping[str, Any]]) -> list[SystemRow]:
    """The rows `rows_to_json` wrote."""
    rows = []
    for label, figures in data.items():
        metrics = {k: v for k, v in figures.items() if k not in ("system", "detail")}
        rows.append(SystemRow(System(figures["system"]), label, metrics, dict(figures.get("detail") or {})))
    return rows
