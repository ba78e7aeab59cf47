"""`korag index` and `korag search`: a saved index from any loadable data, and queries against it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from korag.cli.common import OverwriteOpt, check_k, err, flag, out, print_load_report
from korag.collections.config import RerankSettings
from korag.errors import ConfigError
from korag.text.tokenize import DEFAULT_TOKENIZER

KOpt = Annotated[int, typer.Option("--k", "-k", help="results per query")]


def register(app: typer.Typer) -> None:
    """Add the commands of this group to the top-level app."""
    app.command()(index)
    app.command()(search)


def index(
    data: Annotated[str, typer.Argument(help="data to index (any loadable source)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="index directory to write")],
    tokenizer: Annotated[str, typer.Option(help="tokenizer spec")] = DEFAULT_TOKENIZER,
    k1: Annotated[float, typer.Option(help="BM25 k1")] = 1.5,
    b: Annotated[float, typer.Option(help="BM25 b")] = 0.75,
    method: Annotated[str, typer.Option(help="BM25 variant: lucene, robertson, atire, bm25l, bm25+")] = "lucene",
    strict: Annotated[bool, typer.Option("--strict", help="stop at the first file that cannot be read")] = False,
    overwrite: OverwriteOpt = False,
    expand_with: Annotated[
        Path | None,
        typer.Option(
            help="doc2query: append each passage's generated queries (korag synth queries' JSONL) to its "
            "indexed text; results still show the original passage"
        ),
    ] = None,
    expand_max: Annotated[int | None, typer.Option(help="--expand-with: at most N queries per passage")] = None,
) -> None:
    """Build a BM25 index over any loadable data and save it (with the passages, for results)."""
    from korag.data.folder import LoadReport
    from korag.data.load import corpus_of, load
    from korag.retrieval.bm25 import BM25Retriever

    if output.exists() and any(output.iterdir()) and not overwrite:
        raise ConfigError(f"{output} exists and is not empty; pass --overwrite to replace it")
    r = BM25Retriever(tokenizer, k1=k1, b=b, method=method)  # settings checked before the data is read
    if expand_with is not None:
        from korag.retrieval.expansion_docs import ExpandedRetriever, read_expansions

        # read before the data: a malformed expansion file fails fast
        r = ExpandedRetriever(r, read_expansions(expand_with), max_per_doc=expand_max, source=str(expand_with))
    report = LoadReport()
    corpus = corpus_of(load(data, show_progress=True, strict=strict, report=report))
    r.index(corpus, show_progress=True)
    r.save(output, overwrite=overwrite)
    out.print(f"indexed {len(corpus):,} passages into {output}")
    if expand_with is not None:
        st = r.stats  # type: ignore[attr-defined]
        out.print(f"expanded {st.documents:,} passages with {st.queries:,} generated queries from {expand_with}")
        if st.unknown_documents:
            err.print(f"[yellow]{st.unknown_documents} expansion document id(s) are not in {data}: ignored[/]")
    print_load_report(report)
    if report.skipped:
        err.print(f"{len(report.skipped)} file(s) skipped; --strict stops at the first instead")


def search(
    index_dir: Annotated[
        str, typer.Argument(help="a saved index (korag index, a bm25-index artifact) or a collection name")
    ],
    query: Annotated[list[str], typer.Argument(help="one or more queries")],
    k: KOpt = 5,
    data: Annotated[str | None, typer.Option(help="the indexed data, for indexes saved without passages")] = None,
    retriever: Annotated[
        str | None, typer.Option(help="collections: bm25 | dense | sparse | hybrid [default: the collection's]")
    ] = None,
    home: Annotated[Path | None, typer.Option("--home", help="where named collections live")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the results as JSON")] = False,
    rerank: Annotated[
        str | None,
        typer.Option(help="rerank with this cross-encoder (korag train reranker's output, or its model/)"),
    ] = None,
    rerank_k: Annotated[int, typer.Option("--rerank-k", help="candidates the cross-encoder reranks")] = 30,
    rerank_blend: flag(float, RerankSettings, "blend", "--rerank-blend") = None,
) -> None:
    """Search a saved index or a collection and print the top-k passages per query, with their
    file and pages; --rerank reorders the index's top --rerank-k with a cross-encoder."""
    from korag.collections.store import CONFIG_FILE, Collection, collection_path
    from korag.pipeline.artifacts import open_index_dir
    from korag.retrieval.base import load_retriever
    from korag.retrieval.hits import ranking_hits

    check_k(k)
    if rerank is not None:
        from korag.cli.evaluate import check_rerank

        check_rerank(rerank, rerank_k)
    coll_dir = collection_path(index_dir, home)
    if (coll_dir / CONFIG_FILE).is_file() and not Path(index_dir, "retriever.json").is_file():
        blend = {"blend": rerank_blend} if rerank_blend is not None else {}
        chosen = RerankSettings(model=rerank, k=rerank_k, **blend) if rerank is not None else None  # None: collection's
        hits = Collection.open(coll_dir).batch_search(query, k, retriever=retriever, rerank=chosen)
    else:
        if retriever is not None:
            raise ConfigError("--retriever chooses among a collection's retrievers; a saved index has one")
        r = load_retriever(open_index_dir(Path(index_dir)))
        corpus = r.corpus()
        if data:
            from korag.data.load import corpus_of, load

            corpus = corpus_of(load(data))
        if rerank is not None:
            from korag.cli.evaluate import with_reranker

            # the index's passages, or --data's
            r = with_reranker(r, rerank, rerank_k, blend=rerank_blend, corpus=corpus)
        hits = ranking_hits(r.search(query, k=k), corpus)
    if as_json:
        payload = [{"query": q, "results": [h.to_dict() for h in hs]} for q, hs in zip(query, hits, strict=True)]
        out.print_json(json.dumps(payload, ensure_ascii=False))
        return
    for q, hs in zip(query, hits, strict=True):
        if not hs:
            err.print(f"[yellow]{q!r}: no passage matches any of its terms[/]")
            continue
        table = Table(title=q)
        for col in ("rank", "score", "source", "text"):
            table.add_column(col, overflow="fold", justify="right" if col in ("rank", "score") else "left")
        for h in hs:
            text = (f"[bold]{h.title}[/] " if h.title else "") + h.text[:160]
            table.add_row(str(h.rank), f"{h.score:.3f}", h.source(), text)
        out.print(table)
