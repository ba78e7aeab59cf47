"""From a recipe to a plan: the tasks of the retrieval flow and how they feed each other."""

from __future__ import annotations

import shlex
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from korag.data.load import SAMPLE, detect_format
from korag.data.sample import sample_fingerprint
from korag.pipeline import stages
from korag.pipeline.fingerprint import fingerprint
from korag.pipeline.recipe import Recipe
from korag.pipeline.stage import Task
from korag.text.tokenize import make_tokenizer

# Libraries whose upgrades can change the tokens a tokenizer emits.
_TOKENIZER_LIBRARIES = {"kiwi": "kiwipiepy", "mecab": "python-mecab-ko", "hf": "tokenizers"}
_QUERYLESS_FORMATS = ("folder", "pdf", "text", "jsonl")


def _library_version(tokenizer_name: str) -> str | None:
    dist = _TOKENIZER_LIBRARIES.get(tokenizer_name)
    if dist is None:
        return None
    try:
        return f"{dist}=={version(dist)}"
    except PackageNotFoundError:
        return None


def data_params(recipe: Recipe) -> dict[str, Any]:
    """Parameters of the load task, including a fingerprint of the data's content."""
    d = recipe.data
    path = d.path if d.path == SAMPLE else str(Path(d.path).expanduser().resolve())
    return {
        "path": path,
        "format": d.format,
        "split": d.split,
        "chunk": d.chunk.model_dump() if d.chunk else None,
        "max_queries": d.max_queries,
        "fingerprint": sample_fingerprint() if path == SAMPLE else fingerprint(path),
    }


def has_queries(recipe: Recipe) -> bool:
    """Whether the recipe's data carries queries to evaluate (known before loading it)."""
    fmt = recipe.data.format
    if fmt == "auto":
        fmt = detect_format(recipe.data.path)
    return fmt not in _QUERYLESS_FORMATS


def plan_recipe(recipe: Recipe, command: str | None = None) -> list[Task]:
    """Tasks for: load, stats, then per run tokenize → bm25-index (→ retrieve → evaluate), report
    (or, for ``flow: enhance``, the enhancement flow's tasks)."""
    if recipe.flow == "enhance":
        from korag.pipeline.enhance import plan_enhance

        return plan_enhance(recipe, command)  # type: ignore[arg-type]
    if recipe.flow == "pqa":
        from korag.pipeline.pqa import plan_pqa

        return plan_pqa(recipe, command)  # type: ignore[arg-type]
    tasks = [Task("load", stages.LOAD, data_params(recipe))]
    report_inputs: dict[str, str] = {}
    if recipe.stats.enabled:
        tasks.append(Task("stats", stages.STATS, {"tokenizer": recipe.stats.tokenizer}, {"data": "load"}))
        report_inputs["stats"] = "stats"
    evaluate = has_queries(recipe)
    settings: dict[str, dict[str, Any]] = {}
    for name, run in recipe.runs.items():
        tok_config = make_tokenizer(run.tokenizer).config()
        tok_params = {"tokenizer": tok_config, "with_title": run.with_title}
        lib = _library_version(str(tok_config["name"]))
        if lib:
            tok_params["library"] = lib
        tasks.append(Task(f"tokenize/{name}", stages.TOKENIZE, tok_params, {"data": "load"}))
        index_params = {
            "tokenizer": tok_config,
            "with_title": run.with_title,
            "k1": run.k1,
            "b": run.b,
            "delta": run.delta,
            "method": run.method,
        }
        tasks.append(Task(f"index/{name}", stages.BM25_INDEX, index_params, {"counts": f"tokenize/{name}"}))
        report_inputs[f"tokenize:{name}"] = f"tokenize/{name}"
        report_inputs[f"index:{name}"] = f"index/{name}"
        if evaluate:
            tasks.append(
                Task(
                    f"retrieve/{name}",
                    stages.RETRIEVE,
                    {"k": recipe.eval.k},
                    {"index": f"index/{name}", "data": "load"},
                )
            )
            tasks.append(
                Task(
                    f"evaluate/{name}",
                    stages.EVALUATE,
                    {"metrics": recipe.eval.metrics},
                    {"ranking": f"retrieve/{name}", "data": "load"},
                )
            )
            report_inputs[f"retrieve:{name}"] = f"retrieve/{name}"
            report_inputs[f"eval:{name}"] = f"evaluate/{name}"
        settings[name] = {"tokenizer": tok_config["name"], "k1": run.k1, "b": run.b, "method": run.method}
    tasks.append(Task("report", stages.REPORT, report_params(recipe, settings, command), report_inputs))
    return tasks


def report_params(recipe: Any, settings: dict[str, dict[str, Any]], command: str | None) -> dict[str, Any]:
    """The report task's parameters, shared by every flow: title, metrics, plots, runs, command."""
    return {
        "title": recipe.report.title,
        "metrics": recipe.eval.metrics,
        "plot": recipe.report.plot_metrics,
        "sort_by": recipe.report.sort_by,
        "runs": settings,
        "command": command or f"korag run {shlex.quote(recipe.name)}",
    }
