"""Loading a causal LM on the hardware there is: dtype, bitsandbytes 8/4-bit or AWQ weights, and
``device_map="auto"`` with a per-device memory budget (layers that do not fit the GPU are
offloaded to CPU memory by accelerate).

Everything is decided at run time from what the machine has (`cuda_available`, `has_module`);
nothing assumes CUDA and nothing forbids it. A choice the machine cannot honour is a one-line
`ConfigError` before any weight is read. `loading_plan` only computes the keyword arguments handed
to ``from_pretrained``, so every path can be checked on a machine without a GPU.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from korag.errors import ConfigError

log = logging.getLogger(__name__)

QUANTIZATIONS = ("none", "8bit", "4bit", "awq")
_SIZE = re.compile(r"^\s*\d+(?:\.\d+)?\s*(?:[KMGT]i?B|B)?\s*$", re.I)


def cuda_available() -> bool:
    """Whether PyTorch sees a CUDA device."""
    import torch

    return bool(torch.cuda.is_available())


def cuda_device_count() -> int:
    """How many CUDA devices PyTorch sees."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def has_module(name: str) -> bool:
    """Whether `name` can be imported (without importing it)."""
    return importlib.util.find_spec(name) is not None


def parse_max_memory(spec: str) -> dict[int | str, str]:
    """``"0=20GiB,cpu=60GiB"`` → ``{0: "20GiB", "cpu": "60GiB"}`` (accelerate's ``max_memory``):
    GPU numbers or ``cpu``, each with a size."""
    budget: dict[int | str, str] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        key, sep, size = part.partition("=")
        key, size = key.strip().lower(), size.strip()
        if not sep or not key or not size:
            raise ConfigError(f"max_memory {spec!r}: expected DEVICE=SIZE items such as 0=20GiB,cpu=60GiB")
        if not (key.isdigit() or key in ("cpu", "mps")):
            raise ConfigError(f"max_memory {spec!r}: device {key!r} is not a GPU number, cpu or mps")
        if not _SIZE.match(size):
            raise ConfigError(f"max_memory {spec!r}: size {size!r} is not like 20GiB, 500MB or 1073741824")
        budget[int(key) if key.isdigit() else key] = size.replace(" ", "")
    if not budget:
        raise ConfigError(f"max_memory {spec!r}: no device given")
    return budget


def resolve_dtype(dtype: str, device: str):
    """The torch dtype for `dtype` on `device`: ``auto`` is bfloat16 on CUDA that has it (else
    float16), float16 on Apple GPUs, float32 on the CPU (bfloat16 there is often emulated)."""
    import torch

    named = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype in named:
        return named[dtype]
    if dtype != "auto":
        raise ConfigError(f"dtype must be auto, float32, bfloat16 or float16 (got {dtype!r})")
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.startswith("mps"):
        return torch.float16
    return torch.float32


@dataclass
class LoadPlan:
    """What `from_pretrained` gets, and where the model goes afterwards (``place_on``; None when
    ``device_map`` or quantization already placed it)."""

    kwargs: dict[str, Any]
    place_on: str | None
    summary: dict[str, Any] = field(default_factory=dict)


def _checkpoint_quantization(path: Path) -> str | None:
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    q = config.get("quantization_config") or (config.get("text_config") or {}).get("quantization_config")
    return str(q.get("quant_method", "")).lower() if isinstance(q, dict) else None


def _bitsandbytes(quantization: str, compute_dtype, offload: bool) -> Any:
    from transformers import BitsAndBytesConfig

    if quantization == "4bit":
        # NF4 with double quantisation: the QLoRA recipe, ~0.5 byte per weight
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
            llm_int8_enable_fp32_cpu_offload=offload,
        )
    return BitsAndBytesConfig(load_in_8bit=True, llm_int8_enable_fp32_cpu_offload=offload)


def _check_budget(budget: dict[int | str, str] | None) -> None:
    if not budget:
        return
    gpus = [k for k in budget if isinstance(k, int)]
    if gpus:
        count = cuda_device_count()
        if not count:
            raise ConfigError(f"max_memory names GPU {gpus[0]} but there is no CUDA device; give only cpu=SIZE")
        if max(gpus) >= count:
            raise ConfigError(f"max_memory names GPU {max(gpus)} but only {count} CUDA device(s) exist")


def _quantization_kwargs(path: Path, quantization: str, device: str, torch_dtype, offload: bool) -> dict[str, Any]:
    """The quantisation part of the keyword arguments, after checking the machine can do it."""
    if quantization in ("8bit", "4bit"):
        if not has_module("bitsandbytes"):
            gpu = "" if cuda_available() else " and a CUDA GPU (this machine has none)"
            raise ConfigError(
                f"quantization {quantization} needs bitsandbytes{gpu}: pip install bitsandbytes, "
                "or use quantization none"
            )
        if not device.startswith("cuda"):
            log.warning("%s quantization on %s: only bitsandbytes with a CPU backend runs it", quantization, device)
        return {"quantization_config": _bitsandbytes(quantization, torch_dtype, offload)}
    if quantization == "awq":
        found = _checkpoint_quantization(path)
        if found != "awq":
            raise ConfigError(
                f"{path}: quantization awq needs a pre-quantised AWQ checkpoint "
                f"(its config.json has {'quant_method ' + repr(found) if found else 'no quantization_config'})"
            )
        if not has_module("gptqmodel"):
            raise ConfigError("quantization awq needs gptqmodel (transformers' AWQ kernels): pip install gptqmodel")
    return {}


def loading_plan(
    path: str | Path,
    *,
    device: str = "cpu",
    dtype: str = "auto",
    quantization: str = "none",
    device_map: str | None = None,
    max_memory: str | None = None,
) -> LoadPlan:
    """The ``from_pretrained`` keyword arguments for loading the model at `path` this way on
    this machine (`device` already resolved: ``cpu``, ``cuda``, ``cuda:1``, ``mps``)."""
    if quantization not in QUANTIZATIONS:
        raise ConfigError(f"quantization must be one of {', '.join(QUANTIZATIONS)} (got {quantization!r})")
    if device_map not in (None, "auto"):
        raise ConfigError(f"device_map must be auto or unset (got {device_map!r})")
    budget = parse_max_memory(max_memory) if max_memory else None
    _check_budget(budget)
    if budget and device_map is None:
        log.info("max_memory given: placing layers with device_map=auto")
        device_map = "auto"
    if device_map and not has_module("accelerate"):
        raise ConfigError("device_map auto needs accelerate: pip install accelerate")
    torch_dtype = resolve_dtype(dtype, device)
    kwargs: dict[str, Any] = {"dtype": torch_dtype}
    offload = bool(budget and "cpu" in budget)
    kwargs.update(_quantization_kwargs(Path(path), quantization, device, torch_dtype, offload))
    if device_map:
        kwargs["device_map"] = "auto"
        if budget:
            kwargs["max_memory"] = budget
        place_on = None
    elif quantization != "none":
        # quantised weights are placed while loading, never moved afterwards
        kwargs["device_map"] = {"": 0 if device == "cuda" else device}
        place_on = None
    else:
        place_on = device
    summary = {
        "dtype": str(kwargs["dtype"]).removeprefix("torch."),
        "quantization": quantization,
        **({"device_map": "auto"} if device_map else {}),
        **({"max_memory": max_memory} if max_memory else {}),
    }
    return LoadPlan(kwargs, place_on, summary)
