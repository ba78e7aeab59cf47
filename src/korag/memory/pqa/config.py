"""The settings of parametric QA: the memory's shape, the selector, and the write and read
phases. Recipes (``flow: pqa``) embed `WriteConfig` and `ReadConfig` as they are, and
``korag train pqa write|read`` takes them from ``--config``/``--set`` and a few flags."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from korag.memory.config import LoopSettings
from korag.models.lora import OptionalLora

SelectorKind = Literal["cosine", "router", "attention"]


class SelectorConfig(BaseModel):
    """Which selector, and its shape."""

    model_config = ConfigDict(extra="forbid")

    kind: SelectorKind = "cosine"
    temperature: float = Field(0.1, gt=0, description="τ of the cosine scores; initial temperature of the router")
    heads: int = Field(4, gt=0, description="attention heads")

    @model_validator(mode="before")
    @classmethod
    def _kind_alone(cls, data: Any) -> Any:
        """``selector: router`` is short for ``selector: {kind: router}``."""
        return {"kind": data} if isinstance(data, str) else data


class PQAConfig(BaseModel):
    """Shapes of the memory and its projection."""

    model_config = ConfigDict(extra="forbid")

    m_tokens: int = Field(4, gt=0, description="soft tokens (memory vectors) per document")
    z_dim: int = Field(128, gt=0, description="width of each memory vector")
    projection: Literal["gelu", "gate"] = Field(
        "gelu", description="z → 2z → hidden MLP; 'gate' scales its output by a learned scalar"
    )
    layer_norm: bool = Field(False, description="LayerNorm on the projected tokens (rescaled to the LM's embeddings)")
    memory: Literal["learned", "encoder"] = Field(
        "learned", description="'learned' z per document, or 'encoder': the dense embedding (xRAG)"
    )
    z_init_std: float = Field(0.02, gt=0)
    max_doc_tokens: int = Field(256, gt=0, description="document tokens written into (and regenerated from) z")
    max_answer_tokens: int = Field(32, gt=0)


class WriteConfig(LoopSettings):
    """Settings of the write phase."""

    base: str = Field("gemma3-270m", description="base causal LM: a directory, a .gguf file or 'gemma3-270m'")
    pqa: PQAConfig = PQAConfig()
    encoder: str | None = Field(None, description="dense encoder (needed for memory='encoder', kept for reading)")
    max_docs: int | None = Field(None, gt=0, description="write the first N documents only (and ask about them)")
    lr_z: float = Field(1e-2, gt=0)
    lr_projection: float = Field(1e-3, ge=0, description="0 keeps the projection at its initialisation")
    token_dropout: float = Field(0.0, ge=0, lt=1)
    with_title: bool = True
    fit_fast_init: bool = True
    device: str = "auto"
    epochs: float = Field(30.0, gt=0)
    batch_size: int = Field(8, gt=0)
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    save_steps: int = Field(200, gt=0)


class ReadConfig(LoopSettings):
    """Settings of the read phase."""

    init_from: str | None = Field(None, description="the written PQA directory (a write phase's model/)")
    encoder: str | None = Field(None, description="dense query encoder (default: the one the write phase kept)")
    selector: SelectorConfig = SelectorConfig()
    top_k: int = Field(1, gt=0)
    retrieval_weight: float = Field(0.1, ge=0, description="α of L_qa + α·L_retrieval")
    qa_weight: float = Field(1.0, ge=0, description="0 trains the selector from L_retrieval alone (no LM pass)")
    train_with: Literal["selected", "gold"] = "selected"
    hops: Literal["single", "iterative"] = "single"
    intermediate: Literal["answer", "document"] = Field(
        "answer",
        description="iterative hops: re-select with the question + the LM's intermediate answer (trained on the "
        "bridge: the second document's title) or + the first document's text (at inference: regenerated from its z)",
    )
    lora: OptionalLora = Field(None, description="a LoRA adapter on the LM (None: the LM stays frozen)")
    lr_lm: float = Field(1e-4, ge=0)
    lr_z: float = Field(0.0, ge=0, description="0 keeps the written memories fixed")
    lr_projection: float = Field(1e-4, ge=0)
    lr_selector: float = Field(1e-3, gt=0)
    selector_warmup_steps: int = Field(0, ge=0, description="steps of L_retrieval alone before the LM phase")
    lr_selector_warmup: float = Field(1e-2, gt=0)
    device: str = "auto"
    epochs: float = Field(10.0, gt=0)
    batch_size: int = Field(8, gt=0)
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    save_steps: int = Field(200, gt=0)
