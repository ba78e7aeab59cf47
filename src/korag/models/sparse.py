"""Building and loading korag's learned sparse encoders (sentence-transformers `SparseEncoder`s).

* **bi-encoder**: ``[Transformer, SpladeHead]`` encodes queries and documents alike;
* **doc-only** (inference-free, OpenSearch's default): a `Router` sends documents through
  ``[Transformer, SpladeHead]`` and queries through `SparseStaticEmbedding`, a trainable weight
  per vocabulary token initialised from IDF — a query is tokenised and looked up, no transformer.

A model directory is a normal sentence-transformers directory plus ``korag_sparse.json`` (mode,
head, vocabulary size, special ids) and, for doc-only models, the query weights as ``idf.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from korag import atomic
from korag.errors import ModelError

SPARSE_INFO = "korag_sparse.json"
Mode = Literal["doc-only", "bi-encoder"]
MODES = ("doc-only", "bi-encoder")


@dataclass
class SparseModelInfo:
    """What ``korag_sparse.json`` records about a sparse model."""

    mode: str
    expansion: bool
    vocab_size: int
    special_ids: list[int]
    base: str = ""
    max_seq_length: int = 256


def _transformer_of(base: str, device: str, max_seq_length: int):
    from sentence_transformers.base.modules.transformer import Transformer

    from korag.models.encoder import load_sentence_transformer

    st = load_sentence_transformer(base, device=device, max_seq_length=max_seq_length)
    first = st[0]
    if not isinstance(first, Transformer) or getattr(first, "tokenizer", None) is None:
        raise ModelError(f"{base}: its first module is not a transformer with a tokenizer")
    return first


def tokenizer_vocab_size(tokenizer) -> int:
    """The sparse dimension: the tokenizer's vocabulary (embedding matrices may be padded beyond it)."""
    return len(tokenizer.get_vocab())


def build_sparse_encoder(
    base: str,
    *,
    mode: Mode = "doc-only",
    expansion: bool = True,
    idf: np.ndarray | None = None,
    output_ids: np.ndarray | None = None,
    max_seq_length: int = 256,
    device: str = "cpu",
):
    """A fresh sparse encoder on top of `base`'s transformer (any sentence-transformers dir or hub id).

    `idf` initialises the doc-only query weights (required for doc-only); `output_ids` restricts
    the expansion head's output vocabulary (default: the whole vocabulary)."""
    import torch
    from sentence_transformers.base.modules.router import Router
    from sentence_transformers.sparse_encoder import SparseEncoder
    from sentence_transformers.sparse_encoder.modules import SparseStaticEmbedding

    from korag.models.sparse_head import SpladeHead

    if mode not in MODES:
        raise ModelError(f"unknown sparse mode {mode!r}; choose from {', '.join(MODES)}")
    transformer = _transformer_of(base, device, max_seq_length)
    tokenizer = transformer.tokenizer
    vocab = tokenizer_vocab_size(tokenizer)
    hf = transformer.auto_model
    embeddings = hf.get_input_embeddings().weight.detach()
    if embeddings.shape[0] < vocab:
        raise ModelError(f"{base}: {embeddings.shape[0]} embedding rows for a {vocab}-token tokenizer")
    special = sorted(set(tokenizer.all_special_ids))
    head = SpladeHead(
        vocab,
        hf.config.hidden_size,
        expansion=expansion,
        special_ids=special,
        output_ids=None if output_ids is None else torch.as_tensor(output_ids),
        embeddings=embeddings[:vocab],
    )
    if mode == "bi-encoder":
        model = SparseEncoder(modules=[transformer, head], similarity_fn_name="dot", device=device)
    else:
        if idf is None:
            raise ModelError("a doc-only model needs IDF weights for its query side")
        if len(idf) != vocab:
            raise ModelError(f"IDF has {len(idf)} weights for a {vocab}-token vocabulary")
        query = SparseStaticEmbedding(tokenizer=tokenizer, weight=torch.tensor(np.asarray(idf, dtype=np.float32)))
        router = Router.for_query_document(query_modules=[query], document_modules=[transformer, head])
        model = SparseEncoder(modules=[router], similarity_fn_name="dot", device=device)
    model.korag_info = SparseModelInfo(mode, expansion, vocab, special, base, max_seq_length)  # type: ignore[attr-defined]
    return model


def save_sparse_encoder(model, path: str | Path) -> None:
    """Save a sparse encoder with its ``korag_sparse.json`` (and ``idf.json`` for doc-only)."""
    from korag.text.idf import write_idf_json

    out = Path(path)
    model.save(str(out))
    info: SparseModelInfo = model.korag_info
    atomic.write_json(out / SPARSE_INFO, asdict(info))
    if info.mode == "doc-only":
        weights = query_weights(model)
        tokens = document_tokenizer(model).convert_ids_to_tokens(list(range(len(weights))))
        write_idf_json(out / "idf.json", weights, tokens)


def read_sparse_info(path: str | Path) -> SparseModelInfo:
    """The ``korag_sparse.json`` of a model directory."""
    p = Path(path) / SPARSE_INFO
    if not p.is_file():
        raise ModelError(f"{path}: not a korag sparse model (no {SPARSE_INFO})")
    return SparseModelInfo(**json.loads(p.read_text(encoding="utf-8")))


def load_sparse_encoder(path: str | Path, *, device: str = "cpu"):
    """Open a sparse model directory written by `save_sparse_encoder`."""
    from sentence_transformers.sparse_encoder import SparseEncoder

    p = Path(path)
    if not p.exists():
        raise ModelError(f"{p}: no such model directory")
    info = read_sparse_info(p)
    from korag.models.sparse_head import SpladeHead

    # korag's head is installed code, not code from the model directory: resolve it to the
    # imported class instead of asking for trust_remote_code (which would trust the directory)
    classes = {f"{SpladeHead.__module__}.{SpladeHead.__name__}": SpladeHead}
    try:
        model = SparseEncoder._load_with_module_classes(str(p), classes, device=device, local_files_only=True)
    except OSError as exc:
        raise ModelError(f"{p}: cannot load the sparse model ({exc})") from None
    model.korag_info = info  # type: ignore[attr-defined]
    return model


def _router(model):
    from sentence_transformers.base.modules.router import Router

    first = model[0]
    return first if isinstance(first, Router) else None


def document_modules(model) -> list[Any]:
    """The modules documents pass through (transformer, head)."""
    router = _router(model)
    return list(router.sub_modules["document"]) if router is not None else list(model)


def document_tokenizer(model):
    """The tokenizer of the document encoder."""
    return document_modules(model)[0].tokenizer


def transformer_model(model):
    """The Hugging Face model inside the document encoder."""
    return document_modules(model)[0].auto_model


def sparse_head(model):
    """The `SpladeHead` of the document encoder."""
    return document_modules(model)[-1]


def query_weights(model) -> np.ndarray:
    """Doc-only query weights per token id (a float32 copy)."""
    router = _router(model)
    if router is None:
        raise ModelError("a bi-encoder sparse model has no static query weights")
    return router.sub_modules["query"][0].weight.detach().float().cpu().numpy().copy()


def calibrate_expansion_(model, texts: list[str], *, active: float = 0.001, max_length: int = 256) -> float:
    """Calibrate a fresh expansion head's bias on a few documents (see `SpladeHead.calibrate_`)."""
    import torch

    head = sparse_head(model)
    if not head.expansion or not texts:
        return 0.0
    tok = document_tokenizer(model)
    limit = min(max_length, document_modules(model)[0].max_seq_length or max_length)
    enc = tok(texts, padding=True, truncation=True, max_length=limit, return_tensors="pt")
    hf = transformer_model(model)
    with torch.no_grad():
        hidden = hf(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
    return head.calibrate_(hidden, enc["attention_mask"], active)
