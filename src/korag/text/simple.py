"""Language-agnostic tokenizers: whitespace words and character n-grams."""

from __future__ import annotations

import re
from typing import Any

from korag.text.tokenize import BaseTokenizer

_WS = re.compile(r"\s+")


class WhitespaceTokenizer(BaseTokenizer):
    """Splits on whitespace; Korean eojeols keep their particles, so recall is weak."""

    name = "whitespace"

    def __init__(self, lowercase: bool = True) -> None:
        self.lowercase = lowercase

    def tokenize(self, text: str) -> list[str]:
        """Whitespace-separated words."""
        return (text.lower() if self.lowercase else text).split()

    def config(self) -> dict[str, Any]:
        """Settings that rebuild this tokenizer."""
        return {"name": self.name, "lowercase": self.lowercase}


class CharNgramTokenizer(BaseTokenizer):
    """Overlapping character n-grams.

    With `remove_spaces` (the default) the n-grams run across word boundaries of the text with
    its whitespace removed. Character bigrams are a strong Korean BM25 baseline: they match
    stems regardless of the particles and endings glued to them, with no dictionary.
    """

    name = "ngram"

    def __init__(self, n: int = 2, remove_spaces: bool = True, lowercase: bool = True) -> None:
        if n < 1:
            raise ValueError("n must be at least 1")
        self.n = n
        self.remove_spaces = remove_spaces
        self.lowercase = lowercase

    def tokenize(self, text: str) -> list[str]:
        """All n-grams of the (space-stripped) text; a text shorter than n is one token."""
        if self.lowercase:
            text = text.lower()
        n = self.n
        if self.remove_spaces:
            s = _WS.sub("", text)
            if len(s) < n:
                return [s] if s else []
            return [s[i : i + n] for i in range(len(s) - n + 1)]
        out: list[str] = []
        for w in text.split():
            if len(w) < n:
                out.append(w)
            else:
                out.extend(w[i : i + n] for i in range(len(w) - n + 1))
        return out

    def config(self) -> dict[str, Any]:
        """Settings that rebuild this tokenizer."""
        return {"name": self.name, "n": self.n, "remove_spaces": self.remove_spaces, "lowercase": self.lowercase}
