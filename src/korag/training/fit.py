"""The training machinery dense and sparse retrievers share.

Both fine-tune on (query, positive[, hard negatives]) pairs with a sentence-transformers trainer
(`SentenceTransformerTrainer` or its `SparseEncoderTrainer` subclass), so everything around
the loss is the same: the settings common to both (`TrainConfigBase`), held-out split and
negative mining (`prepare_pairs`), training arguments, TensorBoard with gradient statistics,
resumption from the last checkpoint, best-checkpoint selection, timing, `training.json`, and
checkpoint clean-up (`run_trainer`). Each trainer module adds its model and loss only.

Every trainer on `run_trainer` (dense, sparse, reranker) runs unchanged under ``accelerate
launch`` and ``torchrun``: the Hugging Face trainer distributes itself, and this module keeps the
run's meaning and outputs the same — ``batch_size`` stays the global batch (each process takes
``batch_size / processes``, see `korag.training.distributed`), settings are checked and
checkpoints removed by the main process only, and only it writes TensorBoard, the final
evaluation, models and ``training.json``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from korag import __version__, atomic
from korag.data.schema import QASet, RetrievalSet
from korag.data.training import TrainingPair, as_retrieval_set, dev_corpus, split_queries, training_pairs
from korag.errors import DataError
from korag.models.device import is_main_process
from korag.training.config import TrainConfigBase
from korag.training.distributed import decide_on_main, per_device_batch, world_size
from korag.util.resume import check_resumable

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """Where the trained model is and how training went."""

    output: Path
    model_dir: Path
    adapter_dir: Path | None
    train_pairs: int
    dev_queries: int
    metrics: dict[str, float] = field(default_factory=dict)
    train_seconds: float = 0.0
    pairs_per_second: float = 0.0
    global_step: int = 0
    resumed_from: str | None = None
    best_checkpoint: str | None = None
    processes: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Trained:
    """What `run_trainer` hands back: the trainer, wall time, speed, final dev metrics and the
    checkpoint the run resumed from."""

    trainer: Any
    seconds: float
    pairs_per_second: float
    metrics: dict[str, float]
    resumed_from: str | None


@dataclass
class PreparedPairs:
    """Training pairs and the held-out queries that select the best checkpoint."""

    train: RetrievalSet
    dev: RetrievalSet
    pairs: list[TrainingPair]


def mine_for_training(
    rs: RetrievalSet, config: TrainConfigBase, answers: dict[str, list[str]] | None, show_progress: bool
) -> dict[str, list[str]]:
    """Hard negatives per training query, from BM25 or from the (dense) base model."""
    from korag.retrieval.negatives import mine_negatives

    if config.negatives_from == "model":
        from korag.retrieval.dense import DenseRetriever

        miner: Any = DenseRetriever(config.base, max_seq_length=config.max_seq_length, device=config.device)
    else:
        from korag.retrieval.bm25 import BM25Retriever

        miner = BM25Retriever()
    miner.index(rs.corpus, show_progress=show_progress)
    negatives, _ = mine_negatives(
        rs, miner, num=config.hard_negatives, rank_range=config.negative_ranks, answers=answers
    )
    return negatives


def prepare_pairs(
    train: RetrievalSet | QASet,
    config: TrainConfigBase,
    dev: RetrievalSet | QASet | None,
    *,
    show_progress: bool,
    extra_pairs: Sequence[TrainingPair] = (),
) -> PreparedPairs:
    """Hold out dev queries (unless `dev` is given), mine negatives, build the pairs; `extra_pairs`
    (e.g. synthetic queries) are added as they are. `train` may have no queries when they are
    the only data (the label-free case)."""
    rs = as_retrieval_set(train)
    if dev is None:
        rs, dev_rs = split_queries(rs, config.eval_fraction, config.seed)
    else:
        dev_rs = as_retrieval_set(dev)
    answers = {e.id: e.answers for e in train.examples} if isinstance(train, QASet) else None
    labelled = len(rs.judged_queries()) > 0
    if not labelled and not extra_pairs:
        raise DataError(rs.name or None, "no training pairs: no query has a relevant document in this split")
    negatives = mine_for_training(rs, config, answers, show_progress) if config.hard_negatives and labelled else None
    pairs = training_pairs(rs, with_title=config.with_title, negatives=negatives) if labelled else []
    pairs += list(extra_pairs)
    if config.hard_negatives:
        pairs = [p for p in pairs if len(p.negatives) == config.hard_negatives]
        if not pairs:
            raise DataError(rs.name or None, "no query kept the requested number of hard negatives")
    return PreparedPairs(rs, dev_rs, pairs)


def pair_columns(pairs: list[TrainingPair], hard_negatives: int) -> dict[str, list[str]]:
    """The trainer's dataset columns: anchor, positive, negative_1 … negative_n."""
    columns = {"anchor": [p.query for p in pairs], "positive": [p.positive for p in pairs]}
    for j in range(hard_negatives):
        columns[f"negative_{j + 1}"] = [p.negatives[j] for p in pairs]
    return columns


def set_dropout_(model, p: float) -> int:
    """Set every `nn.Dropout` of `model` to probability `p` (the saved config is left alone)."""
    import torch

    n = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = p
            n += 1
    return n


def merge_lora_(hf) -> int:
    """Fold every LoRA layer of a Hugging Face model into its base weights, in place.

    The adapters were injected through transformers' PEFT integration (no `PeftModel`, so no
    `merge_and_unload`); this is its equivalent: merge each LoRA layer, put its base layer back,
    and forget the adapter config so the model saves as plain weights. Returns layers merged.
    """
    from peft.tuners.lora import LoraLayer

    merged = 0

    def walk(module) -> None:
        nonlocal merged
        for name, child in list(module.named_children()):
            if isinstance(child, LoraLayer):
                child.merge()
                setattr(module, name, child.get_base_layer())
                merged += 1
            else:
                walk(child)

    walk(hf)
    for attr in ("peft_config", "_hf_peft_config_loaded"):
        if hasattr(hf, attr):
            with contextlib.suppress(AttributeError):
                delattr(hf, attr)
    return merged


def ir_evaluator(
    evaluator_cls: type,
    rs: RetrievalSet,
    config: TrainConfigBase,
    query_prompt: str = "",
    corpus_prompt: str = "",
    *,
    bf16: bool = True,
    show_progress: bool = True,
):
    """A sentence-transformers IR evaluator (dense or sparse class) over held-out queries and a
    capped dev corpus, run under bf16 autocast where the CPU has it. Each evaluation says what it
    encodes and shows a progress bar: on a CPU it can take minutes, and silence looks like a hang."""
    import torch

    from korag.models.device import bf16_autocast, bf16_supported

    corpus = dev_corpus(rs, config.eval_max_docs, config.seed)
    autocast = bf16 and bf16_supported(config.device)

    class _Evaluator(evaluator_cls):
        # evaluation encodes the whole dev corpus; bf16 autocast halves that on CPUs that have it
        def __call__(self, *args, **kwargs):
            log.info("held-out evaluation: %d queries over %d documents", len(rs.queries), len(corpus))
            with torch.inference_mode(), bf16_autocast(autocast, config.device):
                return super().__call__(*args, **kwargs)

    return _Evaluator(
        queries={q.id: q.text for q in rs.queries},
        corpus=dict(zip(corpus.ids, corpus.contents(config.with_title), strict=True)),
        relevant_docs={q: set(rs.qrels.relevant(q)) for q in rs.qrels},
        name="dev",
        query_prompt=query_prompt or None,
        corpus_prompt=corpus_prompt or None,
        mrr_at_k=[10],
        ndcg_at_k=[10],
        accuracy_at_k=[1, 5],
        precision_recall_at_k=[1, 5, 10],
        map_at_k=[100],
        batch_size=32,
        write_csv=False,
        show_progress_bar=show_progress,
    )


def use_bf16(config: TrainConfigBase) -> bool:
    """Whether training runs under bfloat16 autocast."""
    from korag.models.device import wants_bf16

    return wants_bf16(config.precision, config.device)


def _training_args(
    args_cls: type,
    config: TrainConfigBase,
    ckpt_dir: Path,
    has_dev: bool,
    metric_for_best: str | None,
    show_progress: bool,
    extra_args: dict[str, Any] | None,
) -> Any:
    """The trainer's arguments from `config`: checkpoints and evaluation every `eval_steps`, the
    best dev checkpoint loaded at the end when there is a dev set, no duplicate texts in a batch."""
    from sentence_transformers.base.sampler import BatchSamplers

    return args_cls(
        output_dir=str(ckpt_dir),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=per_device_batch(config.batch_size),
        learning_rate=config.lr(),
        warmup_steps=config.warmup_ratio,  # a float below 1 is a ratio in transformers 5
        weight_decay=config.weight_decay,
        seed=config.seed,
        data_seed=config.seed,
        bf16=use_bf16(config),
        use_cpu=config.device == "cpu",
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        eval_strategy="steps" if has_dev else "no",
        eval_steps=config.eval_steps,
        save_strategy="steps",
        save_steps=config.eval_steps,
        save_total_limit=config.save_total_limit,
        load_best_model_at_end=has_dev,
        metric_for_best_model=metric_for_best if has_dev else None,
        greater_is_better=True,
        logging_steps=config.logging_steps,
        logging_first_step=True,
        report_to="none",
        disable_tqdm=not show_progress,
        dataloader_num_workers=0,
        **(extra_args or {}),
    )


def _callbacks(config: TrainConfigBase, writer: Any) -> list:
    """The time estimate everywhere; TensorBoard scalars and gradient statistics where `writer` is."""
    from transformers.integrations import TensorBoardCallback

    from korag.training.callbacks import GradientStatsCallback, TimeEstimateCallback

    callbacks: list = [TimeEstimateCallback()]
    if writer is not None:
        callbacks += [
            TensorBoardCallback(tb_writer=writer),
            GradientStatsCallback(
                writer,
                histogram_patterns=config.histogram_layers,
                every=config.logging_steps,
                histogram_every=config.histogram_steps,
            ),
        ]
    return callbacks


def run_trainer(
    *,
    trainer_cls: type,
    args_cls: type,
    model,
    loss,
    columns: dict[str, list[str]],
    evaluator,
    metric_for_best: str | None,
    config: TrainConfigBase,
    output: Path,
    resume: bool,
    show_progress: bool,
    extra_args: dict[str, Any] | None = None,
    extra_callbacks: list | None = None,
) -> Trained:
    """Train with checkpoints, TensorBoard and resumption; then the final dev metrics (computed by
    the main process; the others return none). `config.batch_size` is the global batch."""
    from datasets import Dataset
    from torch.utils.tensorboard import SummaryWriter
    from transformers.trainer_utils import get_last_checkpoint

    has_dev = evaluator is not None
    ckpt_dir = output / "checkpoints"
    args = _training_args(args_cls, config, ckpt_dir, has_dev, metric_for_best, show_progress, extra_args)
    main = is_main_process()
    # one TensorBoard writer, on the main process: gradients are already averaged when the
    # statistics are taken, so the other processes would write the same figures again
    writer = SummaryWriter(str(output / "tensorboard")) if main else None
    callbacks = _callbacks(config, writer)
    trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=Dataset.from_dict(columns),
        loss=loss,
        evaluator=evaluator,
        callbacks=[*callbacks, *(extra_callbacks or [])],
    )

    def find_and_check() -> str | None:
        found = get_last_checkpoint(str(ckpt_dir)) if resume and ckpt_dir.is_dir() else None
        check_resumable(output, config, found)
        return found

    last = decide_on_main(find_and_check)
    t0 = time.perf_counter()
    train_output = trainer.train(resume_from_checkpoint=last)
    seconds = time.perf_counter() - t0
    metrics: dict[str, float] = {}
    if evaluator is not None and main:
        final = evaluator(model)
        metrics = {k.removeprefix("dev_"): float(v) for k, v in final.items()}
        for k, v in metrics.items():
            writer.add_scalar(f"final/{k}", v, trainer.state.global_step)  # type: ignore[union-attr]
    if writer is not None:
        writer.close()
    samples = float(train_output.metrics.get("train_samples_per_second", 0.0))
    return Trained(trainer, seconds, samples, metrics, last)


def save_model(model, directory: Path, save: Callable[[Any, str], None] | None = None) -> Path:
    """Write a model directory atomically (the main process only; the others trained the same
    weights)."""
    if not is_main_process():
        return directory
    with atomic.atomic_directory(directory, overwrite=True) as tmp:
        (save or (lambda m, p: m.save(p)))(model, str(tmp))
    return directory


def finish(
    trained: Trained,
    config: TrainConfigBase,
    data: PreparedPairs,
    output: Path,
    model_dir: Path,
    adapter_dir: Path | None,
    extra: dict[str, Any] | None = None,
) -> TrainResult:
    """The run's result, recorded in ``training.json``; checkpoints dropped unless asked to keep them."""
    import torch

    state = trained.trainer.state
    result = TrainResult(
        output=output,
        model_dir=model_dir,
        adapter_dir=adapter_dir,
        train_pairs=len(data.pairs),
        dev_queries=len(data.dev.queries),
        metrics=trained.metrics,
        train_seconds=trained.seconds,
        pairs_per_second=trained.pairs_per_second,
        global_step=state.global_step,
        resumed_from=Path(trained.resumed_from).name if trained.resumed_from else None,
        best_checkpoint=Path(state.best_model_checkpoint).name if state.best_model_checkpoint else None,
        processes=world_size(),
        extra=extra or {},
    )
    if not is_main_process():
        return result
    info = {**asdict(result), "config": config.model_dump(), "korag_version": __version__, "torch": torch.__version__}
    atomic.write_json(result.output / "training.json", json.loads(json.dumps(info, default=str)))
    if not config.keep_checkpoints:
        # optimizer state makes these ~3× the model's size; a finished run no longer needs them
        shutil.rmtree(result.output / "checkpoints", ignore_errors=True)
    return result
