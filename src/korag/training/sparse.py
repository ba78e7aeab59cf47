"""Training learned sparse retrievers (SPLADE; OpenSearch neural-sparse compatible).

Doc-only (inference-free) or bi-encoder models built by `korag.models.sparse`, trained with
sentence-transformers' `SparseEncoderTrainer` through the same machinery as dense training
(`korag.training.fit`: held-out split, mined negatives, TensorBoard, checkpoints and resume):

* loss: `SpladeLoss` = InfoNCE over in-batch and hard negatives
  (`SparseMultipleNegativesRankingLoss`) + FLOPS regularisation of documents (and of queries
  for bi-encoders), λ warmed up quadratically over the first third of training, with an optional
  L0 threshold below which a vector is not penalised; or MarginMSE distillation from a teacher's
  scores (BM25 or a dense model) on (query, positive, negative) triplets;
* doc-only query weights start from IDF and train with their own, higher learning rate;
* the expansion head is warmed up with masked-LM on the corpus first (`mlm_warmup`).

Output directory: ``model/`` (what ``--model`` takes), ``adapter/`` with LoRA, ``checkpoints/``,
``tensorboard/``, ``training.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from korag.data.schema import QASet, RetrievalSet
from korag.data.training import TrainingPair
from korag.errors import ConfigError
from korag.training.config import SparseTrainConfig
from korag.training.distributed import gather_negatives
from korag.training.fit import (
    TrainResult,
    finish,
    ir_evaluator,
    merge_lora_,
    pair_columns,
    prepare_pairs,
    run_trainer,
    save_model,
    set_dropout_,
    use_bf16,
)
from korag.util.log import without_message


def check_config(config: SparseTrainConfig) -> None:
    """Reject settings that cannot work before any model is loaded."""
    if config.distill == "margin-mse" and config.hard_negatives < 1:
        raise ConfigError("margin-mse distillation needs at least one hard negative per query (--hard-negatives)")
    if config.query_regularizer is not None and config.mode == "doc-only":
        raise ConfigError("doc-only queries are not encoded by the transformer: no query regulariser applies")


def teacher_margins(pairs: list[TrainingPair], teacher: str, rs: RetrievalSet, max_seq_length: int) -> np.ndarray:
    """Teacher score margins: score(q, positive) − score(q, negative_j), one column per negative.

    `teacher` is ``bm25``, a dense model directory, a cross-encoder directory (``korag train
    reranker``'s output), or an ensemble of these joined by ``+`` (``bm25+e5-small+rr``), as
    OpenSearch's v2/v3 sparse models were distilled from several teachers. An ensemble's margin
    is the mean of its members' margins, each divided by its own standard deviation over all
    pairs (BM25 points, cosine and logits live on different scales), then multiplied by the first
    member's deviation so the student's targets keep the scale of a single teacher."""
    members = [t for t in teacher.split("+") if t]
    if not members:
        raise ConfigError("the margin-mse teacher is empty: bm25, a model directory, or several joined by '+'")
    per = [_one_teacher(pairs, t, rs, max_seq_length) for t in members]
    if len(per) == 1:
        return per[0]
    spread = [float(m.std()) or 1.0 for m in per]
    mixed = np.mean([m / sd for m, sd in zip(per, spread, strict=True)], axis=0) * spread[0]
    return mixed.astype(np.float32)


def _one_teacher(pairs: list[TrainingPair], teacher: str, rs: RetrievalSet, max_seq_length: int) -> np.ndarray:
    if teacher == "bm25":
        from korag.retrieval.bm25 import BM25Retriever

        bm25 = BM25Retriever()
        bm25.index(rs.corpus)
        queries = [p.query for p in pairs]
        docs = [[p.positive_id, *p.negative_ids] for p in pairs]
        scores = bm25.score_pairs(queries, docs)
    else:
        from korag.models.encoder import resolve_model_path
        from korag.retrieval.rerank import is_trained_reranker

        path = resolve_model_path(teacher)
        if Path(path).is_dir() and is_trained_reranker(path):
            from korag.retrieval.rerank import CrossEncoderReranker

            ce = CrossEncoderReranker(path, max_length=max_seq_length)
            cols = [ce.score_pairs([(p.query, p.positive) for p in pairs])]
            for j in range(len(pairs[0].negatives)):
                cols.append(ce.score_pairs([(p.query, p.negatives[j]) for p in pairs]))
            scores = np.stack(cols, axis=1)
        else:
            from korag.retrieval.dense import DenseRetriever

            dense = DenseRetriever(teacher, max_seq_length=max_seq_length)
            q = dense.encode_queries([p.query for p in pairs])
            cols = [dense.encode_documents([p.positive for p in pairs])]
            for j in range(len(pairs[0].negatives)):
                cols.append(dense.encode_documents([p.negatives[j] for p in pairs]))
            scores = np.stack([(q * c).sum(1) for c in cols], axis=1)
    return (scores[:, :1] - scores[:, 1:]).astype(np.float32)


def train_sparse(
    train: RetrievalSet | QASet,
    config: SparseTrainConfig,
    output: str | Path,
    *,
    dev: RetrievalSet | QASet | None = None,
    resume: bool = True,
    show_progress: bool = True,
    extra_pairs: Sequence[TrainingPair] = (),
) -> TrainResult:
    """Train a sparse encoder on `train` (a dev split is held out unless `dev` is given): build
    the model (IDF, output vocabulary, calibrated head), warm the expansion head up with masked
    LM, then train with the contrastive or distillation loss under FLOPS regularisation."""
    from transformers import set_seed

    from korag.models.sparse import save_sparse_encoder, transformer_model

    check_config(config)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    set_seed(config.seed)
    data = prepare_pairs(train, config, dev, show_progress=show_progress, extra_pairs=extra_pairs)
    texts = list(data.train.corpus.contents(config.with_title))
    model, output_ids, shift = _build_model(config, texts, [p.query for p in data.pairs], show_progress)
    hf = transformer_model(model)
    checkpoints = out / "checkpoints"
    resuming = resume and checkpoints.is_dir() and any(checkpoints.glob("checkpoint-*"))
    warmup = None if resuming else _warm_up(model, texts, config, out, show_progress)
    if config.lora:
        from korag.models.lora import add_lora

        add_lora(hf, None, config.lora, task_type=None)
        if config.dropout is not None:  # the override covers the adapter's dropout too
            set_dropout_(model, config.dropout)
    loss, columns = _loss(model, data, config)
    trained = _fit(model, loss, columns, data, config, out, resume=resume, show_progress=show_progress)
    adapter_dir = None
    if config.lora:
        adapter_dir = save_model(hf, out / "adapter", lambda m, p: m.save_pretrained(p))
        merge_lora_(hf)
    lambda_d, lambda_q = config.regularizers()
    extra = {
        "output_vocabulary": len(output_ids) if output_ids is not None else None,
        "regularizers": {"document": lambda_d, "query": lambda_q},
        "mlm_warmup": asdict(warmup) if warmup else None,
        "expansion_bias_shift": shift,
    }
    model_dir = save_model(model, out / "model", save_sparse_encoder)
    return finish(trained, config, data, out, model_dir, adapter_dir, extra)


def _fit(
    model: Any,
    loss: Any,
    columns: dict[str, list[Any]],
    data: Any,
    config: SparseTrainConfig,
    out: Path,
    *,
    resume: bool,
    show_progress: bool,
) -> Any:
    """Run sentence-transformers' sparse trainer: per-module learning rates, doc-only routing of
    the query column, dev MRR@10 for the best checkpoint, the FLOPS weight warmed up quadratically."""
    from sentence_transformers.sparse_encoder import SparseEncoderTrainer, SparseEncoderTrainingArguments
    from sentence_transformers.sparse_encoder.callbacks.splade_callbacks import (
        SpladeRegularizerWeightSchedulerCallback,
    )
    from sentence_transformers.sparse_encoder.evaluation import SparseInformationRetrievalEvaluator

    extra_args: dict = {"learning_rate_mapping": _lr_mapping(model, config)}
    if config.mode == "doc-only":
        extra_args["router_mapping"] = {c: ("query" if c == "anchor" else "document") for c in columns if c != "label"}
    # torch has no bfloat16 sparse matmul, which the sparse evaluator scores with
    evaluator = (
        ir_evaluator(SparseInformationRetrievalEvaluator, data.dev, config, bf16=False, show_progress=show_progress)
        if len(data.dev.queries)
        else None
    )
    return run_trainer(
        trainer_cls=SparseEncoderTrainer,
        args_cls=SparseEncoderTrainingArguments,
        model=model,
        loss=loss,
        columns=columns,
        evaluator=evaluator,
        metric_for_best="eval_dev_dot_mrr@10",
        config=config,
        output=out,
        resume=resume,
        show_progress=show_progress,
        extra_args=extra_args,
        extra_callbacks=[
            SpladeRegularizerWeightSchedulerCallback(
                loss, scheduler_type="quadratic", warmup_ratio=config.regularizer_warmup
            )
        ],
    )


def _build_model(config: SparseTrainConfig, texts: list[str], queries: list[str], show_progress: bool):
    """(model, output vocabulary ids or None, expansion bias shift): a sparse encoder over
    `config.base` with IDF-initialised query weights and, for the expansion head, the pieces seen
    in the corpus and the training queries as its output vocabulary."""
    from transformers import AutoTokenizer

    from korag.models.encoder import resolve_model_path
    from korag.models.sparse import build_sparse_encoder, calibrate_expansion_
    from korag.text.idf import corpus_idf, token_document_frequencies

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(config.base))
    vocab = len(tokenizer.get_vocab())
    idf, df = corpus_idf(tokenizer, texts, vocab_size=vocab, show_progress=show_progress)
    output_ids = None
    if config.expansion and config.head_vocab == "corpus":
        qdf, _ = token_document_frequencies(tokenizer, queries, vocab_size=vocab)
        output_ids = np.nonzero((df + qdf) > 0)[0]
    model = build_sparse_encoder(
        config.base,
        mode=config.mode,
        expansion=config.expansion,
        idf=idf,
        output_ids=output_ids,
        max_seq_length=config.max_seq_length,
        device=config.device,
    )
    if config.dropout is not None:
        set_dropout_(model, config.dropout)
    shift = calibrate_expansion_(model, texts[:16], max_length=config.max_seq_length) if config.expansion else 0.0
    return model, output_ids, shift


def _warm_up(model, texts: list[str], config: SparseTrainConfig, out: Path, show_progress: bool):
    """Masked-LM warm-up of the expansion head (None when there is none to warm up)."""
    if not (config.expansion and config.mlm_warmup_steps):
        return None
    from korag.training.mlm_warmup import mlm_warmup

    return mlm_warmup(
        model,
        texts,
        steps=config.mlm_warmup_steps,
        output=out,
        batch_size=config.mlm_batch_size,
        learning_rate=config.mlm_learning_rate,
        max_seq_length=config.mlm_max_seq_length,
        seed=config.seed,
        bf16=use_bf16(config),
        show_progress=show_progress,
    )


def _loss(model, data, config: SparseTrainConfig):
    """(SPLADE loss around InfoNCE or MarginMSE, the trainer's columns)."""
    from sentence_transformers.sparse_encoder import losses

    columns = pair_columns(data.pairs, config.hard_negatives)
    lambda_d, lambda_q = config.regularizers()
    if config.distill == "margin-mse":
        margins = teacher_margins(data.pairs, config.teacher, data.train, config.max_seq_length)
        columns = {k: columns[k] for k in ("anchor", "positive", "negative_1")}
        columns["label"] = margins[:, 0].tolist()
        base_loss = losses.SparseMarginMSELoss(model)
    else:
        # on several processes every anchor still meets the whole global batch's documents
        base_loss = losses.SparseMultipleNegativesRankingLoss(
            model, scale=config.scale, gather_across_devices=gather_negatives()
        )
    # doc-only queries have no regulariser by design; sentence-transformers warns about exactly
    # that on the root logger at every construction
    with without_message("query_regularizer_weight is None"):
        loss = losses.SpladeLoss(
            model,
            loss=base_loss,
            document_regularizer_weight=lambda_d,
            query_regularizer_weight=lambda_q,
            document_regularizer_threshold=config.document_l0_threshold,
        )
    return loss, columns


def _lr_mapping(model, config: SparseTrainConfig) -> dict[str, float]:
    """Parameter-name patterns → learning rate for the head and the doc-only query weights
    (both start far from useful values, unlike the pre-trained encoder)."""
    import re

    from sentence_transformers.sparse_encoder.modules import SparseStaticEmbedding

    from korag.models.sparse_head import SpladeHead

    mapping: dict[str, float] = {}
    for name, module in model.named_modules():
        if isinstance(module, SpladeHead):
            mapping[rf"(^|\.){re.escape(name)}\."] = config.head_learning_rate
        elif isinstance(module, SparseStaticEmbedding):
            mapping[rf"(^|\.){re.escape(name)}\."] = config.query_learning_rate
    return mapping
