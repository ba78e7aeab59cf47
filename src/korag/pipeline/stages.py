"""The built-in stages of the retrieval flow: load → stats → tokenize → bm25-index → retrieve →
evaluate → report. Each reads its inputs' directories and writes its own."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

from korag import atomic
from korag.data.chunk import ChunkConfig
from korag.data.load import load
from korag.data.runs import load_ranking, save_ranking, write_trec_run
from korag.data.saved import open_dataset, save_dataset
from korag.data.schema import Corpus, QASet, RetrievalSet
from korag.eval.ir import evaluate_ranking
from korag.eval.report import RunSummary, write_report
from korag.pipeline.stage import Stage, StageContext
from korag.retrieval.bm25 import BM25Retriever
from korag.retrieval.term_counts import TermCounts
from korag.text.tokenize import make_tokenizer


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _dataset(ctx: StageContext, name: str = "data"):
    return open_dataset(ctx.input(name).path / "dataset")


def _retrieval_set(data) -> RetrievalSet | None:
    if isinstance(data, QASet):
        return data.to_retrieval_set()
    return data if isinstance(data, RetrievalSet) else None


def _corpus(data) -> Corpus:
    return data if isinstance(data, Corpus) else data.corpus


def run_load(ctx: StageContext) -> dict[str, Any]:
    """Read the source, optionally keep the first N judged queries, store it."""
    p = ctx.params
    chunk = ChunkConfig(**p["chunk"]) if p.get("chunk") else None
    data = load(p["path"], format=p["format"], split=p["split"], chunk=chunk, show_progress=ctx.show_progress)
    if p.get("max_queries"):
        n = p["max_queries"]
        if isinstance(data, QASet):
            judged = [e for e in data.examples if e.doc_ids][:n]
            data = QASet(data.corpus, judged, name=data.name)
        elif isinstance(data, RetrievalSet):
            keep = [q for q in data.queries.ids if q in data.qrels][:n]
            data = RetrievalSet(data.corpus, data.queries.subset(keep), data.qrels.restrict(keep), name=data.name)
    save_dataset(data, ctx.out / "dataset")
    rs = _retrieval_set(data)
    return {
        "kind": "qa" if isinstance(data, QASet) else "retrieval" if rs is not None else "corpus",
        "documents": len(_corpus(data)),
        "queries": len(rs.queries) if rs else 0,
        "judgements": rs.qrels.num_pairs() if rs else 0,
    }


def run_stats(ctx: StageContext) -> dict[str, Any]:
    """Corpus statistics as JSON and as the text of the rich tables."""
    from rich.console import Console

    from korag.data.stats import compute_stats, render_stats, stats_markdown

    stats = compute_stats(_dataset(ctx), ctx.params["tokenizer"])
    atomic.write_json(ctx.out / "stats.json", stats.to_dict())
    console = Console(record=True, width=100, file=io.StringIO())
    for table in render_stats(stats):
        console.print(table)
    atomic.write_text(ctx.out / "stats.txt", console.export_text())
    atomic.write_text(ctx.out / "stats.md", stats_markdown(stats))
    return {"documents": stats.documents, "vocabulary": stats.vocabulary, "queries": stats.queries}


def run_tokenize(ctx: StageContext) -> dict[str, Any]:
    """Tokenize the corpus once per tokenizer; BM25 variants of it reuse the counts."""
    corpus = _corpus(_dataset(ctx))
    tok = make_tokenizer(ctx.params["tokenizer"])
    texts = corpus.contents(ctx.params["with_title"])
    t0 = time.perf_counter()
    tok.tokenize("모형 준비")  # loads Kiwi's model etc., so the throughput below is tokenisation only
    init_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    tokens = tok.tokenize_batch(texts, show_progress=ctx.show_progress)
    seconds = time.perf_counter() - t0
    counts = TermCounts.build(tokens, corpus.ids)
    counts.save(ctx.out / "counts")
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
    p = ctx.params
    counts = TermCounts.load(ctx.input("counts").path / "counts")
    r = BM25Retriever(
        p["tokenizer"], k1=p["k1"], b=p["b"], delta=p["delta"], method=p["method"], with_title=p["with_title"]
    )
    r.index_counts(counts)
    r.save(ctx.out / "index")
    return {"weights_seconds": r.timings["weights_seconds"], "index_bytes": _dir_bytes(ctx.out / "index")}


def run_retrieve(ctx: StageContext) -> dict[str, Any]:
    """Search every judged query; store the ranking as arrays and as a TREC run."""
    data = _dataset(ctx)
    rs = _retrieval_set(data)
    if rs is None:
        raise ValueError("retrieve needs queries")
    r = BM25Retriever.load(ctx.input("index").path / "index", mmap=True)
    queries = rs.judged_queries()
    ranking = r.search(queries, k=ctx.params["k"], show_progress=ctx.show_progress)
    save_ranking(ranking, ctx.out / "ranking.npz")
    write_trec_run(ranking, ctx.out / "run.trec", run_name=ctx.task_id.replace("/", "-"))
    total = r.timings["search_seconds"] + r.timings["query_tokenize_seconds"]
    return {
        "queries": len(queries),
        "search_seconds": r.timings["search_seconds"],
        "query_tokenize_seconds": r.timings["query_tokenize_seconds"],
        "queries_per_second": len(queries) / total if total > 0 else 0.0,
    }


def run_evaluate(ctx: StageContext) -> dict[str, Any]:
    """IR metrics of a ranking against the dataset's judgements."""
    rs = _retrieval_set(_dataset(ctx))
    ranking = load_ranking(ctx.input("ranking").path / "ranking.npz")
    result = evaluate_ranking(ranking, rs.qrels, ctx.params["metrics"])
    atomic.write_json(ctx.out / "metrics.json", result.metrics)
    per_query = {m: dict(zip(result.query_ids, v.round(6).tolist(), strict=True)) for m, v in result.per_query.items()}
    atomic.write_json(ctx.out / "per_query.json", per_query, indent=None)
    return result.metrics


def run_report(ctx: StageContext) -> dict[str, Any]:
    """Gather every run's settings, metrics and timings into report.md / .png / .json."""
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
        sections["Data"] = (ctx.input("stats").path / "stats.md").read_text(encoding="utf-8")
    if not evals:
        sections["Evaluation"] = "The data has no queries with judgements, so retrieval was not evaluated."
    sections["Reproduce"] = "```\n" + p.get("command", "korag run") + "\n```"
    paths = write_report(
        ctx.out,
        title=p["title"],
        runs=runs,
        metrics=p["metrics"],
        plot=p["plot"],
        sections=sections,
        sort_by=p.get("sort_by"),
    )
    best = max(runs, key=lambda r: r.metrics.get(p.get("sort_by") or "", float("-inf"))) if evals else None
    return {
        "runs": len(runs),
        "best_run": best.name if best else None,
        "files": sorted(str(x.name) for x in paths.values()),
    }


LOAD = Stage("load", 1, run_load, "read the data source into korag's schema")
STATS = Stage("stats", 1, run_stats, "corpus and question statistics")
TOKENIZE = Stage("tokenize", 1, run_tokenize, "tokenize the corpus and count terms")
BM25_INDEX = Stage("bm25-index", 1, run_bm25_index, "BM25 weights and index")
RETRIEVE = Stage("retrieve", 1, run_retrieve, "search the judged queries")
EVALUATE = Stage("evaluate", 1, run_evaluate, "retrieval metrics")
REPORT = Stage("report", 1, run_report, "comparison table and chart")

STAGES = {s.name: s for s in (LOAD, STATS, TOKENIZE, BM25_INDEX, RETRIEVE, EVALUATE, REPORT)}
