"""The stages of the parametric-QA flow. Training stages train in the store's crash-surviving
scratch directory (so an interrupted phase resumes from its checkpoints) and publish only the
finished model."""

from __future__ import annotations

import random
import shutil
from typing import Any

from korag import atomic
from korag.data.saved import open_dataset
from korag.data.schema import QAExample, QASet
from korag.errors import ConfigError
from korag.eval.report import RunSummary, write_report
from korag.pipeline import stages
from korag.pipeline.stage import Stage, StageContext

LOAD = stages.LOAD


def _qa(ctx: StageContext) -> QASet:
    data = open_dataset(ctx.input("data").path / "dataset")
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


def _encoder(ctx: StageContext) -> str:
    from korag.pipeline.enhance_stages import model_dir

    return str(model_dir(ctx.input("encoder").path))


def _publish(ctx: StageContext, record: dict[str, Any]) -> None:
    shutil.move(str(ctx.scratch / "model"), str(ctx.out / "model"))
    atomic.write_json(ctx.out / "training.json", record)


def run_write(ctx: StageContext) -> dict[str, Any]:
    """Write the (first `max_docs`) documents into memories."""
    from korag.memory.pqa.model import PQAConfig
    from korag.memory.pqa.train import WriteConfig, write_documents

    p = ctx.params
    corpus = _qa(ctx).corpus
    if p["max_docs"]:
        corpus = corpus.subset(range(min(p["max_docs"], len(corpus))))
    shape = {k: p[k] for k in ("m_tokens", "z_dim", "projection", "layer_norm", "max_doc_tokens")}
    config = WriteConfig(
        base=p["base"],
        encoder=_encoder(ctx),
        pqa=PQAConfig(**shape),
        **{k: p[k] for k in ("lr_z", "lr_projection", "token_dropout", "with_title", "epochs", "max_steps")},
        batch_size=p["batch_size"],
        seed=p["seed"],
        device=p["device"],
    )
    record = write_documents(corpus, config, ctx.scratch, show_progress=ctx.show_progress)
    _publish(ctx, record)
    return {"documents": record["documents"], "seconds": record["seconds"], "last_loss": record["last_loss"]}


def run_read(ctx: StageContext) -> dict[str, Any]:
    """Train the selector and the reader on the training questions over the written documents."""
    from korag.memory.adapters import LoraSettings
    from korag.memory.pqa.selectors import SelectorConfig
    from korag.memory.pqa.train import ReadConfig, train_read

    p = ctx.params
    qa = _qa(ctx)
    train, _ = split_questions(list(qa.examples), p["test_fraction"], p["seed"], None)
    lora = LoraSettings.of_rank(p["lora_r"])
    keys = ("top_k", "hops", "intermediate", "train_with", "retrieval_weight", "qa_weight", "lr_lm", "lr_z")
    config = ReadConfig(
        init_from=str(ctx.input("written").path / "model"),
        encoder=_encoder(ctx),
        selector=SelectorConfig(kind=p["selector"]),
        lora=lora,
        **{k: p[k] for k in (*keys, "lr_projection", "lr_selector", "selector_warmup_steps", "epochs", "max_steps")},
        batch_size=p["batch_size"],
        seed=p["seed"],
        device=p["device"],
    )
    record = train_read(qa.corpus, train, config, ctx.scratch, show_progress=ctx.show_progress)
    _publish(ctx, record)
    return {"questions": record["questions"], "seconds": record["seconds"], "last_loss": record["last_loss"]}


def flatten_comparison(result: dict[str, Any]) -> dict[str, float]:
    """The figures a sweep compares, from `compare_systems`' result: the selected-memory row's
    scores, the gold-memory row's EM, selection and write quality, efficiency."""
    rows = result["rows"]
    selected = next((r for n, r in rows.items() if n.startswith("pqa (selected")), None)
    gold = rows["pqa (gold z)"]
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
    iterative = next((r for n, r in rows.items() if n.startswith("pqa (iterative")), None)
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


def run_write_eval(ctx: StageContext) -> dict[str, Any]:
    """Write quality of the written memories, before any read phase touches them."""
    import json

    from korag.memory.loop import resolve_device
    from korag.memory.pqa.compare import measure_write_quality

    p = ctx.params
    write = measure_write_quality(
        ctx.input("written").path / "model",
        _qa(ctx).corpus,
        identify=p["identify"],
        regenerate=p["regenerate"],
        random_projection=True,
        device=resolve_device(p["device"]),
        show_progress=ctx.show_progress,
    )
    write["model"] = "pqa-write"  # the store's path is not part of the result
    atomic.write_json(ctx.out / "write_quality.json", json.loads(json.dumps(write, default=str)))
    return flatten_write_quality(write)


def run_eval(ctx: StageContext) -> dict[str, Any]:
    """PQA (gold and selected memories) and the chosen baselines on the test questions: answers,
    selection, efficiency (write quality is `pqa-write-eval`'s)."""
    import json

    from korag.memory.loop import resolve_device
    from korag.memory.pqa.compare import compare_systems

    p = ctx.params
    qa = _qa(ctx)
    _, test = split_questions(list(qa.examples), p["test_fraction"], p["seed"], p["max_questions"])
    result = compare_systems(
        ctx.input("model").path / "model",
        qa.corpus,
        test,
        baselines=p["baselines"],
        multihop=p["multihop"],
        write=False,
        device=resolve_device(p["device"]),
        show_progress=ctx.show_progress,
    )
    atomic.write_json(ctx.out / "comparison.json", json.loads(json.dumps(result, default=str)))
    return flatten_comparison(result)


def run_report(ctx: StageContext) -> dict[str, Any]:
    """The comparison table and the write quality as Markdown, a bar chart and JSON."""
    import json

    result = json.loads((ctx.input("eval").path / "comparison.json").read_text(encoding="utf-8"))
    write = json.loads((ctx.input("write-eval").path / "write_quality.json").read_text(encoding="utf-8"))
    metrics = ["em_korquad", "f1_korquad", "em_squad", "f1_squad", "all_gold_selected"]
    runs = [RunSummary(name, metrics={m: r[m] for m in metrics if m in r}) for name, r in result["rows"].items()]
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


WRITE = Stage("pqa-write", 1, run_write, "documents → memories (LM frozen)")
WRITE_EVAL = Stage("pqa-write-eval", 1, run_write_eval, "write quality of the memories as written")
READ = Stage("pqa-read", 1, run_read, "questions → selector and reader")
EVAL = Stage("pqa-eval", 2, run_eval, "QA, selection and efficiency against the baselines")
REPORT = Stage("pqa-report", 2, run_report, "the comparison and write quality as Markdown, PNG and JSON")
