"""Korean text analysis: tokenizers (and, later, IDF tables and synonyms)."""

from korag.text.tokenize import DEFAULT_TOKENIZER, Tokenizer, available_tokenizers, make_tokenizer

__all__ = ["DEFAULT_TOKENIZER", "Tokenizer", "available_tokenizers", "make_tokenizer"]
