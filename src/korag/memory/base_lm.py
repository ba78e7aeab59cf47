"""The base causal LM under every memory model, from what a user names: a transformers directory,
a GGUF file (de-quantised once and cached), the offline ``gemma3-270m`` package, or — when the
machine is online — a hub id."""

from __future__ import annotations

from pathlib import Path

import torch

from korag.errors import ModelError


def resolve_base(base: str) -> str:
    """A directory transformers can read for `base` (GGUF files and ``gemma3-270m`` are converted
    once into korag's cache); anything else is passed on as a hub id."""
    path = Path(base)
    if path.suffix == ".gguf" or base == "gemma3-270m":
        from korag.synth.llm import convert_gguf, gemma_gguf

        path = convert_gguf(gemma_gguf() if base == "gemma3-270m" else path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"{base}: not a causal LM directory (no config.json)")
        return str(path)
    if path.exists() or base.startswith((".", "/")) or base.count("/") != 1:
        raise ModelError(f"{base}: not a causal LM directory, a .gguf file, 'gemma3-270m' or a hub id")
    return base


def load_base_lm(base: str, *, device: str = "cpu"):
    """(causal LM in float32 on `device`, its tokenizer) for `base` (see `resolve_base`)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where = resolve_base(base)
    lm = AutoModelForCausalLM.from_pretrained(where, dtype=torch.float32).to(device)
    return lm, AutoTokenizer.from_pretrained(where)
