"""The `Tokenizer` protocol and the registry that builds tokenizers from names or configs.

A tokenizer turns text into a list of string tokens. Lexical retrievers (BM25), IDF tables and
corpus statistics take any tokenizer; its `config()` is JSON and rebuilds an equal tokenizer
through `make_tokenizer`, so saved indexes and stage keys know exactly how text was split.

Spec strings accepted by `make_tokenizer`:
``bigram-stem`` (default), ``bigram``, ``ngram:3``, ``whitespace``, ``kiwi``, ``mecab``,
``hf:<local dir or hub id>``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from korag.errors import ConfigError

DEFAULT_TOKENIZER = "bigram-stem"


@runtime_checkable
class Tokenizer(Protocol):
    """Splits text into string tokens."""

    name: str

    def tokenize(self, text: str) -> list[str]:
        """Tokens of one text."""
        ...

    def tokenize_batch(self, texts: Sequence[str], *, show_progress: bool = False) -> list[list[str]]:
        """Tokens of many texts (implementations batch or parallelise where they can)."""
        ...

    def config(self) -> dict[str, Any]:
        """JSON-serialisable settings; `make_tokenizer(config)` rebuilds an equal tokenizer."""
        ...


class BaseTokenizer:
    """Shared plumbing: a per-text loop with a progress bar for `tokenize_batch`."""

    name = "base"

    def tokenize(self, text: str) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def tokenize_batch(self, texts: Sequence[str], *, show_progress: bool = False) -> list[list[str]]:
        """Tokens of many texts, one call of `tokenize` each."""
        if show_progress and len(texts) > 1000:
            from tqdm.auto import tqdm

            return [self.tokenize(t) for t in tqdm(texts, desc=f"tokenize ({self.name})", unit="text")]
        return [self.tokenize(t) for t in texts]

    def config(self) -> dict[str, Any]:
        """Settings that rebuild this tokenizer."""
        return {"name": self.name}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BaseTokenizer) and self.config() == other.config()

    def __hash__(self) -> int:
        return hash(repr(sorted(self.config().items())))


_REGISTRY: dict[str, Callable[..., Tokenizer]] = {}


def register_tokenizer(name: str, factory: Callable[..., Tokenizer]) -> None:
    """Make `factory` available to `make_tokenizer` under `name`."""
    _REGISTRY[name] = factory


def _load_builtins() -> None:
    if _REGISTRY:
        return
    from korag.text import hf, korean, morph, simple

    register_tokenizer("whitespace", simple.WhitespaceTokenizer)
    register_tokenizer("ngram", simple.CharNgramTokenizer)
    register_tokenizer("bigram", lambda **kw: simple.CharNgramTokenizer(n=2, **kw))
    register_tokenizer("bigram-stem", korean.BigramStemTokenizer)
    register_tokenizer("kiwi", morph.KiwiTokenizer)
    register_tokenizer("mecab", morph.MecabTokenizer)
    register_tokenizer("hf", hf.HFTokenizer)


def available_tokenizers() -> list[str]:
    """Names `make_tokenizer` understands."""
    _load_builtins()
    return sorted(_REGISTRY)


def _parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"ngram:3"`` → ("ngram", {"n": 3}); ``"hf:PATH"`` → ("hf", {"path": PATH})."""
    name, _, arg = spec.partition(":")
    if not arg:
        return name, {}
    if name == "ngram":
        if not arg.isdigit():
            raise ConfigError(f"tokenizer {spec!r}: expected ngram:<n>, e.g. ngram:3")
        return name, {"n": int(arg)}
    if name == "hf":
        return name, {"path": arg}
    raise ConfigError(f"tokenizer {spec!r}: {name!r} takes no ':' argument")


def _parse_config(spec: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A tokenizer's `config()` dict → (name, constructor arguments)."""
    kwargs = dict(spec)
    name = kwargs.pop("name", None)
    if not isinstance(name, str):
        raise ConfigError(f"tokenizer config needs a 'name': {spec!r}")
    return ("ngram" if name == "bigram" else name), kwargs  # bigram's config() is written as ngram, n=2


def make_tokenizer(spec: str | dict[str, Any] | Tokenizer | None = None, **overrides: Any) -> Tokenizer:
    """Build a tokenizer from a spec string, a config dict, or pass a tokenizer through.

    >>> make_tokenizer("bigram").tokenize("한국어 검색")
    ['한국', '국어', '어검', '검색']
    """
    if spec is None:
        spec = DEFAULT_TOKENIZER
    if not isinstance(spec, (str, dict)):
        if overrides:
            raise ConfigError("cannot apply overrides to an already built tokenizer")
        return spec
    _load_builtins()
    name, kwargs = _parse_spec(spec) if isinstance(spec, str) else _parse_config(spec)
    kwargs.update(overrides)
    if name not in _REGISTRY:
        raise ConfigError(f"unknown tokenizer {name!r}; choose from {', '.join(available_tokenizers())}")
    try:
        return _REGISTRY[name](**kwargs)
    except TypeError as exc:
        raise ConfigError(f"tokenizer {name!r}: {exc}") from None
