"""The retrieval flow (``flow: bm25``, the default): load → stats → per run tokenize → bm25-index
(→ retrieve → evaluate) → report.

``tokenize`` is a stage of its own so that BM25 variants of one tokenizer (k1, b, method) reuse
the term counts; ``stats`` and the report read the loaded data once."""

from __future__ import annotations

import io
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from korag import atomic
from korag.data.load import as_retrieval_set, corpus_of
from korag.errors import ConfigError
from korag.pipeline.artifacts import (
    COUNTS_DIR,
    INDEX_DIR,
    METRICS_FILE,
    PER_QUERY_FILE,
    RANKING_FILE,
    STATS_JSON,
    STATS_MD,
    STATS_TXT,
    TREC_RUN_FILE,
    Kind,
)
from korag.pipeline.flows.common import (
    LOAD,
    EvalSpec,
    RecipeBase,
    ReportSpec,
    check_task_names,
    data_params,
    has_queries,
    report_params,
    write_flow_report,
)
from korag.pipeline.stage import Stage, StageContext, Task
from korag.retrieval.bm25 import METHODS
from korag.text.tokenize import DEFAULT_TOKENIZER, make_tokenizer
from korag.util.config import StrictModel

# Libraries whose upgrades can change the tokens a tokenizer emits.
_TOKENIZER_LIBRARIES = {"kiwi": "kiwipiepy", "mecab": "python-mecab-ko", "hf": "tokenizers"}


class BM25Run(StrictModel):
    """One BM25 configuration to index, search and evaluate."""

    retriever: Literal["bm25"] = "bm25"
    tokenizer: str | dict[str, Any] = DEFAULT_TOKENIZER
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


class StatsSpec(StrictModel):
    """Corpus statistics."""

    enabled: bool = True
    tokenizer: str = DEFAULT_TOKENIZER


class BM25Recipe(RecipeBase):
    """A whole job: data → statistics → runs → evaluation → report."""

    flow: Literal["bm25"] = Field("bm25", description="'bm25' (this flow), 'enhance' or 'pqa'")
    stats: StatsSpec = StatsSpec()
    runs: dict[str, BM25Run] = Field(min_length=1)
    eval: EvalSpec = EvalSpec()
    report: ReportSpec = ReportSpec()

    @field_validator("runs")
    @classmethod
    def _run_names(cls, v: dict[str, BM25Run]) -> dict[str, BM25Run]:
        return check_task_names(v)

    def plan(self, command: str | None = None) -> list[Task]:
        """load, stats, then per run tokenize → bm25-index (→ retrieve → evaluate), report."""
        tasks = [Task("load", LOAD, data_params(self))]
        report_inputs: dict[str, str] = {}
        if self.stats.enabled:
            tasks.append(Task("stats", STATS, {"tokenizer": self.stats.tokenizer}, {"data": "load"}))
            report_inputs["stats"] = "stats"
        evaluate = has_queries(self)
        settings: dict[str, dict[str, Any]] = {}
        for name, run in self.runs.items():
            tasks += _run_tasks(name, run, self.eval.k, self.eval.metrics, evaluate, report_inputs)
            tok_name = make_tokenizer(run.tokenizer).config()["name"]
            settings[name] = {"tokenizer": tok_name, "k1": run.k1, "b": run.b, "method": run.method}
        tasks.append(Task("report", REPORT, report_params(self, settings, command), report_inputs))
        return tasks


def _library_version(tokenizer_name: str) -> str | None:
    dist = _TOKENIZER_LIBRARIES.get(tokenizer_name)
    if dist is None:
        return None
    try:
        return f"{dist}=={version(dist)}"
    except PackageNotFoundError:
        return None


def _run_tasks(
    name: str, run: BM25Run, k: int, metrics: list[str], evaluate: bool, report_inputs: dict[str, str]
) -> list[Task]:
    tok_config = make_tokenizer(run.tokenizer).config()
    tok_params = {"tokenizer": tok_config, "with_title": run.with_title}
    lib = _library_version(str(tok_config["name"]))
    if lib:
        tok_params["library"] = lib
    index_params = {"tokenizer": tok_config, **run.model_dump(exclude={"retriever", "tokenizer"})}
    tasks = [
        Task(f"tokenize/{name}", TOKENIZE, tok_params, {"data": "load"}),
        Task(f"index/{name}", BM25_INDEX, index_params, {"counts": f"tokenize/{name}"}),
    ]
    report_inputs[f"tokenize:{name}"] = f"tokenize/{name}"
    report_inputs[f"index:{name}"] = f"index/{name}"
    if evaluate:
        tasks.append(Task(f"retrieve/{name}", RETRIEVE, {"k": k}, {"index": f"index/{name}", "data": "load"}))
        tasks.append(
            Task(f"evaluate/{name}", EVALUATE, {"metrics": metrics}, {"ranking": f"retrieve/{name}", "data": "load"})
        )
        report_inputs[f"retrieve:{name}"] = f"retrieve/{name}"
        report_inputs[f"eval:{name}"] = f"evaluate/{name}"
    return tasks


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run_stats(ctx: StageContext) -> dict[str, Any]:
    """Corpus statistics as JSON and as the text of the rich tables."""
    from rich.console import Console

    from korag.data.stats import compute_stats, render_stats, stats_markdown

    stats = compute_stats(ctx.input("data").dataset(), ctx.params["tokenizer"])
    atomic.write_json(ctx.out / STATS_JSON, stats.to_dict())
    console = Console(record=True, width=100, file=io.StringIO())
    for table in render_stats(stats):
        console.print(table)
    atomic.write_text(ctx.out / STATS_TXT, console.export_text())
    atomic.write_text(ctx.out / STATS_MD, stats_markdown(stats))
    return {"documents": stats.documents, "vocabulary": stats.vocabulary, "queries": stats.queries}


def run_tokenize(ctx: StageContext) -> dict[str, Any]:
    """Tokenize the corpus once per tokenizer; BM25 variants of it reuse the counts."""
    from korag.retrieval.term_counts import TermCounts

    corpus = corpus_of(ctx.input("data").dataset())
    tok = make_tokenizer(ctx.params["tokenizer"])
    texts = corpus.contents(ctx.params["with_title"])
    t0 = time.perf_counter()
    tok.tokenize("모형 준비")  # loads Kiwi's model etc., so the throughput below is tokenisation only
    init_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    tokens = tok.tokenize_batch(texts, show_progress=ctx.show_progress)
    seconds = time.perf_counter() - t0
    counts = TermCounts.build(tokens, corpus.ids)
    counts.save(ctx.out / COUNTS_DIR)
    chars = sum(len(t) for t in texts)
    return {
        "tokenizer_init_seconds": init_seconds,
        "tokenize_seconds": seconds,
        "characters": chars,
        "tokenize_chars_per_second": chars / seconds if seconds > 0 else 0.0,
        "tokens": int(counts.tf.sum()),
        "vocabulary": len(counts.vocab),
    }


def run_bm25_index(ctx: StageContext) -> dict[str, Any]:
    """BM25 weights from cached term counts, saved as a korag/bm25s index."""
    from korag.retrieval.bm25 import BM25Retriever

    p = ctx.params
    r = BM25Retriever(
        p["tokenizer"], k1=p["k1"], b=p["b"], delta=p["delta"], method=p["method"], with_title=p["with_title"]
    )
    r.index_counts(ctx.input("counts").term_counts())
    r.save(ctx.out / INDEX_DIR)
    return {"weights_seconds": r.timings["weights_seconds"], "index_bytes": _dir_bytes(ctx.out / INDEX_DIR)}


def run_retrieve(ctx: StageContext) -> dict[str, Any]:
    """Search every judged query; store the ranking as arrays and as a TREC run."""
    from korag.data.runs import save_ranking, write_trec_run

    rs = as_retrieval_set(ctx.input("data").dataset())
    if rs is None:
        raise ConfigError("retrieve needs queries")
    r = ctx.input("index").retriever(mmap=True)
    queries = rs.judged_queries()
    ranking = r.search(queries, k=ctx.params["k"], show_progress=ctx.show_progress)
    save_ranking(ranking, ctx.out / RANKING_FILE)
    write_trec_run(ranking, ctx.out / TREC_RUN_FILE, run_name=ctx.task_id.replace("/", "-"))
    total = r.timings["search_seconds"] + r.timings["query_tokenize_seconds"]
    return {
        "queries": len(queries),
        "search_seconds": r.timings["search_seconds"],
        "query_tokenize_seconds": r.timings["query_tokenize_seconds"],
        "queries_per_second": len(queries) / total if total > 0 else 0.0,
    }


def run_evaluate(ctx: StageContext) -> dict[str, Any]:
    """IR metrics of a ranking against the dataset's judgements."""
    from korag.eval.ir import evaluate_ranking

    rs = as_retrieval_set(ctx.input("data").dataset())
    result = evaluate_ranking(ctx.input("ranking").ranking(), rs.qrels, ctx.params["metrics"])
    atomic.write_json(ctx.out / METRICS_FILE, result.metrics)
    per_query = {m: dict(zip(result.query_ids, v.round(6).tolist(), strict=True)) for m, v in result.per_query.items()}
    atomic.write_json(ctx.out / PER_QUERY_FILE, per_query, indent=None)
    return result.metrics


def run_report(ctx: StageContext) -> dict[str, Any]:
    """Gather every run's settings, metrics and timings into report.md / .png / .json."""
    from korag.eval.report import RunSummary

    p = ctx.params
    evals = ctx.inputs_named("eval")
    retrieves = ctx.inputs_named("retrieve")
    tokenizes = ctx.inputs_named("tokenize")
    indexes = ctx.inputs_named("index")
    runs: list[RunSummary] = []
    for name, settings in p["runs"].items():
        timings: dict[str, float] = {}
        if name in tokenizes:
            tm = tokenizes[name].metrics
            timings["tokenize_chars_per_second"] = tm["tokenize_chars_per_second"]
            timings["index_seconds"] = tm["tokenize_seconds"] + indexes[name].metrics.get("weights_seconds", 0.0)
        if name in retrieves:
            timings["queries_per_second"] = retrieves[name].metrics["queries_per_second"]
        metrics = dict(evals[name].metrics) if name in evals else {}
        runs.append(RunSummary(name, settings, metrics, timings))
    sections: dict[str, str] = {}
    if "stats" in ctx.inputs:
        sections["Data"] = (ctx.input("stats").path / STATS_MD).read_text(encoding="utf-8")
    if not evals:
        sections["Evaluation"] = "The data has no queries with judgements, so retrieval was not evaluated."
        search = [
            f'- {name}: `{a.path}`\n\n  ```\n  korag search {a.path} "질문" -k 5\n  ```' for name, a in indexes.items()
        ]
        sections["Search the index"] = "\n".join(search)
    paths = write_flow_report(ctx, runs, sections)
    best = max(runs, key=lambda r: r.metrics.get(p.get("sort_by") or "", float("-inf"))) if evals else None
    return {
        "runs": len(runs),
        "best_run": best.name if best else None,
        "files": sorted(str(x.name) for x in paths.values()),
    }


STATS = Stage("stats", 1, run_stats, Kind.STATS, "corpus and question statistics")
TOKENIZE = Stage("tokenize", 1, run_tokenize, Kind.TERM_COUNTS, "tokenize the corpus and count terms")
BM25_INDEX = Stage("bm25-index", 1, run_bm25_index, Kind.INDEX, "BM25 weights and index")
RETRIEVE = Stage("retrieve", 1, run_retrieve, Kind.RANKING, "search the judged queries")
EVALUATE = Stage("evaluate", 1, run_evaluate, Kind.EVALUATION, "retrieval metrics")
REPORT = Stage("report", 1, run_report, Kind.REPORT, "comparison table and chart")
