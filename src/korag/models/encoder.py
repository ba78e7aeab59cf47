"""Loading sentence-transformers models from local paths (or hub ids online) and encoding fast.

Encoding speed on CPU comes from three things, measured in `bench/dense_korquad.py`:
texts sorted by length with padding only to the longest text of each batch (what
`SentenceTransformer.encode` does), no autograd, and bfloat16 autocast where the CPU computes
in bf16 natively (AVX512-BF16 / AMX) — embeddings stay within cosine 0.9999 of float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from korag.errors import ConfigError, ModelError
from korag.models.device import bf16_autocast, wants_bf16

Precision = Literal["auto", "fp32", "bf16"]


def resolve_model_path(model: str | Path) -> str:
    """A loadable model path or hub id; a korag training output resolves to its ``model/``."""
    p = Path(model).expanduser()
    if p.is_dir():
        if (p / "model" / "modules.json").is_file() or (p / "model" / "config.json").is_file():
            return str(p / "model")
        if not ((p / "modules.json").is_file() or (p / "config.json").is_file()):
            raise ModelError(f"{p}: not a model directory (no modules.json or config.json)")
        return str(p)
    if p.exists():
        raise ModelError(f"{p}: is a file, expected a model directory or a hub id")
    text = str(model)
    if p.is_absolute() or text.startswith((".", "~")) or text.count("/") > 1 or "\\" in text:
        raise ModelError(f"{model}: no such model directory")
    return text  # a hub id such as intfloat/multilingual-e5-small


def load_sentence_transformer(model: str | Path, *, device: str = "cpu", max_seq_length: int | None = None):
    """A `SentenceTransformer` from a local directory or (online) a hub id, with clear errors."""
    from sentence_transformers import SentenceTransformer

    path = resolve_model_path(model)
    try:
        st = SentenceTransformer(path, device=device)
    except OSError as exc:
        where = "directory" if Path(path).exists() else "hub id (is the machine online?)"
        raise ModelError(f"{model}: cannot load a sentence-transformers model from this {where}: {exc}") from None
    check_tokenizer(st, model)
    if max_seq_length:
        st.max_seq_length = min(max_seq_length, model_max_length(st) or max_seq_length)
    return st


def check_tokenizer(st, model: str | Path) -> None:
    """Refuse a model whose tokenizer files are missing: transformers 5 then builds an empty
    tokenizer (special tokens only) that maps every word to [UNK] without a word of warning."""
    tok = getattr(st, "tokenizer", None)
    if tok is None:
        return
    try:
        rows = st[0].auto_model.get_input_embeddings().weight.shape[0]
    except (AttributeError, IndexError, TypeError):
        return
    size = len(tok.get_vocab())
    if size <= len(set(tok.all_special_ids)) or size < rows // 10:
        raise ModelError(
            f"{model}: no usable tokenizer (its vocabulary has {size} tokens for {rows} embeddings; "
            "are tokenizer.json / tokenizer_config.json missing?)"
        )


def model_max_length(st) -> int | None:
    """The longest input a sentence-transformers model's tokenizer and positions allow."""
    limits = []
    tok_limit = getattr(getattr(st, "tokenizer", None), "model_max_length", None)
    if isinstance(tok_limit, int) and tok_limit < 1_000_000:
        limits.append(tok_limit)
    try:
        positions = st[0].auto_model.config.max_position_embeddings
        limits.append(int(positions))
    except (AttributeError, IndexError, TypeError):
        pass
    return min(limits) if limits else None


def resolve_prefixes(model, query_prefix: str | None, passage_prefix: str | None) -> tuple[str, str]:
    """The (query, passage) prefixes: given explicitly (both), or the model's own prompts."""
    prompts: dict[str, str] = dict(getattr(model, "prompts", {}) or {})
    if (query_prefix is None) != (passage_prefix is None):
        raise ConfigError(
            "set both the query and the passage prefix, or neither (to use the model's own prompts "
            f"{prompts or 'none'}); E5 models need 'query: ' and 'passage: '"
        )
    if query_prefix is not None:
        for name, value in (("query", query_prefix), ("passage", passage_prefix)):
            if not isinstance(value, str):
                raise ConfigError(f"{name} prefix must be a string, got {type(value).__name__}")
        return query_prefix, passage_prefix  # type: ignore[return-value]
    query = prompts.get("query", "")
    passage = prompts.get("passage", prompts.get("document", prompts.get("corpus", "")))
    if bool(query) != bool(passage):
        raise ConfigError(f"the model defines a prompt for only one side ({prompts}); pass both prefixes explicitly")
    return query, passage


class DenseEncoder:
    """Query and passage embeddings (L2-normalised) from a sentence-transformers model."""

    def __init__(
        self,
        model: str | Path | Any,
        *,
        query_prefix: str | None = None,
        passage_prefix: str | None = None,
        batch_size: int = 32,
        max_seq_length: int | None = None,
        precision: Precision = "auto",
        device: str = "cpu",
        reference: str | None = None,
    ) -> None:
        if isinstance(model, (str, Path)):
            self.model_name = str(model)
            self.model = load_sentence_transformer(model, device=device, max_seq_length=max_seq_length)
        else:
            # an in-memory model is saved with the index, unless `reference` names where it was
            # loaded from (a model shared by several indexes, loaded once)
            self.model_name = reference or ""
            self.model = model
            if max_seq_length:
                self.model.max_seq_length = min(max_seq_length, model_max_length(model) or max_seq_length)
        self.device = device
        self.precision = precision
        self.use_bf16 = wants_bf16(precision, device)
        self.query_prefix, self.passage_prefix = resolve_prefixes(self.model, query_prefix, passage_prefix)
        self.batch_size = batch_size

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        get = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(get())

    def _encode(self, texts: Sequence[str], prefix: str, show_progress: bool) -> np.ndarray:
        import torch

        if not len(texts):
            return np.empty((0, self.dim), dtype=np.float32)
        with torch.inference_mode(), bf16_autocast(self.use_bf16, self.device):
            emb = self.model.encode(
                list(texts),
                prompt=prefix or None,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=show_progress,
            )
        return np.asarray(emb, dtype=np.float32)

    def encode_queries(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Normalised query embeddings, one row per text."""
        return self._encode(texts, self.query_prefix, show_progress)

    def encode_documents(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Normalised passage embeddings, one row per text."""
        return self._encode(texts, self.passage_prefix, show_progress)

    def encode_query(self, text: str) -> np.ndarray:
        """One normalised query embedding."""
        return self.encode_queries([text])[0]

    def encode_document(self, text: str) -> np.ndarray:
        """One normalised passage embedding."""
        return self.encode_documents([text])[0]

    @staticmethod
    def similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Cosine similarity of normalised embeddings: a matrix (or a scalar for two vectors)."""
        return np.asarray(a) @ np.asarray(b).T

    def config(self) -> dict[str, Any]:
        """Settings that rebuild this encoder (with the model path)."""
        return {
            "model": self.model_name,
            "query_prefix": self.query_prefix,
            "passage_prefix": self.passage_prefix,
            "batch_size": self.batch_size,
            "max_seq_length": int(self.model.max_seq_length) if self.model.max_seq_length else None,
            "precision": self.precision,
        }
