"""Stages of the enhancement flow (`korag.pipeline.flows.enhance`): split, generate, filter,
train, evaluate and report."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from korag import atomic
from korag.data.runs import save_ranking
from korag.data.saved import save_dataset
from korag.data.schema import QASet, RetrievalSet
from korag.data.synthetic import SyntheticSet
from korag.errors import DataError
from korag.eval.ir import evaluate_ranking
from korag.eval.report import RunSummary
from korag.pipeline.artifacts import (
    FILTER_REPORT_FILE,
    METRICS_FILE,
    MODEL_DIR,
    RANKING_FILE,
    SPLIT_FIRST_DOCS,
    SPLIT_TEST,
    SPLIT_TRAIN,
    SYNTHETIC_FILE,
    Kind,
)
from korag.pipeline.flows.common import write_flow_report
from korag.pipeline.stage import Stage, StageContext


def _split_sets(ctx: StageContext) -> tuple[RetrievalSet, RetrievalSet, list[str]]:
    return ctx.input("split").split()


def run_split(ctx: StageContext) -> dict[str, Any]:
    """Questions on the first fraction of document groups train; the rest test (whole corpus)."""
    from korag.data.training import split_by_group

    data = ctx.input("data").dataset()
    if not isinstance(data, QASet):
        raise DataError(None, "the enhancement flow needs a QA set (questions with their passages)")
    p = ctx.params
    group_of = {}
    for doc in data.corpus:
        g = doc.meta.get(p["group_by"]) if doc.meta else None
        group_of[doc.id] = str(g) if g is not None else doc.title or doc.id
    first, second, groups = split_by_group(data, group_of, p["fraction"], seed=p["seed"])
    first_groups = set(groups)
    first_docs = [d for d in data.corpus.ids if group_of[d] in first_groups]
    save_dataset(first.to_retrieval_set(), ctx.out / SPLIT_TRAIN)
    save_dataset(second.to_retrieval_set(), ctx.out / SPLIT_TEST)
    atomic.write_json(ctx.out / SPLIT_FIRST_DOCS, first_docs)
    return {
        "groups_first": len(first_groups),
        "documents_first": len(first_docs),
        "train_questions": len(first.examples),
        "test_questions": len(second.examples),
    }


def run_generate(ctx: StageContext) -> dict[str, Any]:
    """LLM queries for the first half's documents, resumable through the task's scratch file."""
    from korag.synth.generation import GenerationConfig
    from korag.synth.llm import make_generator
    from korag.synth.prompts import QueryPrompt
    from korag.synth.queries import generate_llm_queries

    p = ctx.params
    train, _, docs = _split_sets(ctx)
    s = p["sampling"]
    if s.get("max_docs") and s["max_docs"] < len(docs):
        import random

        chosen = set(random.Random(s["seed"]).sample(docs, s["max_docs"]))
        docs = [d for d in docs if d in chosen]
    prompt = QueryPrompt(p["prompt"]["style"], shots=p["prompt"]["shots"], max_chars=p["prompt"]["max_chars"])
    config = GenerationConfig(s["max_tokens"], s["temperature"], s["top_p"], (), s["seed"])
    generator = make_generator(
        p["llm"]["model"],
        cache_dir=ctx.cache_dir / "llm" if ctx.cache_dir else None,
        **({"batch_size": p["batch_size"], "show_progress": False} if not p["llm"]["model"].startswith("http") else {}),
    )
    progress = ctx.scratch / "raw.jsonl"
    t0 = time.perf_counter()
    synthetic, counts = generate_llm_queries(
        train.corpus,
        generator,
        prompt,
        config,
        per_doc=s["per_doc"],
        doc_ids=docs,
        progress_file=progress,
        docs_per_call=p["docs_per_call"],
        show_progress=ctx.show_progress,
    )
    seconds = time.perf_counter() - t0
    synthetic.save_jsonl(ctx.out / SYNTHETIC_FILE)
    shutil.copyfile(progress, ctx.out / "raw.jsonl")
    stats = generator.stats
    return {
        **counts,
        "documents": len(docs),
        "seconds": seconds,
        "generated_tokens": stats.generated_tokens,
        "tokens_per_second": stats.tokens_per_second,
        "model": generator.describe(),
    }


def run_generate_free(ctx: StageContext) -> dict[str, Any]:
    """Inverse-cloze and keyphrase queries for the first half's documents."""
    from korag.synth.queries import ict_queries, keyphrase_queries

    p = ctx.params
    train, _, docs = _split_sets(ctx)
    queries = []
    if p["ict"]:
        queries += ict_queries(train.corpus, docs, seed=p["seed"]).queries
    if p["keyphrase"]:
        queries += keyphrase_queries(train.corpus, docs, terms=p["keyphrase_terms"], seed=p["seed"]).queries
    s = SyntheticSet(train.corpus, queries)
    s.save_jsonl(ctx.out / SYNTHETIC_FILE)
    return s.counts_by_method()


def run_filter(ctx: StageContext) -> dict[str, Any]:
    """All generated queries through the enabled filters; writes the kept ones and the counts."""
    from korag.retrieval.bm25 import BM25Retriever
    from korag.synth.filters import FilterConfig, apply_filters

    p = dict(ctx.params)
    tokenizer = p.pop("roundtrip_tokenizer")
    cfg = FilterConfig(**p)
    train, _, _ = _split_sets(ctx)
    queries = []
    for art in ctx.inputs_named("gen").values():
        queries += art.synthetic(train.corpus).queries
    everything = SyntheticSet(train.corpus, queries)
    retriever = None
    if "roundtrip" in cfg.enabled:
        retriever = BM25Retriever(tokenizer)
        retriever.index(train.corpus)
    kept, report = apply_filters(everything, cfg, retriever=retriever)
    kept.save_jsonl(ctx.out / SYNTHETIC_FILE)
    atomic.write_json(ctx.out / FILTER_REPORT_FILE, report.to_dict())
    return {"generated": len(everything), "kept": len(kept), **{f"kept_{m}": n for m, n in report.kept.items()}}


def run_train(ctx: StageContext) -> dict[str, Any]:
    """Fine-tune the base encoder on human pairs, synthetic pairs or both (no dev split: the
    label-free run has no human labels to select with, and every run is treated alike)."""
    from korag.data.schema import Qrels, Queries
    from korag.training.config import DenseTrainConfig
    from korag.training.dense import train_dense

    sources = ctx.params["sources"]
    train, _, _ = _split_sets(ctx)
    if "human" not in sources:
        train = RetrievalSet(train.corpus, Queries([], []), Qrels(), name="label-free")
    extra = []
    if "synthetic" in sources:
        extra = ctx.input("synthetic").synthetic(train.corpus).to_training_pairs()
    # the recipe's settings with the flow's own (FLOW_SETTINGS) and the resolved base model
    cfg = DenseTrainConfig.model_validate({**ctx.params["config"], "base": str(ctx.input("base").model_dir)})
    res = train_dense(train, cfg, ctx.out / "run", resume=False, show_progress=ctx.show_progress, extra_pairs=extra)
    shutil.move(str(res.model_dir), ctx.out / MODEL_DIR)
    shutil.rmtree(ctx.out / "run", ignore_errors=True)
    return {
        "pairs": res.train_pairs,
        "human_pairs": res.train_pairs - len(extra),
        "synthetic_pairs": len(extra),
        "steps": res.global_step,
        "train_seconds": res.train_seconds,
        "pairs_per_second": res.pairs_per_second,
    }


def _evaluate(ctx: StageContext, ranking, test: RetrievalSet, extra: dict[str, Any]) -> dict[str, Any]:
    result = evaluate_ranking(ranking, test.qrels, ctx.params["metrics"])
    save_ranking(ranking, ctx.out / RANKING_FILE)
    atomic.write_json(ctx.out / METRICS_FILE, result.metrics)
    return {**result.metrics, **extra}


def run_dense_eval(ctx: StageContext) -> dict[str, Any]:
    """Encode the whole corpus and the second half's questions; IR metrics."""
    from korag.retrieval.dense import DenseRetriever

    _, test, _ = _split_sets(ctx)
    r = DenseRetriever(str(ctx.input("model").model_dir))
    t0 = time.perf_counter()
    r.index(test.corpus, show_progress=ctx.show_progress)
    index_seconds = time.perf_counter() - t0
    ranking = r.search(test.judged_queries(), k=ctx.params["k"])
    return _evaluate(ctx, ranking, test, {"index_seconds": index_seconds})


def run_bm25_eval(ctx: StageContext) -> dict[str, Any]:
    """BM25 over the whole corpus for the second half's questions."""
    from korag.retrieval.bm25 import BM25Retriever

    _, test, _ = _split_sets(ctx)
    r = BM25Retriever(ctx.params["tokenizer"])
    r.index(test.corpus)
    ranking = r.search(test.judged_queries(), k=ctx.params["k"])
    return _evaluate(ctx, ranking, test, {})


def _filter_plot(reports: dict[str, dict[str, Any]], path: Path) -> Path:
    """Queries left after each filter step, one line per generation method and filter setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from korag.synth.filters import FilterReport

    fig, axes = plt.subplots(1, max(1, len(reports)), figsize=(6 * max(1, len(reports)), 4), squeeze=False)
    for ax, (name, rep) in zip(axes[0], reports.items(), strict=False):
        fr = FilterReport(rep["generated"], rep["dropped"], rep["kept"])
        rows = fr.rows()
        steps = [r[0] for r in rows]
        for method in rows[0][1]:
            ax.plot(steps, [r[1].get(method, 0) for r in rows], marker="o", label=method)
        ax.set_title(f"filters: {name}")
        ax.set_ylabel("queries")
        ax.tick_params(axis="x", rotation=30)
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic.atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return path


def _filter_table(reports: dict[str, dict[str, Any]]) -> str:
    from korag.synth.filters import FilterReport

    lines = []
    for name, rep in reports.items():
        fr = FilterReport(rep["generated"], rep["dropped"], rep["kept"])
        rows = fr.rows()
        methods = list(rows[0][1])
        lines += [
            f"**{name}**",
            "",
            "| step | " + " | ".join(methods) + " | total |",
            "|---" * (len(methods) + 2) + "|",
        ]
        for step, counts in rows:
            vals = [counts.get(m, 0) for m in methods]
            lines.append(f"| {step} | " + " | ".join(str(v) for v in vals) + f" | {sum(vals)} |")
        lines.append("")
    return "\n".join(lines)


def run_enhance_report(ctx: StageContext) -> dict[str, Any]:
    """Table and plots of every run, and the per-filter query counts."""
    p = ctx.params
    evals = ctx.inputs_named("eval")
    trains = ctx.inputs_named("train")
    runs = []
    for name, settings in p["runs"].items():
        settings = dict(settings)
        label = settings.pop("label", name)  # the row's name as shown; `name` is the run's key
        metrics = {k: v for k, v in evals[name].metrics.items() if k in p["metrics"]}
        timings = {}
        if name in trains:
            tm = trains[name].metrics
            settings = {**settings, "pairs": tm["pairs"], "synthetic pairs": tm["synthetic_pairs"]}
            timings["train_seconds"] = tm["train_seconds"]
        runs.append(RunSummary(label, settings, metrics, timings))
    reports = {n: a.read_json(FILTER_REPORT_FILE) for n, a in ctx.inputs_named("filter").items()}
    sections = {"Synthetic queries per filter step": _filter_table(reports)} if reports else {}
    paths = write_flow_report(ctx, runs, sections)
    if reports:
        _filter_plot(reports, ctx.out / "filters.png")
    return {"runs": len(runs), "files": sorted(x.name for x in paths.values())}


SPLIT = Stage("split", 1, run_split, Kind.SPLIT, "split a QA set by document group")
GENERATE = Stage("generate", 1, run_generate, Kind.SYNTHETIC, "LLM query generation (resumable)")
GENERATE_FREE = Stage("generate-free", 1, run_generate_free, Kind.SYNTHETIC, "inverse-cloze and keyphrase queries")
FILTER = Stage("filter", 1, run_filter, Kind.FILTERED, "filter synthetic queries")
TRAIN = Stage("train", 2, run_train, Kind.MODEL, "fine-tune a dense retriever")
DENSE_EVAL = Stage("dense-eval", 1, run_dense_eval, Kind.EVALUATION, "dense retrieval metrics")
BM25_EVAL = Stage("bm25-eval", 1, run_bm25_eval, Kind.EVALUATION, "BM25 retrieval metrics")
ENHANCE_REPORT = Stage("enhance-report", 1, run_enhance_report, Kind.REPORT, "comparison table and plots")
