"""How an LLM is chosen, loaded and prompted: one settings model (no PyTorch imported here, so the
CLI can print help and validate flags without it). The CLI derives its flags from these fields
(`korag.cli.common.flag`); `korag.synth.llm.make_generator` takes the model."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from korag.synth.chat import PromptStyle
from korag.util.config import StrictModel

Quantization = Literal["none", "8bit", "4bit", "awq"]
JsonMode = Literal["auto", "off"]


class LLMSettings(StrictModel):
    """Which LLM generates and how it is loaded, prompted and spread over servers."""

    model: str = Field(
        "gemma3-270m",
        description="gemma3-270m (offline), a model directory, a .gguf file, llamacpp:FILE, an http(s):// "
        "OpenAI-compatible URL, several URLs separated by commas, or @FILE listing URLs (one per line)",
    )
    prompt_style: PromptStyle = Field(
        "auto", description="auto (chat when the model has a chat template) | chat | completion (few-shot)"
    )
    thinking: bool | None = Field(
        None, description="let reasoning models think (Qwen3 enable_thinking); unset: the template's default"
    )
    reasoning_effort: Literal["low", "medium", "high"] | None = Field(
        None, description="gpt-oss reasoning effort (low | medium | high); unset: the model's default"
    )
    json_mode: JsonMode = Field(
        "auto",
        description="auto: chat prompts ask for JSON, constrained where the backend can (OpenAI response_format, "
        "llama.cpp grammar), parsed and validated always | off",
    )
    # loading (local transformers models)
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N | mps")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="weights' dtype: auto = bfloat16/float16 on a GPU, float32 on the CPU"
    )
    quantization: Quantization = Field(
        "none", description="none | 8bit | 4bit (bitsandbytes) | awq (a pre-quantised AWQ checkpoint)"
    )
    device_map: Literal["auto"] | None = Field(
        None, description="auto: spread layers over GPUs and offload the rest to CPU memory (accelerate)"
    )
    max_memory: str | None = Field(
        None, description="memory budget per device for --device-map auto, e.g. '0=20GiB,cpu=60GiB'"
    )
    batch_size: int | None = Field(
        None, ge=1, description="prompts per batch (local models); unset: sized by free memory"
    )
    # servers
    concurrency: int = Field(4, ge=1, description="requests in flight per server")
    timeout: float = Field(120.0, gt=0, description="seconds to wait for one server answer")
    max_retries: int = Field(3, ge=0, description="retries of a failed request (on another server when several)")
    model_name: str | None = Field(None, description="the model name an OpenAI-compatible server expects")

    @field_validator("max_memory")
    @classmethod
    def _budget(cls, value: str | None) -> str | None:
        if value is not None:
            from korag.errors import ConfigError
            from korag.synth.quantization import parse_max_memory

            try:
                parse_max_memory(value)
            except ConfigError as exc:  # pydantic reports ValueErrors with the field's path
                raise ValueError(str(exc)) from None
        return value
