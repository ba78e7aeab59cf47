"""Any Hugging Face tokenizer, from a local directory, a `tokenizer.json` file, or a hub id.

Loading uses the `tokenizers` library (a `tokenizer.json` is all it needs). A directory
without `tokenizer.json` (only a SentencePiece model, say) is loaded through `transformers`
when it is installed. Hub ids work when the machine is online; tests use local paths only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from korag.errors import ModelError
from korag.text.tokenize import BaseTokenizer


def load_hf_tokenizer(path: str):
    """A `tokenizers.Tokenizer` for a local path or hub id; `ModelError` naming `path` if impossible."""
    from tokenizers import Tokenizer

    p = Path(path)
    if p.is_file():
        try:
            return Tokenizer.from_file(str(p))
        except Exception as exc:
            raise ModelError(f"{p}: not a valid tokenizer.json ({exc})") from None
    if p.is_dir():
        if (p / "tokenizer.json").is_file():
            return load_hf_tokenizer(str(p / "tokenizer.json"))
        try:
            from transformers import AutoTokenizer
        except ImportError:
            raise ModelError(f"{p}: no tokenizer.json in this directory") from None
        try:
            return AutoTokenizer.from_pretrained(str(p)).backend_tokenizer
        except Exception as exc:
            raise ModelError(f"{p}: no usable tokenizer in this directory ({exc})") from None
    if p.is_absolute() or path.startswith((".", "~")) or path.count("/") > 1:
        raise ModelError(f"{path}: no such tokenizer file or directory")
    try:
        return Tokenizer.from_pretrained(path)
    except Exception as exc:
        raise ModelError(f"{path}: not a local path, and loading it from the Hugging Face hub failed ({exc})") from None


class HFTokenizer(BaseTokenizer):
    """Subword tokens of a Hugging Face tokenizer (no special tokens added)."""

    name = "hf"

    def __init__(self, path: str) -> None:
        self.path = str(path)
        self._tok = load_hf_tokenizer(self.path)

    def tokenize(self, text: str) -> list[str]:
        """Subword token strings of one text."""
        return self._tok.encode(text, add_special_tokens=False).tokens

    def tokenize_batch(self, texts: Sequence[str], *, show_progress: bool = False) -> list[list[str]]:
        """Subword token strings of many texts (the Rust tokenizer parallelises the batch)."""
        return [e.tokens for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def config(self) -> dict[str, Any]:
        """Settings that rebuild this tokenizer."""
        return {"name": self.name, "path": self.path}
