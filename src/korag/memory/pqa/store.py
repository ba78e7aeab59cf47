"""Saving and loading a parametric-QA model. The base LM stays where it is; a korag PQA directory
holds what the phases trained — the memory pool, the projection, the selector, the reader's LoRA
weights, the fast-write initialiser — plus the config, the document ids of the pool's rows and
the identities of the base LM and the query encoder.

    pqa.json                 config, base, encoder, doc_ids, selector config, LoRA settings, records
    pqa_state.safetensors    tensors (``pqa_state.pt`` of older korag versions is still read)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from korag import atomic
from korag.errors import ModelError
from korag.memory.pqa.config import PQAConfig, SelectorConfig
from korag.memory.pqa.model import ParametricQA
from korag.memory.pqa.selectors import Selector, make_selector
from korag.models.causal_lm import load_base_lm
from korag.models.lora import LoraSettings, load_lora_state, lora_state
from korag.models.tensors import load_state, save_state

INFO = "pqa.json"
STATE = "pqa_state.safetensors"
LEGACY_STATE = "pqa_state.pt"


def build_pqa(base: str, config: PQAConfig, n_docs: int, *, device: str = "cpu", encoder_vectors=None) -> ParametricQA:
    """A fresh model over the base LM `base` (see `korag.models.causal_lm.resolve_base`)."""
    lm, tokenizer = load_base_lm(base, device=device)
    return ParametricQA(lm, tokenizer, config, n_docs, encoder_vectors=encoder_vectors)


def model_state(model: ParametricQA, selector: Selector | None, fast_init=None) -> dict[str, Any]:
    """Everything a save needs, as CPU tensors (also the checkpoints' payload)."""
    state: dict[str, Any] = {
        "pool": model.pool.detach().cpu().clone(),
        "projection": {k: v.detach().cpu().clone() for k, v in model.projection.state_dict().items()},
        "lora": lora_state(model.lm) if model.lora is not None else {},
    }
    if selector is not None:
        state["selector"] = {k: v.detach().cpu().clone() for k, v in selector.state_dict().items()}
    if fast_init is not None:
        state["fast_init"] = fast_init.state_dict()
    return state


def load_model_state(model: ParametricQA, selector: Selector | None, state: dict[str, Any]) -> None:
    """Put `model_state` back into a model (and selector) of the same shapes."""
    with torch.no_grad():
        if tuple(state["pool"].shape) != tuple(model.pool.shape):
            model.pool = torch.nn.Parameter(state["pool"].to(model.device), requires_grad=model.pool.requires_grad)
        else:
            model.pool.copy_(state["pool"].to(model.device))
        model.projection.load_state_dict(state["projection"])
    if state.get("lora"):
        load_lora_state(model.lm, state["lora"])
    if selector is not None and "selector" in state:
        selector.load_state_dict(state["selector"])


def save_pqa(
    model: ParametricQA,
    directory: str | Path,
    *,
    base: str,
    doc_ids: Sequence[str],
    encoder: str | None = None,
    selector: Selector | None = None,
    fast_init=None,
    records: dict[str, Any] | None = None,
) -> Path:
    """Write a PQA directory atomically."""
    if len(doc_ids) != model.n_docs:
        raise ValueError(f"{len(doc_ids)} document ids for a pool of {model.n_docs}")
    with atomic.atomic_directory(directory, overwrite=True) as tmp:
        save_state(model_state(model, selector, fast_init), tmp / STATE)
        info = {
            "base": base,
            "encoder": encoder,
            "config": model.config.model_dump(),
            "doc_ids": list(doc_ids),
            "selector": selector.config.model_dump() if selector is not None else None,
            "query_dim": selector.query_dim if selector is not None else None,
            "lora": model.lora.model_dump() if model.lora is not None else None,
            "records": records or {},
        }
        atomic.write_json(tmp / INFO, info)
    return Path(directory)


def read_info(directory: str | Path) -> dict[str, Any]:
    """The ``pqa.json`` of a PQA directory."""
    d = Path(directory)
    if not (d / INFO).is_file():
        raise ModelError(f"{d}: not a korag parametric-QA directory (no {INFO})")
    return json.loads((d / INFO).read_text(encoding="utf-8"))


def load_pqa(directory: str | Path, *, device: str = "cpu"):
    """(model, selector or None, fast-write initialiser or None, info) of a saved PQA directory
    (its base LM must still be where it was)."""
    from korag.memory.pqa.fast_write import FastWriteInit

    d = Path(directory)
    info = read_info(d)
    state = load_state(d / STATE, legacy=d / LEGACY_STATE)
    config = PQAConfig(**info["config"])
    vectors = state["pool"] if config.memory == "encoder" else None
    model = build_pqa(info["base"], config, len(info["doc_ids"]), device=device, encoder_vectors=vectors)
    if info.get("lora"):
        model.add_reader_lora(LoraSettings(**info["lora"]))
    selector = None
    if info.get("selector"):
        selector = make_selector(SelectorConfig(**info["selector"]), int(info["query_dim"]), config.z_dim).to(device)
    load_model_state(model, selector, state)
    fast = FastWriteInit.from_state(state["fast_init"]) if "fast_init" in state else None
    return model, selector, fast, info
