"""The stages of the parametric-QA flow. Training stages train in the store's crash-surviving
scratch directory (so an interrupted phase resumes from its checkpoints) and publish only the
finished model."""

from __future__ import annotations

import random
import shutil
from typing import Any

from korag import atomic
from korag.data.schema import QAExample, QASet
from korag.errors import ConfigError
from korag.eval.comparison import System, SystemRow, find, find_any, rows_from_json, rows_to_json
from korag.eval.report import RunSummary, write_report
from korag.pipeline.artifacts import COMPARISON_FILE, MODEL_DIR, TRAINING_FILE, WRITE_QUALITY_FILE, Kind
from korag.pipeline.stage import Stage, StageContext


def _qa(ctx: StageContext) -> QASet:
    data = ctx.input("data").dataset()
    if not isinstance(data, QASet):
        raise ConfigError("the pqa flow needs a QA set (questions with answers and their documents)")
    return data


def split_questions(
    examples: list[QAExample], test_fraction: float, seed: int, max_questions: int | None = None
) -> tuple[list[QAExample], list[QAExample]]:
    """(training, test) questions: a seeded share held out, or (all, all) when the share is 0."""
    answerable = [e for e in examples if e.answers and e.doc_ids]
    if test_fraction <= 0:
        chosen = answerable[:max_questions] if max_questions else answerable
        return chosen, chosen
    order = list(range(len(answerable)))
    random.Random(seed).shuffle(order)
    n_test = max(1, round(test_fraction * len(order)))
    test = [answerable[i] for i in sorted(order[:n_test])]
    train = [answerable[i] for i in sorted(order[n_test:])]
    return train, test[:max_questions] if max_questions else test


def _publish(ctx: StageContext, record: dict[str, Any]) -> None:
    shutil.move(str(ctx.scratch / MODEL_DIR), str(ctx.out / MODEL_DIR))
    atomic.write_json(ctx.out / TRAINING_FILE, record)


def run_write(ctx: StageContext) -> dict[str, Any]:
    """Write the (first `max_docs`) documents into memories."""
    from korag.memory.pqa.config import WriteConfig
    from korag.memory.pqa.train import write_documents

    config = WriteConfig.model_validate({**ctx.params["config"], "encoder": str(ctx.input("encoder").model_dir)})
    record = write_documents(_qa(ctx).corpus, config, ctx.scratch, show_progress=ctx.show_progress)
    _publish(ctx, record)
    return {"documents": record["documents"], "seconds": record["seconds"], "last_loss": record["last_loss"]}


def run_read(ctx: StageContext) -> dict[str, Any]:
    """Train the selector and the reader on the training questions over the written documents."""
    from korag.memory.pqa.config import ReadConfig
    from korag.memory.pqa.train import train_read

    p = ctx.params
    config = ReadConfig.model_validate({**p["config"], "init_from": str(ctx.input("written").model_dir)})
    qa = _qa(ctx)
    train, _ = split_questions(list(qa.examples), p["test_fraction"], config.seed, None)
    record = train_read(qa.corpus, train, config, ctx.scratch, show_progress=ctx.show_progress)
    _publish(ctx, record)
    return {"questions": record["questions"], "seconds": record["seconds"], "last_loss": record["last_loss"]}


def flatten_comparison(result: dict[str, Any]) -> dict[str, float]:
    """The figures a sweep compares, from `compare_systems`' result: the selected-memory row's
    scores, the gold-memory row's EM, selection and write quality, efficiency."""
    rows: list[SystemRow] = result["rows"]
    selected = find_any(rows, System.PQA_SELECTED)
    gold = find(rows, System.PQA_GOLD)
    out: dict[str, float] = {
        "em_korquad_gold": gold["em_korquad"],
        "f1_korquad_gold": gold["f1_korquad"],
        "bytes_per_document": gold["bytes_per_document"],
    }
    if selected is not None:
        for k in ("em_squad", "f1_squad", "em_korquad", "f1_korquad", "recall@1", "recall@5", "mrr@10"):
            if k in selected:
                out[k] = selected[k]
        out["select_ms_per_question"] = selected["select_ms_per_question"]
        out["generate_ms_per_question"] = selected["generate_ms_per_question"]
    iterative = find_any(rows, System.PQA_ITERATIVE)
    if iterative is not None:
        out["em_korquad_iterative"] = iterative["em_korquad"]
        out["all_gold_selected_iterative"] = iterative["all_gold_selected"]
    out.update(flatten_write_quality(result.get("write", {})))
    return out


def flatten_write_quality(write: dict[str, Any]) -> dict[str, float]:
    """The figures a sweep compares from `measure_write_quality`'s result."""
    out = {k: write[k] for k in ("nll", "token_acc", "rouge_l", "rouge_l_char") if k in write}
    for k in ("identification", "shuffled", "random_projection"):
        if k in write:
            out[f"{k}_top1"] = write[k]["top1"]
            out[f"{k}_margin"] = write[k]["margin_mean"]
    return out


def _jsonable(obj: Any) -> Any:
    import json

    return json.loads(json.dumps(obj, default=str))


def run_write_eval(ctx: StageContext) -> dict[str, Any]:
    """Write quality of the written memories, before any read phase touches them."""
    from korag.memory.pqa.compare import measure_write_quality
    from korag.models.device import resolve_device

    p = ctx.params
    write = measure_write_quality(
        ctx.input("written").model_dir,
        _qa(ctx).corpus,
        identify=p["identify"],
        regenerate=p["regenerate"],
        random_projection=True,
        device=resolve_device(p["device"]),
        show_progress=ctx.show_progress,
    )
    write["model"] = "pqa-write"  # the store's path is not part of the result
    atomic.write_json(ctx.out / WRITE_QUALITY_FILE, _jsonable(write))
    return flatten_write_quality(write)


def run_eval(ctx: StageContext) -> dict[str, Any]:
    """PQA (gold and selected memories) and the chosen baselines on the test questions: answers,
    selection, efficiency (write quality is `pqa-write-eval`'s)."""
    from korag.memory.pqa.compare import compare_systems
    from korag.models.device import resolve_device

    p = ctx.params
    qa = _qa(ctx)
    _, test = split_questions(list(qa.examples), p["test_fraction"], p["seed"], p["max_questions"])
    result = compare_systems(
        ctx.input("model").model_dir,
        qa.corpus,
        test,
        baselines=p["baselines"],
        multihop=p["multihop"],
        write=False,
        device=resolve_device(p["device"]),
        show_progress=ctx.show_progress,
    )
    atomic.write_json(ctx.out / COMPARISON_FILE, _jsonable({**result, "rows": rows_to_json(result["rows"])}))
    return flatten_comparison(result)


def run_report(ctx: StageContext) -> dict[str, Any]:
    """The comparison table and the write quality as Markdown, a bar chart and JSON."""
    result = ctx.input("eval").read_json(COMPARISON_FILE)
    result["rows"] = rows_from_json(result["rows"])
    write = ctx.input("write-eval").read_json(WRITE_QUALITY_FILE)
    metrics = ["em_korquad", "f1_korquad", "em_squad", "f1_squad", "all_gold_selected"]
    runs = [RunSummary(r.label, metrics={m: r[m] for m in metrics if m in r.metrics}) for r in result["rows"]]
    figures = [f"- {k}: {v:.4f}" for k, v in flatten_comparison(result).items()]
    quality = [f"{write['documents']} documents written; measured after the {write['measured_after']} phase", ""]
    quality += [f"- {k}: {v:.4f}" for k, v in flatten_write_quality(write).items()]
    paths = write_report(
        ctx.out,
        title=ctx.params["title"],
        runs=runs,
        metrics=metrics,
        plot=["em_korquad", "f1_korquad"],
        table_heading="Answers",
        sections={
            "Figures": "\n".join(figures),
            "Write quality": "\n".join(quality),
            "Reproduce": f"`{ctx.params['command']}`",
        },
    )
    return {"report": str(paths["md"].name)}


WRITE = Stage("pqa-write", 2, run_write, Kind.MODEL, "documents → memories (LM frozen)")
WRITE_EVAL = Stage("pqa-write-eval", 1, run_write_eval, Kind.WRITE_QUALITY, "write quality of the memories as written")
READ = Stage("pqa-read", 2, run_read, Kind.MODEL, "questions → selector and reader")
EVAL = Stage("pqa-eval", 3, run_eval, Kind.COMPARISON, "QA, selection and efficiency against the baselines")
REPORT = Stage("pqa-report", 2, run_report, Kind.REPORT, "the comparison and write quality as Markdown, PNG and JSON")
