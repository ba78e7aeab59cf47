"""Filters for synthetic queries, each switchable and counted.

Applied in a fixed order, cheapest first, so the expensive round-trip check only sees queries
that survived the others: length → dedup → copy → language → logprob → round-trip.

- *copy*: a query that repeats a long stretch of its passage verbatim is a copied sentence or the
  title, not a question; measured as the longest common substring over the query's length.
  Inverse-cloze and keyphrase queries copy by design and are exempt.
- *logprob*: InPars' filter, keeping the most probable fraction of each LLM method's queries
  (a fraction, not a threshold, because log-probability scales differ between models).
- *round-trip*: Promptagator's consistency check — keep a query only if a retriever ranks its
  source passage within the top k.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from difflib import SequenceMatcher

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from korag.data.synthetic import SyntheticSet
from korag.errors import ConfigError
from korag.retrieval.base import Retriever

FILTER_ORDER = ("length", "dedup", "copy", "language", "logprob", "roundtrip")
_COPY_EXEMPT = ("ict", "keyphrase", "human")
_NORM = re.compile(r"[\W_]+", re.U)
_HANGUL = re.compile(r"[\uac00-\ud7a3\u3131-\u318e]")
_LETTER = re.compile(r"[^\W\d_]", re.U)


class FilterConfig(BaseModel):
    """Which filters run and their thresholds (``enabled`` lists the switched-on filters)."""

    model_config = ConfigDict(extra="forbid")

    enabled: list[str] = Field(default_factory=lambda: list(FILTER_ORDER))
    min_chars: int = Field(4, ge=1)
    max_chars: int = Field(200, ge=1)
    near_duplicate: float = Field(0.8, gt=0, le=1, description="char-bigram Jaccard within a document")
    max_copy: float = Field(0.75, gt=0, le=1, description="longest copied substring / query length")
    min_hangul: float = Field(0.3, ge=0, le=1, description="share of letters that are Hangul")
    logprob_keep: float = Field(0.8, gt=0, le=1, description="fraction kept per LLM method")
    roundtrip_k: int = Field(5, ge=1)

    def model_post_init(self, __context) -> None:
        unknown = [f for f in self.enabled if f not in FILTER_ORDER]
        if unknown:
            raise ConfigError(f"unknown filter(s) {', '.join(unknown)}; choose from {', '.join(FILTER_ORDER)}")


@dataclass
class FilterReport:
    """Queries in and out of every filter, per generation method."""

    generated: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, dict[str, int]] = field(default_factory=dict)  # filter → method → count
    kept: dict[str, int] = field(default_factory=dict)

    def rows(self) -> list[tuple[str, dict[str, int]]]:
        """(step, count per method) from generated through each filter to kept."""
        out = [("generated", dict(self.generated))]
        remaining = dict(self.generated)
        for name, by_method in self.dropped.items():
            remaining = {m: remaining.get(m, 0) - by_method.get(m, 0) for m in remaining}
            out.append((f"after {name}", dict(remaining)))
        return out

    def to_dict(self) -> dict[str, object]:
        """JSON-ready counts."""
        return {"generated": self.generated, "dropped": self.dropped, "kept": self.kept}


def _norm(text: str) -> str:
    return _NORM.sub("", text.lower())


def _bigrams(text: str) -> set[str]:
    t = _norm(text)
    return {t[i : i + 2] for i in range(len(t) - 1)} or {t}


def length_ok(s: SyntheticSet, cfg: FilterConfig) -> list[bool]:
    """Query length within [min_chars, max_chars]."""
    return [cfg.min_chars <= len(q.text.strip()) <= cfg.max_chars for q in s.queries]


def dedup_ok(s: SyntheticSet, cfg: FilterConfig) -> list[bool]:
    """First of each normalised duplicate anywhere, and of near-duplicates of the same document."""
    seen: set[str] = set()
    kept_per_doc: dict[str, list[set[str]]] = {}
    keep = []
    for q in s.queries:
        key = _norm(q.text)
        grams = _bigrams(q.text)
        near = any(
            len(grams & g) / max(1, len(grams | g)) >= cfg.near_duplicate for g in kept_per_doc.get(q.doc_id, ())
        )
        ok = key not in seen and not near
        keep.append(ok)
        if ok:
            seen.add(key)
            kept_per_doc.setdefault(q.doc_id, []).append(grams)
    return keep


def copy_ratio(query: str, passage: str) -> float:
    """Longest substring of the (normalised) query found verbatim in the passage, over its length."""
    a, b = _norm(query), _norm(passage)
    if not a:
        return 0.0
    m = SequenceMatcher(None, a, b, autojunk=False).find_longest_match(0, len(a), 0, len(b))
    return m.size / len(a)


def copy_ok(s: SyntheticSet, cfg: FilterConfig) -> list[bool]:
    """Not mostly a verbatim copy of the passage or its title (ICT/keyphrase exempt)."""
    out = []
    for q in s.queries:
        if q.method in _COPY_EXEMPT:
            out.append(True)
            continue
        doc = s.corpus.get(q.doc_id)
        out.append(copy_ratio(q.text, f"{doc.title}\n{doc.text}") < cfg.max_copy)
    return out


def hangul_share(text: str) -> float:
    """Share of letters that are Hangul (0 for text without letters)."""
    letters = _LETTER.findall(text)
    return sum(1 for c in letters if _HANGUL.match(c)) / len(letters) if letters else 0.0


def language_ok(s: SyntheticSet, cfg: FilterConfig) -> list[bool]:
    """Korean enough: at least `min_hangul` of the letters are Hangul."""
    return [hangul_share(q.text) >= cfg.min_hangul for q in s.queries]


def logprob_ok(s: SyntheticSet, cfg: FilterConfig) -> list[bool]:
    """The most probable `logprob_keep` of each LLM method's queries; unscored queries pass."""
    keep = [True] * len(s)
    by_method: dict[str, list[int]] = {}
    for i, q in enumerate(s.queries):
        if q.logprob is not None and q.method.startswith("llm-"):
            by_method.setdefault(q.method, []).append(i)
    for idx in by_method.values():
        lps = np.array([s.queries[i].logprob for i in idx], dtype=np.float64)
        cut = np.quantile(lps, 1 - cfg.logprob_keep)
        for i, lp in zip(idx, lps, strict=True):
            keep[i] = bool(lp >= cut)
    return keep


def roundtrip_ok(s: SyntheticSet, cfg: FilterConfig, retriever: Retriever) -> list[bool]:
    """The source passage is within the retriever's top `roundtrip_k` for the query."""
    if not len(s):
        return []
    rs = s.to_retrieval_set()
    ranking = retriever.search(rs.queries, k=cfg.roundtrip_k)
    found = {qid: {d for d, _ in hits} for qid, hits in ranking.items()}
    return [q.doc_id in found.get(q.id, set()) for q in s.queries]


def apply_filters(
    s: SyntheticSet, cfg: FilterConfig, *, retriever: Retriever | None = None
) -> tuple[SyntheticSet, FilterReport]:
    """Run the enabled filters in order; round-trip needs a `retriever` indexed on the corpus."""
    if "roundtrip" in cfg.enabled and retriever is None:
        raise ConfigError("the round-trip filter needs a retriever indexed on the corpus")
    steps: dict[str, Callable[[SyntheticSet], list[bool]]] = {
        "length": lambda x: length_ok(x, cfg),
        "dedup": lambda x: dedup_ok(x, cfg),
        "copy": lambda x: copy_ok(x, cfg),
        "language": lambda x: language_ok(x, cfg),
        "logprob": lambda x: logprob_ok(x, cfg),
        "roundtrip": lambda x: roundtrip_ok(x, cfg, retriever),  # type: ignore[arg-type]
    }
    report = FilterReport(generated=s.counts_by_method())
    current = s
    for name in FILTER_ORDER:
        if name not in cfg.enabled:
            continue
        keep = steps[name](current)
        dropped: dict[str, int] = {}
        for q, k in zip(current.queries, keep, strict=True):
            if not k:
                dropped[q.method] = dropped.get(q.method, 0) + 1
        report.dropped[name] = dropped
        current = current.filter(keep)
    report.kept = current.counts_by_method()
    return current, report
