"""The settings of the retriever trainers (dense, sparse, reranker): declared once here, without importing
a model library, so recipes, the CLI's help and ``--show-config`` read them in milliseconds."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from korag.models.lora import OptionalLora


class TrainConfigBase(BaseModel):
    """Settings every retriever trainer takes."""

    model_config = ConfigDict(extra="forbid")

    base: str = Field(description="the model to start from: a directory (or a hub id when online)")
    lora: OptionalLora = Field(None, description="train a LoRA adapter (merged at the end) instead of every weight")
    epochs: float = Field(1.0, gt=0)
    max_steps: int = -1
    batch_size: int = Field(32, gt=1)
    learning_rate: float | None = Field(None, gt=0, description="default depends on the trainer and LoRA")
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = 0.01
    max_seq_length: int = Field(256, gt=8)
    with_title: bool = True
    hard_negatives: int = Field(0, ge=0, description="mined hard negatives per query")
    negatives_from: Literal["bm25", "model"] = Field("bm25", description="mine with BM25 or the base model itself")
    negative_ranks: tuple[int, int] = Field((2, 30), description="rank window [start, end) of mined negatives")
    eval_fraction: float = Field(0.1, ge=0, lt=1)
    eval_max_docs: int = Field(1000, gt=0)
    eval_steps: int = Field(50, gt=0)
    save_total_limit: int = Field(2, gt=0)
    keep_checkpoints: bool = Field(True, description="keep checkpoints/ after a successful run (to continue later)")
    logging_steps: int = Field(10, gt=0)
    histogram_steps: int = Field(50, gt=0, description="gradient histograms every N steps")
    histogram_layers: list[str] = Field(default_factory=lambda: [r"encoder\.layer\.(0|5|11)\.attention\.self\.query"])
    seed: int = 42
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    dropout: float | None = Field(0.0, ge=0, lt=1, description="override every dropout of the model (None keeps it)")
    device: str = "cpu"

    def lr(self) -> float:
        """The learning rate actually used."""
        return self.learning_rate or (1e-4 if self.lora else 2e-5)


class DenseTrainConfig(TrainConfigBase):
    """Settings of `train_dense` (and of `korag train dense`)."""

    loss: Literal["mnrl", "cached-mnrl"] = "mnrl"
    temperature: float = Field(0.01, gt=0, description="InfoNCE temperature; E5 was trained at 0.01")
    mini_batch_size: int = Field(8, gt=0, description="GradCache mini-batch for cached-mnrl")
    query_prefix: str | None = None
    passage_prefix: str | None = None


class SparseTrainConfig(TrainConfigBase):
    """Settings of `train_sparse` (and of `korag train sparse`)."""

    mode: Literal["doc-only", "bi-encoder"] = "doc-only"
    expansion: bool = Field(True, description="SPLADE expansion head; False weights the input's own tokens")
    head_vocab: Literal["corpus", "full"] = Field(
        "corpus", description="expansion output vocabulary: pieces seen in corpus and queries, or all"
    )
    mlm_warmup_steps: int = Field(200, ge=0, description="masked-LM warm-up of the expansion head (0: none)")
    mlm_learning_rate: float = Field(2e-4, gt=0)
    mlm_batch_size: int = Field(8, gt=0)
    mlm_max_seq_length: int = Field(128, gt=8, description="warm-up windows (short: the head learns per token)")
    head_learning_rate: float = Field(1e-3, gt=0, description="learning rate of the sparse head")
    query_learning_rate: float = Field(1e-3, gt=0, description="doc-only: learning rate of the query weights")
    document_regularizer: float | None = Field(None, ge=0, description="FLOPS λ_d (default 3e-4 doc-only, 1e-4 bi)")
    query_regularizer: float | None = Field(None, ge=0, description="FLOPS λ_q, bi-encoder (default 1e-4)")
    regularizer_warmup: float = Field(1 / 3, gt=0, le=1, description="share of steps over which λ grows (quadratic)")
    document_l0_threshold: int | None = Field(None, ge=0, description="FLOPS only on vectors with more active dims")
    scale: float = Field(1.0, gt=0, description="InfoNCE scale on sparse dot products")
    distill: Literal["none", "margin-mse"] = "none"
    teacher: str = Field(
        "bm25",
        description="margin-mse teacher: 'bm25', a dense or cross-encoder directory, or an ensemble joined by '+' "
        "(bm25+DENSE_DIR[+RERANKER_DIR])",
    )

    def lr(self) -> float:
        """Learning rate of the transformer."""
        return self.learning_rate or (1e-4 if self.lora else 2e-5)

    def regularizers(self) -> tuple[float, float | None]:
        """(λ_d, λ_q) actually used."""
        if self.mode == "doc-only":
            return (3e-4 if self.document_regularizer is None else self.document_regularizer), None
        d = 1e-4 if self.document_regularizer is None else self.document_regularizer
        return d, (1e-4 if self.query_regularizer is None else self.query_regularizer)


class RerankerTrainConfig(TrainConfigBase):
    """Settings of `train_reranker` (and of `korag train reranker`): a cross-encoder scoring
    (query, passage) pairs, trained on mined hard negatives and checked by reranking BM25's
    candidates for held-out queries."""

    batch_size: int = Field(
        16, gt=1, description="listwise: queries per step (each scores 1 + hard + in-batch passages); bce: pairs"
    )
    loss: Literal["listwise", "bce"] = Field(
        "listwise",
        description="listwise: softmax over positive, hard and in-batch negatives; bce: each pair on its own",
    )
    hard_negatives: int = Field(4, ge=0, description="mined hard negatives per query")
    negatives_from: Literal["bm25", "model", "both"] = Field(
        "bm25", description="mine with BM25, the base model as a bi-encoder, or both (half each)"
    )
    in_batch_negatives: int = Field(4, ge=0, description="listwise: other queries' passages scored per query")
    scale: float = Field(10.0, gt=0, description="listwise: sigmoid(logit) × scale enters the softmax")
    pos_weight: float | None = Field(None, gt=0, description="bce: weight of positives (None: negatives per positive)")
    windows: Literal["best", "first"] = Field(
        "best",
        description="a passage longer than max_seq_length: best (the window sharing most with the query) | first",
    )
    rerank_depth: int = Field(30, gt=0, description="held-out evaluation reranks BM25's top-N for each dev query")
    eval_max_queries: int = Field(200, gt=0, description="held-out queries reranked at each evaluation (a sample)")
    select_by: Literal["mrr@10", "ndcg@10"] = Field("mrr@10", description="dev metric choosing the best checkpoint")
    histogram_layers: list[str] = Field(
        default_factory=lambda: [r"encoder\.layer\.(0|5|11)\.attention\.self\.query", r"classifier"]
    )
