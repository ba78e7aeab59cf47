"""`korag encode`: a corpus into dense (or learned sparse) vector shards, on one or many processes.

Run it alone, or under a launcher to split the shards over processes::

    korag encode corpus.jsonl --model e5-small --output vectors
    accelerate launch --multi_gpu --num_processes 4 -m korag.cli encode corpus.jsonl --model e5-small --output vectors
    torchrun --nproc_per_node 4 -m korag.cli encode corpus.jsonl --model e5-small --output vectors
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from korag.cli.common import out


def register(app: typer.Typer) -> None:
    """Add `encode` to the top-level app."""
    app.command()(encode)


def encode(
    corpus: Annotated[
        str, typer.Argument(help="passages: JSON Lines (streamed), a dataset directory, any loadable data")
    ],
    model: Annotated[str, typer.Option("--model", help="a dense sentence-transformers model or a korag sparse model")],
    output: Annotated[Path, typer.Option("--output", "-o", help="directory for the shards and manifest.json")],
    shard_size: Annotated[
        int, typer.Option("--shard-size", help="passages per shard (and in memory at once)")
    ] = 10_000,
    batch_size: Annotated[int, typer.Option("--batch-size", help="passages per forward pass")] = 32,
    no_title: Annotated[bool, typer.Option("--no-title", help="encode the text without the title")] = False,
    max_seq_length: Annotated[int | None, typer.Option(help="truncate passages to this many tokens")] = None,
    precision: Annotated[str, typer.Option(help="auto (bf16 where native), fp32 or bf16")] = "auto",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, mps (under a launcher: each rank's own GPU)")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Encode every passage of CORPUS into safetensors shards plus a manifest (resumable: rerun
    the same command to finish an interrupted run). Under `accelerate launch` or `torchrun` each
    process encodes every N-th shard."""
    from korag.models.device import is_main_process
    from korag.retrieval.encode_shards import encode_corpus, result_dict

    result = encode_corpus(
        corpus,
        model,
        output,
        shard_size=shard_size,
        batch_size=batch_size,
        with_title=not no_title,
        max_seq_length=max_seq_length,
        precision=precision,
        device=device,
        show_progress=is_main_process() and not as_json,
    )
    if not is_main_process():  # one report per run, not one per process
        return
    if as_json:
        out.print_json(json.dumps(result_dict(result), ensure_ascii=False))
        return
    out.print(
        f"{result.passages} passages → {result.shards} {result.kind} shards (dim {result.dim}) in {result.output} "
        f"on {result.processes} process(es); this process: {result.passages_per_second:.1f} passages/s"
    )
