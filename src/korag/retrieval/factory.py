"""Building a retriever from the options the CLI and recipes use."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from korag.errors import ConfigError

RETRIEVERS = ("bm25", "dense", "sparse", "hybrid")
MEMBERS = ("bm25", "dense", "sparse")


def make_retriever(
    kind: str,
    *,
    model: str | None = None,
    sparse_model: str | None = None,
    members: Sequence[str] | None = None,
    tokenizer: str | dict[str, Any] | None = None,
    bm25: dict[str, Any] | None = None,
    dense: dict[str, Any] | None = None,
    sparse: dict[str, Any] | None = None,
    fusion: str = "rrf",
    weights: Sequence[float] | None = None,
    depth: int = 100,
):
    """A BM25, dense, sparse or hybrid retriever.

    `model` is the dense model; for ``--retriever sparse`` it may name the sparse model instead
    of `sparse_model`. A hybrid fuses `members` (default: BM25 plus whichever models are given)."""
    if kind not in RETRIEVERS:
        raise ConfigError(f"unknown retriever {kind!r}; choose from {', '.join(RETRIEVERS)}")

    def build(member: str):
        if member == "bm25":
            from korag.retrieval.bm25 import BM25Retriever

            return BM25Retriever(tokenizer, **(bm25 or {}))
        if member == "dense":
            if not model:
                raise ConfigError(f"the {kind} retriever needs --model (a dense model directory, or a hub id online)")
            from korag.retrieval.dense import DenseRetriever

            return DenseRetriever(model, **(dense or {}))
        path = sparse_model or (model if kind == "sparse" else None)
        if not path:
            raise ConfigError(f"the {kind} retriever needs --sparse-model (a korag sparse model directory)")
        from korag.retrieval.sparse import SparseRetriever

        return SparseRetriever(path, **(sparse or {}))

    if kind != "hybrid":
        return build(kind)
    chosen = list(members or ["bm25", *(["dense"] if model else []), *(["sparse"] if sparse_model else [])])
    unknown = [m for m in chosen if m not in MEMBERS]
    if unknown:
        raise ConfigError(f"unknown hybrid member(s) {', '.join(unknown)}; choose from {', '.join(MEMBERS)}")
    if len(chosen) < 2 or len(set(chosen)) != len(chosen):
        raise ConfigError("a hybrid needs two or more different members, e.g. --members bm25,dense")
    if weights is not None and len(weights) != len(chosen):
        raise ConfigError(f"{len(chosen)} hybrid members ({', '.join(chosen)}) need {len(chosen)} weights")
    from korag.retrieval.fusion import HybridRetriever

    return HybridRetriever([build(m) for m in chosen], method=fusion, weights=weights, depth=depth)  # type: ignore[arg-type]


def check_models(
    kind: str, *, model: str | None = None, sparse_model: str | None = None, members: Sequence[str] | None = None
) -> None:
    """Refuse a retriever whose models are missing (not a directory, not a hub id) or whose
    extra is not installed — before any data is read or PyTorch imported."""
    if kind not in RETRIEVERS:
        raise ConfigError(f"unknown retriever {kind!r}; choose from {', '.join(RETRIEVERS)}")
    chosen = set(members or []) | ({kind} if kind != "hybrid" else {"bm25"})
    if kind == "hybrid" and not members:
        chosen |= ({"dense"} if model else set()) | ({"sparse"} if sparse_model else set())
    if chosen & {"dense", "sparse"}:
        from korag.util.extras import require_extra

        require_extra("dense", f"the {kind} retriever")
    from korag.models.encoder import resolve_model_path

    if "dense" in chosen and model:
        resolve_model_path(model)
    sparse = sparse_model or (model if kind == "sparse" else None)
    if "sparse" in chosen and sparse:
        resolve_model_path(sparse)


def parse_weights(text: str | None) -> list[float] | None:
    """``"0.7,0.3"`` → [0.7, 0.3]."""
    if not text:
        return None
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise ConfigError(f"--weights {text!r}: expected numbers separated by commas") from None
