"""Building a retriever from the options the CLI and recipes use."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from korag.errors import ConfigError

RETRIEVERS = ("bm25", "dense", "hybrid")


def make_retriever(
    kind: str,
    *,
    model: str | None = None,
    tokenizer: str | dict[str, Any] | None = None,
    bm25: dict[str, Any] | None = None,
    dense: dict[str, Any] | None = None,
    fusion: str = "rrf",
    weights: Sequence[float] | None = None,
    depth: int = 100,
):
    """A BM25, dense, or hybrid (BM25 + dense) retriever."""
    if kind not in RETRIEVERS:
        raise ConfigError(f"unknown retriever {kind!r}; choose from {', '.join(RETRIEVERS)}")
    if kind == "bm25":
        from korag.retrieval.bm25 import BM25Retriever

        return BM25Retriever(tokenizer, **(bm25 or {}))
    if not model:
        raise ConfigError(f"the {kind} retriever needs --model (a model directory, or a hub id when online)")
    from korag.retrieval.dense import DenseRetriever

    dense_r = DenseRetriever(model, **(dense or {}))
    if kind == "dense":
        return dense_r
    from korag.retrieval.bm25 import BM25Retriever
    from korag.retrieval.fusion import HybridRetriever

    if weights is not None and len(weights) != 2:
        raise ConfigError("a BM25 + dense hybrid takes two weights, e.g. --weights 0.7,0.3")
    return HybridRetriever(
        [BM25Retriever(tokenizer, **(bm25 or {})), dense_r], method=fusion, weights=weights, depth=depth
    )  # type: ignore[arg-type]


def parse_weights(text: str | None) -> list[float] | None:
    """``"0.7,0.3"`` → [0.7, 0.3]."""
    if not text:
        return None
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise ConfigError(f"--weights {text!r}: expected numbers separated by commas") from None
