"""Training a cross-encoder reranker on (query, positive, hard negatives) with sentence-transformers.

The model is a sentence-transformers `CrossEncoder` with one output, initialised from any
BERT-like directory — a bi-encoder such as the offline multilingual-e5-small keeps its encoder and
gets a new scoring head (BERT's pooler + a linear classifier). Everything around the loss is the
machinery dense and sparse training share (`korag.training.fit`): held-out split, hard-negative
mining, checkpoints and resumption, TensorBoard with gradient statistics, best-checkpoint
selection, `training.json`.

* loss ``listwise`` (default): sentence-transformers' cross-encoder
  `MultipleNegativesRankingLoss` — per query a softmax over its positive, its mined hard negatives
  and `in_batch_negatives` passages of other queries in the batch (scores are
  ``sigmoid(logit) × scale``); a no-duplicates batch sampler keeps a query's own passage out of
  another's negatives. ``bce``: `BinaryCrossEntropyLoss` on (query, passage, 0/1) rows, positives
  weighted by `pos_weight` (default: negatives per positive, which balances the classes).
* hard negatives from BM25, from the base model used as a bi-encoder, or from both (interleaved
  rank by rank, so each contributes half).
* LoRA through peft (task type SEQ_CLS) or full fine-tuning. With LoRA the head is not adapted
  but trained whole (peft's `modules_to_save`): it starts random, and a frozen random head would
  leave the adapters nothing to learn against. At the end the adapters are merged and the head
  unwrapped, so ``model/`` is a plain cross-encoder.
* held-out evaluation: `CrossEncoderRerankingEvaluator` on BM25's top-`rerank_depth` candidates
  of (a sample of) the dev queries, realistic (a positive BM25 missed stays missed); it reports
  BM25's own MRR@10 / NDCG@10 beside the reranked ones (``base_*``), and the best checkpoint is
  the one with the highest `select_by`.

A zero BERT pooler — what `korag models offline e5-small` writes, as E5 never used it — would
make every score equal and stop every gradient at the head, so it is re-initialised like a new
layer.

CPU cost, as in dense.py: dropout off (a cross-encoder fine-tuned on thousands of pairs does not
need it, and it forces PyTorch's slow attention path) and bfloat16 autocast on CPUs that compute
it natively. Measured on 2 cores (AMD EPYC with AVX512-BF16), listwise loss, 4 hard + 4 in-batch
negatives, so 9 pairs scored per query:

* tiny test encoder (2 × 32), batch 16 × 128 tokens: ~0.1 s per step;
* multilingual-e5-small (12 × 384), batch 16 queries (144 pairs) × 256 tokens, full fine-tuning
  in bf16: ~17 s per step (LoRA r=16: ~15 s) — a cross-encoder step costs what a bi-encoder
  step of as many passages does, so a listwise batch is ~9× a dense step of as many queries.

Output directory::

    model/          the trained cross-encoder (LoRA merged) — what ``--rerank`` takes
    adapter/        the LoRA adapter and the trained head alone (loads base + adapter)
    checkpoints/    trainer checkpoints (resume point)
    tensorboard/    loss, learning rate, epoch, eval metrics, gradient norms and histograms
    training.json   settings, data sizes, metrics (BM25's ``base_*`` beside the reranked), timings
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

from korag.data.schema import QASet, RetrievalSet
from korag.data.training import training_pairs
from korag.errors import ConfigError, DataError
from korag.training.config import RerankerTrainConfig
from korag.training.fit import (
    PreparedPairs,
    TrainResult,
    finish,
    merge_lora_,
    pair_columns,
    prepare_pairs,
    run_trainer,
    save_model,
    set_dropout_,
)

__all__ = ["RerankerTrainConfig", "train_reranker"]

log = logging.getLogger(__name__)


def train_reranker(
    train: RetrievalSet | QASet,
    config: RerankerTrainConfig,
    output: str | Path,
    *,
    dev: RetrievalSet | QASet | None = None,
    resume: bool = True,
    show_progress: bool = True,
) -> TrainResult:
    """Fine-tune a cross-encoder from `config.base` on `train` (a dev split is held out unless
    `dev` is given); the reranker is ``<output>/model``."""
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from transformers import set_seed

    from korag.retrieval.rerank import PassageWindows, load_cross_encoder, quiet_new_head

    check_config(config)
    out = Path(output)
    set_seed(config.seed)
    data = _prepare(train, config, dev, show_progress)

    model = load_cross_encoder(config.base, device=config.device, max_length=config.max_seq_length, new_head=True)
    hf = model[0].auto_model
    _revive_pooler_(hf)
    _score_in_fp32(model)
    if config.lora:
        _add_lora(hf, config)
    if config.dropout is not None:  # after the adapter: the override covers its dropout too
        set_dropout_(model, config.dropout)
    window = PassageWindows(model.tokenizer, model.max_seq_length) if config.windows == "best" else None
    loss, columns = _loss(model, data, config, window)

    evaluator = _evaluator(data.dev, config, show_progress, window) if len(data.dev.judged_queries()) else None
    with quiet_new_head(config.base):  # resuming or loading the best LoRA checkpoint reloads the base
        trained = run_trainer(
            trainer_cls=CrossEncoderTrainer,
            args_cls=CrossEncoderTrainingArguments,
            model=model,
            loss=loss,
            columns=columns,
            evaluator=evaluator,
            metric_for_best=f"eval_dev_{config.select_by}",
            config=config,
            output=out,
            resume=resume,
            show_progress=show_progress,
        )

    adapter_dir = None
    if config.lora:
        adapter_dir = save_model(model, out / "adapter")
        unwrap_modules_to_save_(hf)
        merge_lora_(hf)
    model_dir = save_model(model, out / "model")
    extra = {"pairs_per_query": _pairs_per_query(config), "max_seq_length": model.max_seq_length}
    return finish(trained, config, data, out, model_dir, adapter_dir, extra)


def check_config(config: RerankerTrainConfig) -> None:
    """Reject settings that cannot work before any model is loaded."""
    if config.loss == "bce" and config.hard_negatives < 1:
        raise ConfigError("the bce loss needs negatives: set hard_negatives to at least 1")
    if config.loss == "listwise" and config.hard_negatives + config.in_batch_negatives < 1:
        raise ConfigError("the listwise loss needs negatives: hard_negatives or in_batch_negatives of at least 1")
    if config.pos_weight is not None and config.loss != "bce":
        raise ConfigError("pos_weight applies to the bce loss only")
    if config.hard_negatives and config.negatives_from != "bm25":
        from korag.models.encoder import resolve_model_path
        from korag.retrieval.rerank import is_trained_reranker

        base = resolve_model_path(config.base)
        if Path(base).is_dir() and is_trained_reranker(base):
            raise ConfigError(
                f"{config.base} is a cross-encoder, which cannot mine negatives as a bi-encoder: "
                "use negatives_from=bm25"
            )


def _pairs_per_query(config: RerankerTrainConfig) -> int:
    """Query-passage pairs the model scores per training example."""
    if config.loss == "bce":
        return 1
    return 1 + config.hard_negatives + min(config.in_batch_negatives, config.batch_size - 1)


def _prepare(
    train: RetrievalSet | QASet, config: RerankerTrainConfig, dev: RetrievalSet | QASet | None, show_progress: bool
) -> PreparedPairs:
    """Held-out split and pairs with hard negatives; ``both`` mines with BM25 and the base model
    together (`mine_negatives` interleaves their candidates rank by rank)."""
    if config.negatives_from != "both" or not config.hard_negatives:
        return prepare_pairs(train, config, dev, show_progress=show_progress)
    from korag.retrieval.bm25 import BM25Retriever
    from korag.retrieval.dense import DenseRetriever
    from korag.retrieval.negatives import mine_negatives

    plain = prepare_pairs(train, config.model_copy(update={"hard_negatives": 0}), dev, show_progress=show_progress)
    rs = plain.train
    miners: list[Any] = [
        BM25Retriever(),
        DenseRetriever(config.base, max_seq_length=config.max_seq_length, device=config.device),
    ]
    for m in miners:
        m.index(rs.corpus, show_progress=show_progress)
    answers = {e.id: e.answers for e in train.examples} if isinstance(train, QASet) else None
    negatives, report = mine_negatives(
        rs, miners, num=config.hard_negatives, rank_range=config.negative_ranks, answers=answers
    )
    log.info("hard negatives from BM25 and the base model: %s", report)
    pairs = [
        p
        for p in training_pairs(rs, with_title=config.with_title, negatives=negatives)
        if len(p.negatives) == config.hard_negatives
    ]
    if not pairs:
        raise DataError(rs.name or None, "no query kept the requested number of hard negatives")
    return PreparedPairs(rs, plain.dev, pairs)


def _loss(model, data: PreparedPairs, config: RerankerTrainConfig, window=None) -> tuple[Any, dict[str, list]]:
    """The loss and the dataset columns it reads; each passage as `window` shows it beside its
    query (in-batch negatives then read a window chosen for another query: still a negative)."""
    import torch
    from sentence_transformers.cross_encoder import losses

    see = window or (lambda _q, p: p)
    if config.loss == "listwise":
        loss = losses.MultipleNegativesRankingLoss(model, num_negatives=config.in_batch_negatives, scale=config.scale)
        columns = pair_columns(data.pairs, config.hard_negatives)
        for name in [c for c in columns if c != "anchor"]:
            columns[name] = [see(q, p) for q, p in zip(columns["anchor"], columns[name], strict=True)]
        return loss, columns
    rows: dict[str, list] = {"query": [], "passage": [], "label": []}
    for p in data.pairs:
        for passage, label in ((p.positive, 1.0), *((n, 0.0) for n in p.negatives)):
            rows["query"].append(p.query)
            rows["passage"].append(see(p.query, passage))
            rows["label"].append(label)
    weight = config.pos_weight if config.pos_weight is not None else float(config.hard_negatives)
    return losses.BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(weight)), rows


def _revive_pooler_(hf) -> bool:
    """Re-initialise an all-zero BERT pooler as a new layer (see the module docstring)."""
    import torch

    pooler = getattr(getattr(hf, "base_model", None), "pooler", None)
    dense = getattr(pooler, "dense", None)
    if not isinstance(dense, torch.nn.Linear) or bool(dense.weight.detach().abs().sum() > 0):
        return False
    std = float(getattr(hf.config, "initializer_range", 0.02))
    with torch.no_grad():
        dense.weight.normal_(0.0, std)
        if dense.bias is not None:
            dense.bias.zero_()
    log.info("the base model's pooler is all zeros (never trained): initialised like a new layer")
    return True


def _score_in_fp32(model) -> None:
    """Compute the output layer in float32 under bf16 autocast (recorded with the model, so
    inference does too): bf16 logits have 8 significant bits — 0.03 apart near 5 — which ties
    candidates a reranker should order, and flattens the listwise loss's sigmoid early in training."""
    import torch

    linears = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and m.out_features == 1]
    if linears:
        model.set_keep_in_fp32_modules([linears[-1]])


def head_modules(hf) -> list[str]:
    """Names of the modules that form the scoring head (trained whole under LoRA): BERT's pooler
    and the classifier (or a decoder's ``score``), those the model has."""
    from korag.retrieval.rerank import HEAD_MODULES

    names = {name.rsplit(".", 1)[-1] for name, _ in hf.named_modules()}
    return [n for n in ("pooler", *HEAD_MODULES) if n in names]


def _add_lora(hf, config: RerankerTrainConfig) -> None:
    from peft import LoraConfig

    assert config.lora is not None
    head = head_modules(hf)
    hf.add_adapter(
        LoraConfig(
            r=config.lora.r,
            lora_alpha=config.lora.alpha,
            lora_dropout=config.lora.dropout,
            target_modules=config.lora.targets,
            task_type="SEQ_CLS",
            modules_to_save=head,
        )
    )
    trainable = sum(p.numel() for p in hf.parameters() if p.requires_grad)
    log.info(
        "LoRA r=%d on %s, head trained whole (%s): %s trainable weights",
        config.lora.r,
        config.lora.targets,
        ", ".join(head),
        f"{trainable:,}",
    )


def unwrap_modules_to_save_(hf) -> int:
    """Replace each peft `ModulesToSaveWrapper` by the trained copy it holds, in place (the
    counterpart of `merge_lora_` for modules trained whole). Returns modules unwrapped."""
    from peft.utils import ModulesToSaveWrapper

    done = 0
    for name, module in list(hf.named_modules()):
        if isinstance(module, ModulesToSaveWrapper):
            parent = hf.get_submodule(name.rsplit(".", 1)[0]) if "." in name else hf
            trained = next(iter(module.modules_to_save.values()))
            setattr(parent, name.rsplit(".", 1)[-1], trained)
            done += 1
    return done


def _evaluator(rs: RetrievalSet, config: RerankerTrainConfig, show_progress: bool, window=None):
    """`CrossEncoderRerankingEvaluator` on BM25's top-`rerank_depth` of (at most `eval_max_queries`)
    held-out queries (passages as `window` shows them), under bf16 autocast where the CPU has it."""
    import torch
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator

    from korag.models.device import bf16_autocast, wants_bf16
    from korag.retrieval.bm25 import BM25Retriever

    queries = rs.judged_queries()
    if len(queries) > config.eval_max_queries:
        keep = sorted(random.Random(config.seed).sample(range(len(queries)), config.eval_max_queries))
        queries = queries.subset([queries.ids[i] for i in keep])
    bm25 = BM25Retriever()
    bm25.index(rs.corpus, show_progress=show_progress)
    ranking = bm25.search(queries, k=config.rerank_depth)
    contents = dict(zip(rs.corpus.ids, rs.corpus.contents(config.with_title), strict=True))
    samples = []
    for q, (_, row) in zip(queries, ranking.items(), strict=True):
        if row:  # a query BM25 finds nothing for has nothing to rerank
            see = window or (lambda _q, p: p)
            positives = [see(q.text, contents[d]) for d in rs.qrels.relevant(q.id)]
            documents = [see(q.text, contents[d]) for d, _ in row]
            samples.append({"query": q.text, "positive": positives, "documents": documents})
    if len(samples) < len(queries):
        log.info(
            "held-out evaluation: %d of %d queries have no BM25 candidate", len(queries) - len(samples), len(queries)
        )
    autocast = wants_bf16(config.precision, config.device)
    pairs = sum(len(s["documents"]) for s in samples)

    class _Evaluator(CrossEncoderRerankingEvaluator):
        # evaluation scores every candidate pair; bf16 autocast halves that on CPUs that have it
        def __call__(self, *args, **kwargs):
            log.info(
                "held-out evaluation: reranking BM25's top %d for %d queries (%d pairs)",
                config.rerank_depth,
                len(samples),
                pairs,
            )
            with torch.inference_mode(), bf16_autocast(autocast, config.device):
                return super().__call__(*args, **kwargs)

    return _Evaluator(
        samples,
        at_k=10,
        always_rerank_positives=False,
        name="dev",
        batch_size=32,
        show_progress_bar=show_progress,
        write_csv=False,
    )
