"""Saved tensors: safetensors for every model file korag writes, `torch.load` only with
``weights_only=True``.

A model directory someone shared must not run code when opened: a pickle (what `torch.save`
writes) can, a safetensors file cannot — it is a JSON header and raw buffers. Nested state (a
memory pool, a projection's and a selector's parameters, LoRA weights) is flattened into one
file with ``/`` between levels. Files written before this (``*.pt``) are still read, through
`torch.load(weights_only=True)`, which refuses anything but tensors and plain containers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from korag.errors import ModelError

log = logging.getLogger(__name__)
SEP = "/"


def flatten(state: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": t}}`` → ``{"a/b": t}`` (tensors only at the leaves)."""
    out: dict[str, Any] = {}
    for key, value in state.items():
        if SEP in key:
            raise ValueError(f"a state key may not contain {SEP!r}: {key!r}")
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + SEP))
        else:
            out[name] = value
    return out


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of `flatten`."""
    out: dict[str, Any] = {}
    for name, value in flat.items():
        node = out
        *parents, leaf = name.split(SEP)
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def save_state(state: Mapping[str, Any], path: str | Path) -> None:
    """Write nested tensors as one safetensors file (contiguous CPU copies; shared storage is fine)."""
    from safetensors.torch import save_file

    flat = {k: v.detach().cpu().contiguous().clone() for k, v in flatten(state).items()}
    save_file(flat, str(path))


def load_state(path: str | Path, *, legacy: str | Path | None = None) -> dict[str, Any]:
    """Nested tensors from a safetensors file — or, when only the `legacy` ``.pt`` file of an older
    korag exists, from it with ``weights_only=True`` (a file holding anything else is refused)."""
    p = Path(path)
    if p.is_file():
        from safetensors.torch import load_file

        return unflatten(load_file(str(p)))
    if legacy is not None and Path(legacy).is_file():
        import pickle

        import torch

        try:
            state = torch.load(legacy, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise ModelError(
                f"{legacy}: refused to load — it holds more than tensors (a pickle can run code when opened); "
                f"only tensor files are read ({str(exc).splitlines()[0]})"
            ) from None
        log.info("%s: read a model saved by an older korag; saving it again writes %s", legacy, p.name)
        return state
    raise ModelError(f"{p.parent}: no {p.name}")
