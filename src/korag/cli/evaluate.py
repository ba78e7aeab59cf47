"""`korag eval retrieval` (and, registered by `korag.cli.memory`, ``eval clara`` / ``eval pqa``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from korag import atomic
from korag.cli.common import check_k, out
from korag.errors import ConfigError, DataError
from korag.text.tokenize import DEFAULT_TOKENIZER

app = typer.Typer(help="Evaluate retrievers and readers.", no_args_is_help=True)


@app.command("retrieval")
def eval_retrieval(
    data_dir: Annotated[str, typer.Argument(help="BEIR-layout directory (or any loadable QA data)")],
    retriever: Annotated[str, typer.Option(help="bm25 | dense | sparse | hybrid")] = "bm25",
    model: Annotated[
        str | None, typer.Option(help="dense model (sparse model with --retriever sparse): a directory or hub id")
    ] = None,
    sparse_model: Annotated[str | None, typer.Option(help="korag sparse model directory (for hybrids)")] = None,
    members: Annotated[
        str | None,
        typer.Option(help="hybrid members, e.g. bm25,dense or sparse,dense [default: BM25 + the models given]"),
    ] = None,
    prune_type: Annotated[
        str, typer.Option(help="sparse: prune documents like OpenSearch: none|top_k|max_ratio|alpha_mass|abs_value")
    ] = "none",
    prune_ratio: Annotated[float | None, typer.Option(help="sparse: the pruning parameter")] = None,
    tokenizer: Annotated[
        str, typer.Option(help="bigram-stem | bigram | kiwi | mecab | whitespace | ngram:N | hf:PATH")
    ] = DEFAULT_TOKENIZER,
    split: Annotated[str, typer.Option(help="qrels split")] = "test",
    k: Annotated[int, typer.Option("--k", "-k", help="retrieval depth")] = 100,
    k1: Annotated[float, typer.Option(help="BM25 k1")] = 1.5,
    b: Annotated[float, typer.Option(help="BM25 b")] = 0.75,
    method: Annotated[str, typer.Option(help="BM25 variant: lucene, robertson, atire, bm25l, bm25+")] = "lucene",
    fusion: Annotated[str, typer.Option(help="hybrid fusion: rrf | weighted")] = "rrf",
    weights: Annotated[str | None, typer.Option(help="hybrid weights in member order, e.g. 0.7,0.3")] = None,
    tune_split: Annotated[str | None, typer.Option(help="choose hybrid weights on this split's queries")] = None,
    batch_size: Annotated[int, typer.Option(help="dense encoding batch size")] = 32,
    max_seq_length: Annotated[int | None, typer.Option(help="truncate model inputs to this many tokens")] = None,
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
    from korag.eval.tables import metric_table
    from korag.retrieval.evaluate import evaluate_retriever, tune_hybrid
    from korag.retrieval.factory import check_models, make_retriever, parse_weights

    check_k(k)
    member_list = [m.strip() for m in members.split(",")] if members else None
    check_models(retriever, model=model, sparse_model=sparse_model, members=member_list)  # before any data is read
    dataset = as_retrieval_set(load(data_dir, split=split, show_progress=True))
    if dataset is None or not len(dataset.qrels):
        raise DataError(data_dir, "has no queries with judgements to evaluate")
    r = make_retriever(
        retriever,
        model=model,
        sparse_model=sparse_model,
        members=member_list,
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
    described = r.describe()
    efficiency = [m.efficiency() for m in getattr(r, "retrievers", [r]) if hasattr(m, "efficiency")]
    title = f"{retriever} ({described['name']}) on {data_dir} [{split}]"
    out.print(metric_table(title, result.metrics, result.timings))
    for e in efficiency:
        out.print(
            f"sparse: {e['query_active_dims']:.1f} active dims per query, {e['document_active_dims']:.1f} per "
            f"document, FLOPS {e['flops']:.2f}, postings {e['index_mb']:.1f} MB"
        )
    if output:
        extra: dict = {"tuning": {k_: v for k_, v in tuning.items() if k_ != "trials"}} if tuning else {}
        if efficiency:
            extra["sparse_efficiency"] = efficiency[0] if len(efficiency) == 1 else efficiency
        payload = result.to_json(retriever=described, data={"path": str(data_dir), "split": split}, k=k, **extra)
        atomic.write_json(output, payload)
        out.print(f"wrote {output}")
