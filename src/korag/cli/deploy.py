"""`korag deploy opensearch`: a sparse model and a collection's passages into an OpenSearch cluster."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from korag.cli.common import out, require_extra
from korag.errors import ConfigError

app = typer.Typer(help="Deploy models and collections to search engines.", no_args_is_help=True)


def _api_key(env_name: str | None) -> str | None:
    if env_name is None:
        return None
    value = os.environ.get(env_name, "").strip()
    if not value:
        raise ConfigError(f"--api-key-env {env_name}: that environment variable is not set or empty")
    return value


def _tokens(text: str | None) -> dict[str, float] | None:
    if text is None:
        return None
    try:
        tokens = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--query-tokens is not valid JSON ({exc.msg})") from None
    if not isinstance(tokens, dict):
        raise ConfigError("--query-tokens must be a JSON object of token → weight, e.g. '{\"▁서울\": 1.5}'")
    return tokens


def _print_hits(hits: list[dict], title: str) -> None:
    from rich.table import Table

    if not hits:
        out.print(f"no hits for {title}")
        return
    table = Table(title=f"hits for {title}", title_justify="left")
    for column in ("#", "score", "id", "pages", "text"):
        table.add_column(column, justify="right" if column in ("#", "score") else "left", no_wrap=column != "text")
    for rank, hit in enumerate(hits, 1):
        text = " ".join(str(hit["text"]).split())
        score = hit["score"]
        table.add_row(
            str(rank),
            f"{score:.4f}" if isinstance(score, int | float) else str(score),
            str(hit["id"]),
            ",".join(str(p) for p in hit["pages"]),
            text if len(text) <= 80 else text[:79] + "…",
        )
    out.print(table)


@app.command("opensearch")
def deploy_opensearch(
    model_dir: Annotated[
        Path, typer.Argument(help="a korag sparse model directory, or a korag export opensearch directory")
    ],
    url: Annotated[str, typer.Option("--url", help="the cluster, e.g. https://localhost:9200")],
    index: Annotated[str, typer.Option("--index", help="index to create or reuse (lowercase)")],
    collection: Annotated[str, typer.Option("--collection", help="collection name (or a directory path)")],
    home: Annotated[
        Path | None, typer.Option("--home", help="where named collections live (as for korag collection)")
    ] = None,
    user: Annotated[str | None, typer.Option("--user", envvar="OPENSEARCH_USER", help="basic-auth user")] = None,
    password: Annotated[
        str | None,
        typer.Option("--password", envvar="OPENSEARCH_PASSWORD", help="basic-auth password (better: the env var)"),
    ] = None,
    api_key_env: Annotated[
        str | None,
        typer.Option("--api-key-env", help="environment variable holding an API key (sent as 'ApiKey <key>')"),
    ] = None,
    pipeline: Annotated[
        str | None, typer.Option("--pipeline", help="ingest pipeline name [default: INDEX-ingest]")
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name", help="model name in ML Commons [default: the model directory's name; an export keeps its own]"
        ),
    ] = None,
    query: Annotated[str | None, typer.Option("--query", help="a query to run once the passages are in")] = None,
    query_tokens: Annotated[
        str | None,
        typer.Option("--query-tokens", help="query as JSON token weights, each in (0, 64], e.g. '{\"▁서울\": 1.5}'"),
    ] = None,
    k: Annotated[int, typer.Option("--k", help="hits to show")] = 5,
    batch_size: Annotated[int, typer.Option("--batch-size", help="passages per bulk request")] = 200,
    timeout: Annotated[float, typer.Option("--timeout", help="seconds per HTTP request")] = 60.0,
    wait: Annotated[float, typer.Option("--wait", help="seconds to wait for a model to register, then deploy")] = 600.0,
    verify_certs: Annotated[
        bool, typer.Option("--verify-certs/--no-verify-certs", help="verify the cluster's TLS certificate")
    ] = True,
    settings: Annotated[
        bool,
        typer.Option(
            "--settings/--no-settings",
            help="set plugins.ml_commons.allow_registering_model_via_local_file=true and "
            "only_run_on_ml_node=false (needed to upload a local model; skip if an administrator set them)",
        ),
    ] = True,
    prune_type: Annotated[
        str, typer.Option(help="ingest pruning (OpenSearch 2.19+): none|top_k|max_ratio|alpha_mass|abs_value")
    ] = "max_ratio",
    prune_ratio: Annotated[float | None, typer.Option(help="ingest pruning parameter")] = 0.1,
    poll_interval: Annotated[float, typer.Option("--poll-interval", hidden=True)] = 1.0,
) -> None:
    """Register and deploy a sparse model in ML Commons, create the ingest pipeline and the index,
    bulk-load a collection's passages and run a neural_sparse query.

    A doc-only model also deploys its query tokenizer (SPARSE_TOKENIZE). The requests follow
    the ML Commons / neural-search sources and documentation and are tested against a
    validating stub, but are not verified against a live cluster.

    \f
    Longer than 80 lines only through its signature: typer declares one parameter per option;
    the body is 52 lines.
    """
    require_extra("opensearch", "korag deploy opensearch")
    from korag.collections.store import Collection, collection_path
    from korag.export.deploy import OpenSearchDeployer, check_index_name, check_query_tokens, is_export_dir

    check_index_name(index)
    tokens = _tokens(query_tokens)
    if tokens is not None:
        if query is not None:
            raise ConfigError("give --query or --query-tokens, not both")
        tokens = check_query_tokens(tokens)
    if k < 1:
        raise ConfigError(f"--k must be at least 1 (got {k})")
    if not model_dir.exists():
        raise ConfigError(f"{model_dir}: no such model directory")
    if not is_export_dir(model_dir):
        require_extra("dense", "korag deploy opensearch (exporting the model)")
    passages = Collection.open(collection_path(collection, home)).passages()
    if len(passages) == 0:
        raise ConfigError(f"collection {collection!r} has no passages; add documents first (korag add)")
    out.print(f"collection {collection}: {len(passages):,} passages")

    deployer = OpenSearchDeployer(
        url,
        user=user,
        password=password,
        api_key=_api_key(api_key_env),
        verify_certs=verify_certs,
        timeout=timeout,
        wait=wait,
        poll_interval=poll_interval,
        progress=out.print,
    )
    report = deployer.deploy(
        model_dir,
        index=index,
        passages=passages,
        pipeline=pipeline,
        name=name,
        prune_type=prune_type,
        prune_ratio=prune_ratio,
        batch_size=batch_size,
        configure=settings,
        query=query,
        query_tokens=tokens,
        k=k,
    )
    count = f"; the index holds {report.index_count:,}" if report.index_count is not None else ""
    out.print(f"index {report.index}: {report.passages:,} passages through pipeline {report.pipeline}{count}")
    query_id = (report.query_model or report.encoder).model_id
    out.print(f"encoder model {report.encoder.model_id}; query with model_id {query_id}")
    if query is not None or tokens is not None:
        _print_hits(report.hits, repr(query) if query is not None else "the query tokens")
