"""Morpheme tokenizers: Kiwi (kiwipiepy) and MeCab-ko (python-mecab-ko).

Both emit morpheme surface forms and can filter by part-of-speech tag prefix (Sejong-style
tags, shared by both analysers: NNG, NNP, VV, JKS, EF, SL, SN, SF, …). `include_pos` keeps only
tags starting with one of its prefixes; `exclude_pos` then drops tags starting with one of
its prefixes. MeCab's compound tags such as ``VV+EC`` are matched by their first part.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from korag.errors import ModelError
from korag.text.tokenize import BaseTokenizer


def _pos_filter(include: Sequence[str] | None, exclude: Sequence[str] | None):
    inc = tuple(include) if include else None
    exc = tuple(exclude) if exclude else None
    if inc is None and exc is None:
        return None

    @functools.lru_cache(maxsize=1024)
    def keep(tag: str) -> bool:
        head = tag.split("+", 1)[0]
        if inc is not None and not head.startswith(inc):
            return False
        return not (exc is not None and head.startswith(exc))

    return keep


class _MorphTokenizer(BaseTokenizer):
    def __init__(
        self,
        include_pos: Sequence[str] | None = None,
        exclude_pos: Sequence[str] | None = None,
        lowercase: bool = True,
    ) -> None:
        self.include_pos = list(include_pos) if include_pos else None
        self.exclude_pos = list(exclude_pos) if exclude_pos else None
        self.lowercase = lowercase
        self._keep = _pos_filter(self.include_pos, self.exclude_pos)

    def _select(self, pairs) -> list[str]:
        keep = self._keep
        forms = [form for form, tag in pairs if keep is None or keep(tag)]
        return [f.lower() for f in forms] if self.lowercase else forms

    def config(self) -> dict[str, Any]:
        """Settings that rebuild this tokenizer."""
        return {
            "name": self.name,
            "include_pos": self.include_pos,
            "exclude_pos": self.exclude_pos,
            "lowercase": self.lowercase,
        }


@functools.lru_cache(maxsize=4)
def _kiwi(model_type: str | None, num_workers: int | None):
    try:
        from kiwipiepy import Kiwi
    except ImportError as exc:  # pragma: no cover - a required dependency
        raise ModelError("kiwipiepy is not installed: pip install kiwipiepy") from exc
    kwargs: dict[str, Any] = {}
    if model_type:
        kwargs["model_type"] = model_type
    if num_workers is not None:
        kwargs["num_workers"] = num_workers
    return Kiwi(**kwargs)


def shared_kiwi():
    """The process's default Kiwi analyser (sentence splitting, spacing), built once."""
    return _kiwi(None, None)


class KiwiTokenizer(_MorphTokenizer):
    """Kiwi morphemes; `tokenize_batch` runs Kiwi's own worker threads over the whole batch."""

    name = "kiwi"

    def __init__(
        self,
        include_pos: Sequence[str] | None = None,
        exclude_pos: Sequence[str] | None = None,
        lowercase: bool = True,
        model_type: str | None = None,
        num_workers: int | None = None,
    ) -> None:
        super().__init__(include_pos, exclude_pos, lowercase)
        self.model_type = model_type
        self.num_workers = num_workers

    @property
    def kiwi(self):
        """The shared `kiwipiepy.Kiwi` instance (built once per process and settings)."""
        return _kiwi(self.model_type, self.num_workers)

    def tokenize(self, text: str) -> list[str]:
        """Morpheme forms of one text."""
        return self._select((t.form, t.tag) for t in self.kiwi.tokenize(text))

    def tokenize_batch(self, texts: Sequence[str], *, show_progress: bool = False) -> list[list[str]]:
        """Morpheme forms of many texts, analysed by Kiwi's thread pool."""
        if not texts:
            return []
        if self.num_workers == -1:  # single-thread mode has no batch API
            return super().tokenize_batch(texts, show_progress=show_progress)
        results = self.kiwi.tokenize(list(texts))
        if show_progress and len(texts) > 1000:
            from tqdm.auto import tqdm

            results = tqdm(results, total=len(texts), desc="tokenize (kiwi)", unit="text")
        return [self._select((t.form, t.tag) for t in toks) for toks in results]

    def config(self) -> dict[str, Any]:
        """Settings that rebuild this tokenizer."""
        return {**super().config(), "model_type": self.model_type, "num_workers": self.num_workers}


@functools.lru_cache(maxsize=1)
def _mecab():
    try:
        import mecab
    except ImportError as exc:
        raise ModelError("python-mecab-ko is not installed: pip install python-mecab-ko") from exc
    try:
        return mecab.MeCab()
    except Exception as exc:  # the binding raises plain exceptions for a missing dictionary
        raise ModelError(f"MeCab-ko could not start (is its dictionary installed?): {exc}") from exc


class MecabTokenizer(_MorphTokenizer):
    """MeCab-ko morphemes (python-mecab-ko with its bundled mecab-ko-dic)."""

    name = "mecab"

    def tokenize(self, text: str) -> list[str]:
        """Morpheme surfaces of one text."""
        return self._select(_mecab().pos(text))
