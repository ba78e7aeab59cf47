"""Recipes: YAML files naming the data, the runs to compare and how to evaluate and report.

A recipe is validated with pydantic; unknown keys are errors (a typo must not be silently
ignored). ``--set a.b=c`` overrides are applied to the raw YAML before validation, their
values parsed as YAML scalars (``1.2`` is a number, ``[a, b]`` a list); ``--set
runs.<new name>.tokenizer=mecab`` adds a run.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from korag.data.chunk import ChunkConfig
from korag.data.load import FORMATS, SAMPLE
from korag.errors import ConfigError
from korag.eval.ir import DEFAULT_METRICS, parse_metric
from korag.retrieval.bm25 import METHODS


def check_task_names(named: dict[str, Any]) -> dict[str, Any]:
    """Names that become parts of task ids: non-empty, no '/' or ':', not hidden."""
    for name in named:
        if not name or "/" in name or ":" in name or name.startswith("."):
            raise ValueError(f"run name {name!r} must be non-empty and contain no '/' or ':'")
    return named


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSpec(_Strict):
    """Where the data comes from and how to read it."""

    path: str | None = Field(None, description=f"file or directory to read, or {SAMPLE!r}")
    format: str = "auto"
    split: str = "test"
    chunk: ChunkConfig | None = None
    max_queries: int | None = Field(None, gt=0, description="evaluate on the first N judged queries only")

    @field_validator("format")
    @classmethod
    def _known_format(cls, v: str) -> str:
        if v not in FORMATS:
            raise ValueError(f"unknown format {v!r}; choose from {', '.join(FORMATS)}")
        return v


class BM25Run(_Strict):
    """One BM25 configuration to index, search and evaluate."""

    retriever: Literal["bm25"] = "bm25"
    tokenizer: str | dict[str, Any] = "bigram-stem"
    k1: float = Field(1.5, ge=0)
    b: float = Field(0.75, ge=0, le=1)
    delta: float = 0.5
    method: str = "lucene"
    with_title: bool = True

    @field_validator("method")
    @classmethod
    def _known_method(cls, v: str) -> str:
        if v not in METHODS:
            raise ValueError(f"unknown BM25 method {v!r}; choose from {', '.join(METHODS)}")
        return v


class StatsSpec(_Strict):
    """Corpus statistics."""

    enabled: bool = True
    tokenizer: str = "mecab"


class EvalSpec(_Strict):
    """Retrieval depth and metrics."""

    k: int = Field(100, gt=0)
    metrics: list[str] = Field(default_factory=lambda: list(DEFAULT_METRICS))

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, v: list[str]) -> list[str]:
        for m in v:
            parse_metric(m)
        return [m.lower() for m in v]


class ReportSpec(_Strict):
    """The comparison report."""

    title: str = "korag report"
    plot_metrics: list[str] = Field(default_factory=lambda: ["mrr@10", "ndcg@10", "recall@1", "recall@5"])
    sort_by: str = "mrr@10"


class Recipe(_Strict):
    """A whole job: data → statistics → runs → evaluation → report."""

    flow: Literal["bm25"] = Field(
        "bm25", description="'bm25' (this), 'enhance' (pipeline/enhance.py) or 'pqa' (pipeline/pqa.py)"
    )
    name: str
    description: str = ""
    data: DataSpec
    stats: StatsSpec = StatsSpec()
    runs: dict[str, BM25Run] = Field(min_length=1)
    eval: EvalSpec = EvalSpec()
    report: ReportSpec = ReportSpec()

    @field_validator("runs")
    @classmethod
    def _run_names(cls, v: dict[str, BM25Run]) -> dict[str, BM25Run]:
        return check_task_names(v)


def builtin_recipes() -> dict[str, Path]:
    """Recipes shipped with korag, by name."""
    d = Path(str(resources.files("korag") / "pipeline" / "recipes"))
    return {p.stem: p for p in sorted(d.glob("*.yaml"))}


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"runs.bm25.k1=1.2"`` → (["runs", "bm25", "k1"], 1.2)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected key.path=value")
    path = key.strip().split(".")
    if any(not p for p in path):
        raise ConfigError(f"--set {item!r}: empty component in {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {item!r}: value is not valid YAML ({exc})") from None
    return path, value


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Set nested keys of `raw` (in place, creating mappings as needed) and return it."""
    for item in overrides:
        path, value = parse_override(item)
        node = raw
        for part in path[:-1]:
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {item!r}: '{part}' is not a mapping")
            node = nxt
        node[path[-1]] = value
    return raw


def _format_validation(name: str, exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        problems.append(f"{loc}: {msg}")
    return f"recipe {name!r} is invalid: " + "; ".join(problems)


def load_recipe(recipe: str | Path | None = None, overrides: Sequence[str] = ()) -> Any:
    """Read a recipe file or a built-in recipe by name (``default`` when None), apply
    `overrides`, and validate."""
    spec = "default" if recipe is None else str(recipe)
    path = Path(spec)
    builtins = builtin_recipes()
    if path.is_file():
        source = path
    elif spec in builtins:
        source = builtins[spec]
    else:
        raise ConfigError(
            f"no recipe file {spec!r} and no built-in recipe of that name; built-in: {', '.join(builtins)}"
        )
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a recipe must be a YAML mapping")
    raw.setdefault("name", source.stem)
    apply_overrides(raw, overrides)
    model: type[BaseModel] = Recipe
    if raw.get("flow") == "enhance":
        from korag.pipeline.enhance import EnhanceRecipe

        model = EnhanceRecipe
    elif raw.get("flow") == "pqa":
        from korag.pipeline.pqa import PQARecipe

        model = PQARecipe
    try:
        parsed = model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation(str(raw.get("name")), exc)) from None
    if parsed.data.path is None:
        raise ConfigError(f"recipe {parsed.name!r} needs a data path: korag run {spec} --set data.path=/path/to/data")
    return parsed
