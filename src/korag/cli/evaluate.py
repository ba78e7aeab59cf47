"""`korag eval retrieval` (and, registered by `korag.cli.memory`, ``eval clara`` / ``eval pqa``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from korag import atomic
from korag.cli.common import check_k, flag, out
from korag.collections.config import AskSettings, RerankSettings
from korag.errors import ConfigError, DataError
from korag.text.tokenize import DEFAULT_TOKENIZER

app = typer.Typer(help="Evaluate retrievers and readers.", no_args_is_help=True)


CorpusOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--corpus",
        help="your documents (files, folders, or a collection name; repeatable): DATA is then a questions "
        "JSONL (question, answers) and a passage counts when it contains an answer",
    ),
]
HomeOpt = Annotated[Path | None, typer.Option("--home", help="where named collections live")]
RerankOpt = Annotated[
    str | None,
    typer.Option(help="rerank with this cross-encoder (korag train reranker's output, or its model/)"),
]
RerankKOpt = Annotated[int, typer.Option("--rerank-k", help="candidates of the retriever the cross-encoder reranks")]
RerankBlendOpt = flag(
    float, RerankSettings, "blend", "--rerank-blend", extra="with --tune-split and unset: chosen on that split"
)


def check_rerank(rerank: str, rerank_k: int, *, own_documents: bool = False) -> None:
    """Refuse a missing or untrained reranker (or a bad depth) before any data is read."""
    from korag.cli.common import require_extra
    from korag.retrieval.rerank import check_reranker

    if own_documents:
        raise ConfigError("--rerank evaluates BEIR/QA data; with --corpus (your own documents) it is not supported yet")
    check_k(rerank_k, "--rerank-k")
    require_extra("dense", "--rerank")
    check_reranker(rerank)


def with_reranker(r, rerank: str, rerank_k: int, *, blend: float | None = None, corpus=None, **settings):
    """`r` with its top `rerank_k` reordered by the cross-encoder at `rerank` (reading the
    passages of `corpus`, or of `r` when None), its score mixed with `r`'s by `blend`."""
    from korag.retrieval.rerank import CrossEncoderReranker, RerankingRetriever

    reranker = CrossEncoderReranker(rerank, **settings)
    blend = RerankSettings.model_fields["blend"].default if blend is None else blend
    return RerankingRetriever(r, reranker, rerank_k=rerank_k, blend=blend, corpus=corpus)


@app.command("retrieval")
def eval_retrieval(
    data_dir: Annotated[str, typer.Argument(help="BEIR-layout directory (or any loadable QA data)")],
    corpus: CorpusOpt = None,
    home: HomeOpt = None,
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
    fusion: Annotated[
        str | None,
        typer.Option(help="hybrid fusion: rrf | weighted | adaptive [default: adaptive with --tune-split, else rrf]"),
    ] = None,
    weights: Annotated[str | None, typer.Option(help="hybrid weights in member order, e.g. 0.7,0.3")] = None,
    tune_split: Annotated[
        str | None, typer.Option(help="choose hybrid weights (and the rerank blend) on this split's queries")
    ] = None,
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
    rerank: RerankOpt = None,
    rerank_k: RerankKOpt = 30,
    rerank_blend: RerankBlendOpt = None,
) -> None:
    """Index the corpus, search the split's queries, print and save MRR/nDCG/Recall and timings.
    With --rerank: the retriever's top --rerank-k reordered by a cross-encoder (its cost in
    rerank_ms_per_query; with --tune-split the blend of its and the retriever's score is chosen
    there unless --rerank-blend is given). With --corpus: answer recall@k and MRR of your own documents for a
    questions file.

    \f
    Longer than 80 lines only through its signature: typer declares one parameter per option;
    the body is 54 lines.
    """
    from korag.data.load import as_retrieval_set, load
    from korag.eval.ir import DEFAULT_METRICS
    from korag.retrieval.evaluate import evaluate_retriever, tune_hybrid
    from korag.retrieval.factory import check_models, make_retriever, parse_weights

    check_k(k)
    fusion = fusion or ("adaptive" if tune_split else "rrf")
    if fusion == "adaptive" and not tune_split:
        raise ConfigError("adaptive fusion is learned from judged questions: add --tune-split SPLIT")
    if tune_split and retriever != "hybrid" and rerank is None:
        raise ConfigError("--tune-split tunes a hybrid's fusion or, with --rerank, the rerank blend")
    member_list = [m.strip() for m in members.split(",")] if members else None
    check_models(retriever, model=model, sparse_model=sparse_model, members=member_list)  # before any data is read
    if rerank is not None:
        check_rerank(rerank, rerank_k, own_documents=bool(corpus))
    if corpus:
        cfg = _collection_config(model, sparse_model, tokenizer, k1, b, fusion, weights)
        _eval_own_retrieval(Path(data_dir), corpus, cfg, retriever, k, home, output)
        return
    _refuse_questions_without_corpus(data_dir)
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
        tune_set = as_retrieval_set(load(data_dir, split=tune_split))
        r.index(dataset.corpus, show_progress=True)
        if retriever == "hybrid":
            tuning = tune_hybrid(r, tune_set)
            _print_tuning(tuning, tune_split)
    first_stage = r
    if rerank is not None:
        r = with_reranker(r, rerank, rerank_k, blend=rerank_blend, batch_size=batch_size, precision=precision)
        if tune_split and rerank_blend is None:
            tuning = {**(tuning or {}), "rerank_blend": r.tune_blend(tune_set)}
            chosen = tuning["rerank_blend"]
            out.print(f"rerank blend {r.blend:g} chosen on '{tune_split}' ({chosen['queries']} queries)")
    result = evaluate_retriever(
        r, dataset, k=k, metrics=metric or DEFAULT_METRICS, show_progress=True, index=not tune_split
    )
    _report_retrieval(r, first_stage, result, tuning, retriever, data_dir, split, k, output)


def _report_retrieval(
    r: Any,
    first_stage: Any,
    result: Any,
    tuning: dict | None,
    retriever: str,
    data_dir: str,
    split: str,
    k: int,
    output: Path | None,
) -> None:
    """Print the metric table (and a sparse member's efficiency); save the JSON report to `output`."""
    from korag.eval.tables import metric_table

    described = r.describe()
    stages = getattr(first_stage, "retrievers", [first_stage])
    efficiency = [m.efficiency() for m in stages if hasattr(m, "efficiency")]
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


def _print_tuning(tuning: dict, split: str) -> None:
    if "combiner" in tuning:
        cv = ", ".join(f"{n} {v:.4f}" for n, v in tuning["combiner"]["cv_mrr@10"].items())
        out.print(
            f"adaptive fusion fitted on '{split}' ({tuning['queries']} queries; 5-fold MRR@10: {cv}): "
            f"{tuning['chosen']}"
        )
    else:
        out.print(f"hybrid weights tuned on '{split}' ({tuning['queries']} queries): {tuning['weights']}")


def _refuse_questions_without_corpus(data: str) -> None:
    """A questions file given as data: say what it needs instead of failing on a missing field."""
    from korag.data.questions import looks_like_questions

    if looks_like_questions(data):
        raise ConfigError(
            f"{data} holds questions with answers; say where to look for them: --corpus FILES_OR_FOLDERS "
            "(or a collection name)"
        )


def _collection_config(model, sparse_model, tokenizer, k1, b, fusion, weights):
    """A collection's settings from the retriever flags (for evaluating files not yet in one)."""
    from korag.collections.config import CollectionConfig

    raw: dict = {"name": "eval", "bm25": {"tokenizer": tokenizer, "k1": k1, "b": b}, "fusion": {"method": fusion}}
    if model:
        raw["dense"] = {"model": model}
    if sparse_model:
        raw["sparse"] = {"model": sparse_model}
    if weights:
        raw["fusion"]["weights"] = [float(w) for w in weights.split(",")]
    return CollectionConfig.model_validate(raw)


def _eval_own_retrieval(questions_path: Path, sources, cfg, retriever, k, home, output) -> None:
    from korag.cli.common import print_load_report
    from korag.collections.evaluate import DEFAULT_KS, corpus_collection, evaluate_retrieval
    from korag.data.questions import read_questions_jsonl
    from korag.eval.tables import metric_table

    questions = read_questions_jsonl(questions_path)  # a bad question file stops before any indexing
    with corpus_collection(sources, cfg, home=home, show_progress=True) as (coll, report):
        if report is not None:
            print_load_report(report)
        result = evaluate_retrieval(coll, questions, retriever=retriever, k=k, ks=DEFAULT_KS)
    title = (
        f"{result['retriever']} on {', '.join(sources)}: {result['questions']} questions, "
        f"a passage counts when it contains an answer"
    )
    out.print(metric_table(title, result["metrics"], {"search_seconds": result["search_seconds"]}))
    if result["missed"]:
        shown = ", ".join(result["missed"][:10]) + (" …" if len(result["missed"]) > 10 else "")
        out.print(f"{len(result['missed'])} question(s) with no answer in the top {k}: {shown}")
    if output:
        atomic.write_json(output, {**result, "questions_file": str(questions_path), "corpus": list(sources)})
        out.print(f"wrote {output}")


@app.command("qa")
def eval_qa(
    questions: Annotated[Path, typer.Argument(help="questions JSONL: question, answers (and an optional id)")],
    corpus: Annotated[
        list[str], typer.Option("--corpus", help="your documents: files, folders, or a collection name (repeatable)")
    ],
    reader: flag(str, AskSettings, "reader", "--reader") = None,
    k: flag(int, AskSettings, "k", "--k", "-k") = None,
    retriever: flag(str, AskSettings, "retriever", "--retriever") = None,
    style: flag(str, AskSettings, "style", "--style") = None,
    max_tokens: flag(int, AskSettings, "max_tokens", "--max-tokens") = None,
    model_name: flag(str, AskSettings, "model_name", "--model-name") = None,
    model: Annotated[str | None, typer.Option(help="files: also index with this dense model (e.g. e5-small)")] = None,
    closed_book: Annotated[bool, typer.Option(help="also answer without passages, for comparison")] = True,
    limit: Annotated[int | None, typer.Option(help="the first N questions")] = None,
    home: HomeOpt = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write the rows (with answers) as JSON")] = None,
) -> None:
    """EM/F1 of `korag ask` over your documents, next to the same reader closed-book."""
    from korag.cli.common import config_from, print_load_report, require_extra
    from korag.collections.evaluate import corpus_collection, evaluate_ask
    from korag.data.questions import read_questions_jsonl
    from korag.eval.comparison import rows_to_json
    from korag.eval.tables import qa_table

    flags = {"reader": reader, "k": k, "retriever": retriever, "style": style, "max_tokens": max_tokens}
    settings = config_from(AskSettings, flags={**flags, "model_name": model_name})
    if not settings.reader.startswith(("http://", "https://")):
        require_extra("memory" if settings.reader.startswith("clara:") else "llm", "korag eval qa")
    asked = read_questions_jsonl(questions)[:limit]
    cfg = _collection_config(model, None, DEFAULT_TOKENIZER, 1.5, 0.75, "rrf", None)
    with corpus_collection(corpus, cfg, home=home, show_progress=True) as (coll, report):
        if report is not None:
            print_load_report(report)
        chosen = coll.reader(
            settings.reader, style=settings.style, max_tokens=settings.max_tokens, model_name=settings.model_name
        )
        rows = evaluate_ask(
            coll, asked, chosen, k=settings.k, retriever=settings.retriever, closed_book=closed_book, show_progress=True
        )
    out.print(qa_table(f"ask with {settings.reader} on {', '.join(corpus)} ({len(asked)} questions)", rows))
    if output:
        atomic.write_json(output, rows_to_json(rows))
        out.print(f"wrote {output}")
