"""Settings every memory model's training loop shares (kept apart from the loop itself so that
recipes and the command line read them without importing PyTorch)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class LoopSettings(BaseModel):
    """How long and in what steps a memory model trains."""

    model_config = ConfigDict(extra="forbid")

    epochs: float = Field(1.0, gt=0)
    max_steps: int = -1
    batch_size: int = Field(4, gt=0, description="records per optimiser step, over all processes together")
    gradient_accumulation_steps: int = Field(
        1, gt=0, description="split each process's share of a batch into this many passes (less memory, same step)"
    )
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    max_grad_norm: float = Field(1.0, gt=0)
    save_steps: int = Field(100, gt=0)
    logging_steps: int = Field(10, gt=0)
    seed: int = 42
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="bf16 autocast: auto uses it where the hardware computes bf16 natively"
    )
