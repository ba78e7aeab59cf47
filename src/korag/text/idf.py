"""Document frequencies and IDF over a model tokenizer's vocabulary, and OpenSearch's ``idf.json``.

IDF here is the BM25 form OpenSearch's inference-free sparse models use:
``ln(1 + (N − df + 0.5) / (df + 0.5))``. Tokens that never occur get the weight of df = 0 (the
largest), so a query term unseen in the corpus is not silently dropped.

``idf.json`` maps a token string to its weight. Within a korag sparse model the strings are the
tokenizer's vocabulary pieces (``▁서울``), which `sentence-transformers`' `SparseStaticEmbedding`
reads back exactly; the OpenSearch export rewrites them as ML Commons decodes token ids.

`term_idf` is the same weight over the string tokens of any korag `Tokenizer` (bigram-stem,
Kiwi, …), kept as a ``{term: weight}`` dict and saved in the same JSON shape
(`write_term_idf` / `read_term_idf`); `korag.text.trends.boost_weights` raises the weight of
trending or hand-picked terms in such a table.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from korag import atomic
from korag.errors import DataError, ModelError
from korag.util.reading import load_json


def bm25_idf(df: np.ndarray, n_docs: int) -> np.ndarray:
    """``ln(1 + (N − df + 0.5) / (df + 0.5))`` elementwise (float32)."""
    df = np.asarray(df, dtype=np.float64)
    return np.log1p((n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)


def token_document_frequencies(
    tokenizer,
    texts: Iterable[str],
    *,
    vocab_size: int | None = None,
    batch_size: int = 512,
    show_progress: bool = False,
    total: int | None = None,
) -> tuple[np.ndarray, int]:
    """(df per token id, number of texts) under a Hugging Face tokenizer; special tokens excluded."""
    size = vocab_size or len(tokenizer)
    df = np.zeros(size, dtype=np.int64)
    special = np.asarray(sorted(set(tokenizer.all_special_ids)), dtype=np.int64)
    n = 0
    batch: list[str] = []

    def flush() -> None:
        nonlocal n
        if not batch:
            return
        enc = tokenizer(batch, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
        for ids in enc:
            u = np.unique(np.asarray(ids, dtype=np.int64))
            if len(u) and u[-1] >= size:
                raise ModelError(f"tokenizer produced id {u[-1]} beyond the vocabulary size {size}")
            df[u] += 1
        n += len(batch)
        batch.clear()

    for text in tqdm(texts, total=total, desc="document frequencies", unit="doc", disable=not show_progress):
        batch.append(text)
        if len(batch) >= batch_size:
            flush()
    flush()
    if len(special):
        df[special[special < size]] = 0
    return df, n


def corpus_idf(tokenizer, texts: Sequence[str], *, vocab_size: int | None = None, show_progress: bool = False):
    """IDF weights per token id over `texts` (an empty corpus is an error, not all-equal weights)."""
    if not len(texts):
        raise DataError(None, "cannot compute IDF over an empty corpus")
    df, n = token_document_frequencies(
        tokenizer, texts, vocab_size=vocab_size, show_progress=show_progress, total=len(texts)
    )
    weights = bm25_idf(df, n)
    special = [i for i in tokenizer.all_special_ids if i < len(weights)]
    weights[special] = 0.0
    return weights, df


def write_idf_json(path: str | Path, weights: np.ndarray, tokens: Sequence[str], *, min_weight: float = 0.0) -> int:
    """Write ``{token: weight}`` for every token whose weight exceeds `min_weight`; returns entries.

    Where two ids share one string (possible after decoding), the larger weight is kept."""
    table: dict[str, float] = {}
    for tok, w in zip(tokens, weights.tolist(), strict=True):
        if tok and w > min_weight:
            table[tok] = max(w, table.get(tok, 0.0))
    atomic.write_text(path, json.dumps(table, ensure_ascii=False))
    return len(table)


def read_idf_json(path: str | Path, tokenizer, *, vocab_size: int | None = None, default: float = 0.0) -> np.ndarray:
    """Weights per token id from an ``idf.json`` of vocabulary pieces; unknown pieces are an error."""
    p = Path(path)
    try:
        table = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{p}: no such idf.json") from None
    except json.JSONDecodeError as exc:
        raise DataError(str(p), f"not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(table, dict):
        raise DataError(str(p), "expected an object mapping token strings to weights")
    vocab = tokenizer.get_vocab()
    size = vocab_size or len(tokenizer)
    weights = np.full(size, default, dtype=np.float32)
    missing = [t for t in table if t not in vocab]
    if missing:
        shown = ", ".join(repr(t) for t in missing[:5])
        raise DataError(str(p), f"{len(missing)} token(s) are not in the model's tokenizer vocabulary, e.g. {shown}")
    for tok, w in table.items():
        if not isinstance(w, int | float) or not np.isfinite(w):
            raise DataError(str(p), f"token {tok!r}: weight must be a finite number, got {w!r}")
        weights[vocab[tok]] = float(w)
    return weights


# -- IDF over korag tokenizers' string tokens --------------------------------------------------


def term_document_frequencies(token_lists: Iterable[Sequence[str]]) -> tuple[Counter[str], int]:
    """(documents containing each term, number of documents); a repeated term counts once per document."""
    df: Counter[str] = Counter()
    n = 0
    for tokens in token_lists:
        df.update(set(tokens))
        n += 1
    return df, n


def term_idf(token_lists: Iterable[Sequence[str]]) -> dict[str, float]:
    """BM25 IDF (`bm25_idf`) of every term of tokenised documents, e.g. from
    ``make_tokenizer("bigram-stem").tokenize_batch(texts)``."""
    df, n = term_document_frequencies(token_lists)
    if n == 0:
        raise DataError(None, "cannot compute IDF over an empty corpus")
    terms = list(df)
    weights = bm25_idf(np.fromiter((df[t] for t in terms), dtype=np.int64, count=len(terms)), n)
    return dict(zip(terms, weights.tolist(), strict=True))


def write_term_idf(path: str | Path, weights: Mapping[str, float]) -> None:
    """Write ``{term: weight}`` as JSON, atomically (terms sorted so files diff cleanly)."""
    atomic.write_json(path, {t: float(weights[t]) for t in sorted(weights)}, indent=None)


def read_term_idf(path: str | Path) -> dict[str, float]:
    """Read a ``{term: weight}`` JSON table; a malformed file is a `DataError` naming the term."""
    p = Path(path)
    table = load_json(p)
    if not isinstance(table, dict):
        raise DataError(str(p), f"expected an object mapping terms to weights, got {type(table).__name__}")
    out: dict[str, float] = {}
    for term, w in table.items():
        # bool is an int subclass; true/false in an IDF table is a mistake, not a weight
        if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w):
            raise DataError(str(p), f"weight must be a finite number, got {w!r}", record=f"term {term!r}")
        if not term:
            raise DataError(str(p), "empty term", record="term ''")
        out[term] = float(w)
    return out
