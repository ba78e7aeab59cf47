"""LoRA adapters on a causal LM, for every memory model (CLaRa, parametric QA).

Adapters are injected by peft (through transformers' integration, so several named adapters can
live on one model and be switched), and their parameters are found through peft's own layer
classes — each `BaseTunerLayer` lists its adapter sub-modules by adapter name — never by
matching parameter names: a name test is how a frozen-LM freeze can silently keep LoRA frozen
too, or catch a base weight whose name happens to contain "lora".
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    import torch


class LoraSettings(BaseModel):
    """Rank, scale, dropout and target modules of one LoRA adapter — the one shape of LoRA
    settings in korag (retriever trainers, CLaRa, parametric QA)."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(16, gt=0, description="rank")
    alpha: int | None = Field(None, gt=0, description="scale numerator (None: 2 × r)")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the adapter's input")
    targets: str | list[str] = Field("all-linear", description="module names to adapt, or 'all-linear'")

    @model_validator(mode="after")
    def _default_alpha(self) -> LoraSettings:
        if self.alpha is None:
            self.alpha = 2 * self.r
        return self


def _lora_shorthand(value: Any) -> Any:
    """``true`` → the default adapter, ``false``/``0`` → none, an integer → that rank."""
    if isinstance(value, bool):
        return {} if value else None
    if isinstance(value, int):
        return {"r": value} if value > 0 else None
    return value


# A setting that may hold a LoRA adapter or none; YAML and ``--set`` may write ``true``, ``false``
# or a rank instead of the whole mapping.
OptionalLora = Annotated[LoraSettings | None, BeforeValidator(_lora_shorthand)]


def add_lora(model, name: str | None, settings: LoraSettings, *, task_type: str | None = "CAUSAL_LM") -> None:
    """Inject a LoRA adapter into `model` — a transformers model or a sentence-transformers one,
    whose `add_adapter` passes through — called `name` (None: peft's default adapter)."""
    from peft import LoraConfig

    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.targets,
        task_type=task_type,
    )
    with warnings.catch_warnings():  # several adapters on one model is intended
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")
        if name is None:
            model.add_adapter(config)
        else:
            model.add_adapter(config, adapter_name=name)


def named_lora_parameters(lm, adapters: Iterable[str] | None = None) -> Iterator[tuple[str, str, torch.nn.Parameter]]:
    """(adapter, parameter name, parameter) of every LoRA weight in `lm`, optionally only those
    of `adapters`. The name is the one `lm.named_parameters()` gives, stable across rebuilds of
    the same model (what saving and loading key on)."""
    import torch
    from peft.tuners.tuners_utils import BaseTunerLayer

    wanted = None if adapters is None else set(adapters)
    names = {id(p): n for n, p in lm.named_parameters()}
    for module_name, module in lm.named_modules():
        if not isinstance(module, BaseTunerLayer):
            continue
        for layer_name in module.adapter_layer_names:
            holder = getattr(module, layer_name, None)
            if holder is None:
                continue
            for adapter, part in holder.items():
                if wanted is not None and adapter not in wanted:
                    continue
                params = [part] if isinstance(part, torch.nn.Parameter) else list(part.parameters())
                for p in params:
                    yield adapter, names.get(id(p), f"{module_name}.{layer_name}.{adapter}"), p


def lora_parameters(lm, adapters: Iterable[str] | None = None) -> list[torch.nn.Parameter]:
    """The LoRA weights of `adapters` (all adapters when None)."""
    return [p for _, _, p in named_lora_parameters(lm, adapters)]


def set_lora_trainable(lm, adapters: Iterable[str]) -> None:
    """Make exactly the LoRA weights of `adapters` trainable (peft freezes inactive adapters on a
    switch, which would cut the gradient of a step that uses two of them)."""
    keep = set(adapters)
    for adapter, _, p in named_lora_parameters(lm):
        p.requires_grad_(adapter in keep)


def lora_state(lm) -> dict[str, torch.Tensor]:
    """Every LoRA weight of `lm`, by the names `named_lora_parameters` gives, on the CPU."""
    return {name: p.detach().cpu().clone() for _, name, p in named_lora_parameters(lm)}


def load_lora_state(lm, state: dict[str, torch.Tensor]) -> None:
    """Copy `lora_state`'s weights back into `lm` (the same adapters injected), refusing a state
    with weights the model lacks rather than loading part of it."""
    import torch

    from korag.errors import ModelError

    params = dict(lm.named_parameters())
    missing = [n for n in state if n not in params]
    if missing:
        raise ModelError(f"the saved state has {len(missing)} weight(s) this model lacks, e.g. {missing[0]}")
    with torch.no_grad():
        for n, t in state.items():
            params[n].copy_(t.to(params[n].device, params[n].dtype))


def freeze_base(lm) -> None:
    """Freeze every weight of `lm` that is not a LoRA weight."""
    lora = {id(p) for p in lora_parameters(lm)}
    for p in lm.parameters():
        if id(p) not in lora:
            p.requires_grad_(False)
