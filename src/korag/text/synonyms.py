"""A Korean–English synonym dictionary whose entries keep their evidence.

Each `SynonymEntry` records which sources support a pair (bracket glosses in a corpus, embedding
mutual neighbours, an LLM yes/no check, a hand-made list) and their scores, so a dictionary can
be filtered or inspected later; mining the candidates is `korag.synth.synonyms`.

`SynonymDict` looks terms up both ways and finds its surface forms inside a query (Korean
attaches particles: ``광합성은`` must match ``광합성``); `korag.retrieval.expansion` uses it for
query expansion. Files are JSON: ``{"format": "korag-synonyms", "version": 1, "entries": [...]}``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from korag import atomic
from korag.errors import ConfigError, DataError
from korag.util.reading import load_json

SOURCES = ("pattern", "embedding", "llm", "manual")
FORMAT = "korag-synonyms"
VERSION = 1

# -- entries --------------------------------------------------------------------------------------


@dataclass
class SynonymEntry:
    """One Korean–English pair and the evidence for it.

    `scores` keys: ``pattern`` (times the pair was seen glossed in brackets), ``cosine``
    (embedding similarity), ``llm`` (1.0 the model said yes, 0.0 it said no)."""

    korean: str
    english: str
    sources: tuple[str, ...] = ()
    scores: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.korean = " ".join(self.korean.split())
        self.english = " ".join(self.english.split())
        unknown = set(self.sources) - set(SOURCES)
        if unknown:
            raise ConfigError(f"unknown synonym source(s) {sorted(unknown)}; choose from {', '.join(SOURCES)}")
        self.sources = tuple(sorted(set(self.sources)))

    @property
    def key(self) -> tuple[str, str]:
        """Identity of the pair: English compared case-insensitively (``Python`` = ``python``)."""
        return self.korean, self.english.casefold()

    @property
    def rejected(self) -> bool:
        """Whether an LLM check said the two are not the same term."""
        return self.scores.get("llm") == 0.0

    @property
    def weight(self) -> float:
        """How much to trust the pair, in [0, 1]: 0 when rejected by the LLM; 1 when glossed in
        the corpus, listed by hand or confirmed by the LLM; otherwise its cosine similarity."""
        if self.rejected:
            return 0.0
        if {"pattern", "manual"} & set(self.sources) or self.scores.get("llm") == 1.0:
            return 1.0
        return min(1.0, max(0.0, self.scores.get("cosine", 0.0)))

    def merged(self, other: SynonymEntry) -> SynonymEntry:
        """Both entries' evidence: pattern counts add up, the larger cosine wins, and the
        `other` entry's LLM verdict (the newer check) replaces this one's."""
        scores = dict(self.scores)
        for name, value in other.scores.items():
            if name == "pattern":
                scores[name] = scores.get(name, 0.0) + value
            elif name == "cosine":
                scores[name] = max(scores.get(name, -1.0), value)
            else:
                scores[name] = value
        return SynonymEntry(self.korean, self.english, self.sources + other.sources, scores)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"korean": self.korean, "english": self.english, "sources": list(self.sources), "scores": self.scores}


def _entry_from_dict(obj: Any, source: str, index: int) -> SynonymEntry:
    record = f"entry {index + 1}"
    if not isinstance(obj, dict):
        raise DataError(source, f"expected an object, got {type(obj).__name__}", record=record)
    values: dict[str, Any] = {}
    for name in ("korean", "english"):
        value = obj.get(name)
        if not isinstance(value, str) or not value.strip():
            raise DataError(source, f"must be a non-empty string, got {value!r}", record=record, field=name)
        values[name] = value
    sources = obj.get("sources", [])
    if not isinstance(sources, list) or not all(isinstance(s, str) and s in SOURCES for s in sources):
        message = f"must be a list drawn from {', '.join(SOURCES)}; got {sources!r}"
        raise DataError(source, message, record=record, field="sources")
    scores = obj.get("scores", {})
    if not isinstance(scores, dict):
        raise DataError(source, f"must be an object of numbers, got {scores!r}", record=record, field="scores")
    for name, value in scores.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            message = f"score {name!r} must be a finite number, got {value!r}"
            raise DataError(source, message, record=record, field="scores")
    return SynonymEntry(values["korean"], values["english"], tuple(sources), {k: float(v) for k, v in scores.items()})


# -- the dictionary -----------------------------------------------------------------------------

_HANGUL = re.compile(r"[가-힣]")
_LATIN_NEIGHBOUR = "A-Za-z0-9"


class SynonymDict:
    """Korean–English pairs with lookup both ways; adding a pair that exists merges the evidence."""

    def __init__(self, entries: Iterable[SynonymEntry] = ()) -> None:
        self._entries: dict[tuple[str, str], SynonymEntry] = {}
        self._lookup: _Lookup | None = None  # built on first use, dropped on every change
        for e in entries:
            self.add(e)

    def add(self, entry: SynonymEntry) -> None:
        """Add a pair, merging with an existing entry for the same pair."""
        old = self._entries.get(entry.key)
        self._entries[entry.key] = old.merged(entry) if old else entry
        self._lookup = None

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[SynonymEntry]:
        return iter(self._entries.values())

    def __contains__(self, pair: object) -> bool:
        if not (isinstance(pair, tuple) and len(pair) == 2):
            return False
        return (pair[0], str(pair[1]).casefold()) in self._entries

    def __repr__(self) -> str:
        return f"SynonymDict({len(self)} entries)"

    def get(self, korean: str, english: str) -> SynonymEntry | None:
        """The entry for a pair, if any."""
        return self._entries.get((korean, english.casefold()))

    def merge(self, other: Iterable[SynonymEntry]) -> SynonymDict:
        """A new dictionary with the entries of both (`other`'s evidence merged into this one's)."""
        return SynonymDict([*self, *other])

    def filter(self, *, min_weight: float = 0.0, sources: Iterable[str] | None = None) -> SynonymDict:
        """Entries with `weight` ≥ `min_weight` (rejected pairs never pass a positive threshold)
        and, if given, at least one of `sources`."""
        wanted = set(sources) if sources is not None else None
        keep = [e for e in self if e.weight >= min_weight and (wanted is None or wanted & set(e.sources))]
        return SynonymDict(keep)

    def expansions(self, term: str) -> list[tuple[str, float]]:
        """Synonyms of `term` in the other language with their `weight`, best first: a Korean
        term gives English ones and vice versa (English matched case-insensitively). Pairs
        rejected by the LLM are left out."""
        t = " ".join(term.split())
        lookup = self._require_lookup()
        if _HANGUL.search(t):
            found = [(e.english, e.weight) for e in lookup.by_korean.get(t, [])]
        else:
            found = [(e.korean, e.weight) for e in lookup.by_english.get(t.casefold(), [])]
        return sorted(found, key=lambda p: (-p[1], p[0]))

    def find(self, text: str) -> list[tuple[int, int, str]]:
        """(start, end, surface form) of dictionary terms occurring in `text`, non-overlapping
        (the longest at each position). Korean terms match as substrings, since particles attach
        (``광합성은``); English terms case-insensitively and not inside a longer Latin word
        (``AI`` does not match in ``said``)."""
        finder = self._require_lookup().finder
        if finder is None:
            return []
        return [(m.start(), m.end(), m.group(0)) for m in finder.finditer(text)]

    def _require_lookup(self) -> _Lookup:
        if self._lookup is None:
            self._lookup = _Lookup.build(self)
        return self._lookup

    # -- files --------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the dictionary as JSON, atomically."""
        entries = sorted(self, key=lambda e: (e.korean, e.english.casefold()))
        atomic.write_json(path, {"format": FORMAT, "version": VERSION, "entries": [e.to_dict() for e in entries]})

    @classmethod
    def load(cls, path: str | Path) -> SynonymDict:
        """Read a dictionary written by `save`; a malformed file is a `DataError` naming the
        entry (1-based) and field."""
        p = Path(path)
        obj = load_json(p)
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise DataError(str(p), f"not a korag synonym dictionary (expected an object with format {FORMAT!r})")
        if obj.get("version") != VERSION:
            raise DataError(str(p), f"unsupported version {obj.get('version')!r} (this korag reads {VERSION})")
        entries = obj.get("entries")
        if not isinstance(entries, list):
            raise DataError(str(p), "expected a list", field="entries")
        return cls(_entry_from_dict(e, str(p), i) for i, e in enumerate(entries))


@dataclass
class _Lookup:
    """Indexes of a `SynonymDict` for lookups and for finding its terms in text (usable pairs only)."""

    by_korean: dict[str, list[SynonymEntry]]
    by_english: dict[str, list[SynonymEntry]]
    finder: re.Pattern[str] | None

    @classmethod
    def build(cls, entries: Iterable[SynonymEntry]) -> _Lookup:
        by_korean: dict[str, list[SynonymEntry]] = {}
        by_english: dict[str, list[SynonymEntry]] = {}
        surfaces: dict[str, str] = {}  # folded English → one spelling
        for e in entries:
            if e.weight <= 0:
                continue
            by_korean.setdefault(e.korean, []).append(e)
            by_english.setdefault(e.english.casefold(), []).append(e)
            surfaces.setdefault(e.english.casefold(), e.english)
        # longest first: a regex alternation takes the first alternative that matches
        en = "|".join(re.escape(s) for s in sorted(surfaces.values(), key=lambda s: (-len(s), s)))
        ko = "|".join(re.escape(s) for s in sorted(by_korean, key=lambda s: (-len(s), s)))
        parts = []
        if en:
            parts.append(rf"(?<![{_LATIN_NEIGHBOUR}])(?:{en})(?![{_LATIN_NEIGHBOUR}])")
        if ko:
            parts.append(f"(?:{ko})")
        finder = re.compile("|".join(parts), re.IGNORECASE) if parts else None
        return cls(by_korean, by_english, finder)
