"""`korag train dense|sparse|reranker` (and, registered by `korag.cli.memory`, ``clara`` and ``pqa``).

Every setting of a trainer is its library config (`DenseTrainConfig`, `SparseTrainConfig`,
`RerankerTrainConfig`):
``--config FILE.yaml`` and ``--set key=value`` reach all of them, ``--show-config`` prints them,
and the everyday ones have flags whose help and defaults come from the config's fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from korag.cli.common import ConfigOpt, SetOpt, ShowConfigOpt, config_from, flag, out, require_extra
from korag.training.config import DenseTrainConfig, RerankerTrainConfig, SparseTrainConfig

app = typer.Typer(help="Train retrievers and memory models.", no_args_is_help=True)

DataArg = Annotated[str, typer.Argument(help="BEIR-layout directory (or QA data); trains on its 'train' split")]
OutputOpt = Annotated[Path, typer.Option("--output", "-o", help="output directory (model/ inside is the result)")]
ResumeOpt = Annotated[bool, typer.Option(help="continue from the last checkpoint in OUTPUT")]


def report_training(title: str, result, output: Path) -> None:
    """The metrics, speed and where the model went, as every retriever trainer prints them."""
    from korag.eval.tables import metric_table

    timings = {"train_seconds": result.train_seconds, "pairs_per_second": result.pairs_per_second}
    timings["steps"] = result.global_step
    out.print(metric_table(f"{title} → {result.model_dir}", dict(result.metrics), timings))
    if result.resumed_from:
        out.print(f"resumed from {result.resumed_from}")
    out.print(f"model: {result.model_dir}  (TensorBoard: korag tensorboard {output})")


def _flags(**values: Any) -> dict[str, Any]:
    """Flag values keyed by their config path; ``lora`` as a switch (on: the default adapter)."""
    flags = {k: v for k, v in values.items() if k != "lora"}
    lora = values.get("lora")
    if lora is not None:
        flags["lora"] = {} if lora else False
    return flags


def _train_split(data: str):
    """The training data: a BEIR directory's 'train' split, or any QA set."""
    from korag.data.load import load

    return load(data, split="train", show_progress=True)


@app.command("dense")
def train_dense_cmd(
    data: DataArg,
    output: OutputOpt,
    base: flag(str, DenseTrainConfig, "base") = None,
    lora: flag(bool, DenseTrainConfig, "lora", "--lora/--full") = None,
    epochs: flag(float, DenseTrainConfig, "epochs") = None,
    max_steps: flag(int, DenseTrainConfig, "max_steps") = None,
    batch_size: flag(int, DenseTrainConfig, "batch_size") = None,
    learning_rate: flag(float, DenseTrainConfig, "learning_rate") = None,
    hard_negatives: flag(int, DenseTrainConfig, "hard_negatives") = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    show_config: ShowConfigOpt = False,
    resume: ResumeOpt = True,
) -> None:
    """Fine-tune a bi-encoder (E5 prefixes, in-batch negatives, LoRA or full) with TensorBoard logs."""
    flags = _flags(
        base=base,
        lora=lora,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        hard_negatives=hard_negatives,
    )
    settings = config_from(DenseTrainConfig, config=config, sets=set_, flags=flags, show=show_config)
    require_extra("dense", "korag train dense")
    from korag.models.encoder import resolve_model_path
    from korag.training.dense import train_dense

    resolve_model_path(settings.base)  # a mistyped --base fails before the data is read
    result = train_dense(_train_split(data), settings, output, resume=resume)
    report_training("dense training", result, output)


@app.command("sparse")
def train_sparse_cmd(
    data: DataArg,
    output: OutputOpt,
    base: flag(str, SparseTrainConfig, "base") = None,
    mode: flag(str, SparseTrainConfig, "mode") = None,
    expansion: flag(bool, SparseTrainConfig, "expansion", "--expansion/--no-expansion") = None,
    lora: flag(bool, SparseTrainConfig, "lora", "--lora/--full") = None,
    epochs: flag(float, SparseTrainConfig, "epochs") = None,
    max_steps: flag(int, SparseTrainConfig, "max_steps") = None,
    batch_size: flag(int, SparseTrainConfig, "batch_size") = None,
    distill: flag(str, SparseTrainConfig, "distill") = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    show_config: ShowConfigOpt = False,
    resume: ResumeOpt = True,
) -> None:
    """Train a learned sparse retriever (SPLADE; OpenSearch neural-sparse compatible)."""
    flags = _flags(
        base=base,
        mode=mode,
        expansion=expansion,
        lora=lora,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        distill=distill,
    )
    settings = config_from(SparseTrainConfig, config=config, sets=set_, flags=flags, show=show_config)
    require_extra("dense", "korag train sparse")
    from korag.models.encoder import resolve_model_path
    from korag.training.sparse import train_sparse

    resolve_model_path(settings.base)
    result = train_sparse(_train_split(data), settings, output, resume=resume)
    report_training(f"sparse training ({settings.mode})", result, output)


@app.command("reranker")
def train_reranker_cmd(
    data: DataArg,
    output: OutputOpt,
    base: flag(str, RerankerTrainConfig, "base") = None,
    loss: flag(str, RerankerTrainConfig, "loss") = None,
    lora: flag(bool, RerankerTrainConfig, "lora", "--lora/--full") = None,
    epochs: flag(float, RerankerTrainConfig, "epochs") = None,
    max_steps: flag(int, RerankerTrainConfig, "max_steps") = None,
    batch_size: flag(int, RerankerTrainConfig, "batch_size") = None,
    learning_rate: flag(float, RerankerTrainConfig, "learning_rate") = None,
    hard_negatives: flag(int, RerankerTrainConfig, "hard_negatives") = None,
    negatives_from: flag(str, RerankerTrainConfig, "negatives_from") = None,
    max_seq_length: flag(int, RerankerTrainConfig, "max_seq_length") = None,
    rerank_depth: flag(int, RerankerTrainConfig, "rerank_depth") = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    show_config: ShowConfigOpt = False,
    resume: ResumeOpt = True,
) -> None:
    """Train a cross-encoder reranker (listwise or BCE, mined hard negatives, LoRA or full) with
    TensorBoard logs; use it with --rerank in `korag eval retrieval` and `korag search`."""
    flags = _flags(
        base=base,
        loss=loss,
        lora=lora,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        hard_negatives=hard_negatives,
        negatives_from=negatives_from,
        max_seq_length=max_seq_length,
        rerank_depth=rerank_depth,
    )
    settings = config_from(RerankerTrainConfig, config=config, sets=set_, flags=flags, show=show_config)
    require_extra("dense", "korag train reranker")
    from korag.models.encoder import resolve_model_path
    from korag.training.reranker import check_config, train_reranker

    resolve_model_path(settings.base)  # a mistyped --base fails before the data is read
    check_config(settings)
    result = train_reranker(_train_split(data), settings, output, resume=resume)
    report_training(f"reranker training ({settings.loss})", result, output)
