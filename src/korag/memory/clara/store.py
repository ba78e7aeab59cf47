"""Saving and loading a CLaRa model: the base LM stays where it is; korag writes only what
training changed — the LoRA adapters and the memory tokens' embedding rows — plus the config
and the tokenizer with its added tokens (a 7B base is not copied for megabytes of adapters)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from korag import atomic
from korag.errors import ModelError
from korag.memory.clara.config import ClaraConfig
from korag.memory.clara.model import ADAPTERS, ClaraModel
from korag.models.causal_lm import load_base_lm
from korag.models.lora import load_lora_state, lora_state
from korag.models.tensors import load_state, save_state

STATE = "clara_state.safetensors"
LEGACY_STATE = "clara_state.pt"  # written by korag before safetensors; still read (tensors only)
INFO = "clara.json"


def trained_state(model: ClaraModel) -> dict[str, torch.Tensor]:
    """Every LoRA weight and the added tokens' rows of the input and output embeddings (the
    memory rows are trained; ``<ENC>``/``<SEP>`` and the output rows are random at resize time
    and must come back identical)."""
    state = lora_state(model.lm)
    ids = model.added_ids
    state["added_rows"] = model.lm.get_input_embeddings().weight.detach()[ids].cpu().clone()
    out = model.lm.get_output_embeddings()
    if out is not None and out.weight is not model.lm.get_input_embeddings().weight:
        state["added_output_rows"] = out.weight.detach()[ids].cpu().clone()
    return state


def load_trained_state(model: ClaraModel, state: dict[str, torch.Tensor]) -> None:
    """Put `trained_state` back into a freshly built model of the same config."""
    rows = {k: state[k] for k in ("added_rows", "added_output_rows") if k in state}
    load_lora_state(model.lm, {n: t for n, t in state.items() if n not in rows})
    with torch.no_grad():
        targets = {"added_rows": model.lm.get_input_embeddings().weight}
        if "added_output_rows" in rows:
            targets["added_output_rows"] = model.lm.get_output_embeddings().weight
        for key, w in targets.items():
            w[model.added_ids.to(w.device)] = rows[key].to(w.device, w.dtype)


def save_clara(model: ClaraModel, directory: str | Path, *, base: str, extra: dict[str, Any] | None = None) -> Path:
    """Write a CLaRa directory atomically: ``clara.json``, ``clara_state.safetensors``, ``tokenizer/``."""
    with atomic.atomic_directory(directory, overwrite=True) as tmp:
        save_state(trained_state(model), tmp / STATE)
        model.tokenizer.save_pretrained(tmp / "tokenizer")
        info = {"base": base, "config": model.config.model_dump(), "adapters": list(model.adapters), **(extra or {})}
        atomic.write_json(tmp / INFO, info)
    return Path(directory)


def build_clara(base: str, config: ClaraConfig, *, adapters=ADAPTERS, device: str = "cpu") -> ClaraModel:
    """A fresh CLaRa model over the base LM `base` (see `korag.models.causal_lm.resolve_base`)."""
    lm, tokenizer = load_base_lm(base, device=device)
    return ClaraModel(lm, tokenizer, config, adapters=adapters)


def load_clara(directory: str | Path, *, device: str = "cpu") -> tuple[ClaraModel, dict[str, Any]]:
    """A model saved by `save_clara` (its base LM must still be where it was)."""
    d = Path(directory)
    if not (d / INFO).is_file():
        raise ModelError(f"{d}: not a korag CLaRa directory (no {INFO})")
    info = json.loads((d / INFO).read_text(encoding="utf-8"))
    state = load_state(d / STATE, legacy=d / LEGACY_STATE)  # before the base LM: a refused file costs nothing
    model = build_clara(info["base"], ClaraConfig(**info["config"]), adapters=info["adapters"], device=device)
    load_trained_state(model, state)
    return model, info


def model_identity(directory: str | Path) -> str:
    """What identifies a saved CLaRa model's weights (its state file's hash): compressed documents
    are cached under it."""
    from korag.util.hashing import file_sha256

    d = Path(directory)
    return file_sha256(d / STATE if (d / STATE).is_file() else d / LEGACY_STATE)
