"""The settings of CLaRa: the model's shapes and losses, and one training stage."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from korag.memory.config import LoopSettings
from korag.models.lora import LoraSettings


class ClaraConfig(BaseModel):
    """Shapes and losses of a CLaRa model."""

    model_config = ConfigDict(extra="forbid")

    doc_max_length: int = Field(256, gt=0)
    compression_rate: int = Field(32, gt=0)
    top_k: int = Field(5, gt=0)
    lora: LoraSettings = Field(default_factory=LoraSettings, description="the adapters (each of the three)")
    mse_weight: float = Field(0.1, ge=0)
    temperature: float = Field(0.02, gt=0)
    max_question_length: int = Field(64, gt=0)
    max_answer_tokens: int = Field(32, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _flat_lora(cls, data: Any) -> Any:
        """Models saved before LoRA settings had one shape kept them as flat ``lora_*`` fields."""
        if isinstance(data, dict) and any(k.startswith("lora_") for k in data):
            data = dict(data)
            flat = {k.removeprefix("lora_"): data.pop(k) for k in list(data) if k.startswith("lora_")}
            data["lora"] = {"r": 16, "alpha": 32, "dropout": 0.1, **data.get("lora", {}), **flat}
        return data

    @model_validator(mode="after")
    def _divisible(self) -> ClaraConfig:
        if self.doc_max_length % self.compression_rate:
            raise ValueError(
                f"doc_max_length ({self.doc_max_length}) must be a multiple of "
                f"compression_rate ({self.compression_rate})"
            )
        return self

    @property
    def n_mem(self) -> int:
        """Memory tokens per document."""
        return self.doc_max_length // self.compression_rate


class ClaraTrainConfig(LoopSettings):
    """Settings of one CLaRa training stage (and its loop's)."""

    base: str = Field(description="base causal LM: a directory, a .gguf file or 'gemma3-270m'")
    stage: Literal[1, 2, 3] = 1
    init_from: str | None = Field(None, description="the previous stage's CLaRa directory")
    clara: ClaraConfig = ClaraConfig()
    learning_rate: float | None = Field(None, gt=0, description="default 1e-4 (stages 1, 2), 5e-6 (stage 3)")
    device: str = "auto"
    stage3_trains: list[Literal["decoder", "query_reasoner"]] = Field(
        default_factory=lambda: ["decoder", "query_reasoner"],
        description="stage 3: adapters that learn (only the query reasoner isolates retrieval learning)",
    )
    query_init: Literal["encoder", "fresh"] = Field(
        "encoder", description="stage 3: start the query reasoner as a copy of the compressor (ml-clara) or fresh"
    )

    def lr(self) -> float:
        """The learning rate actually used (ml-clara's defaults per stage)."""
        return self.learning_rate or (5e-6 if self.stage == 3 else 1e-4)
