"""A passage excerpt around a query's terms, the terms marked — what a results page shows.

Korean queries carry particles and endings ("한라산의 높이는?"), so the terms to mark are Kiwi's
content morphemes of the query (nouns, roots, numbers, Latin and Hanja words), matched in the
passage as substrings: "높이" marks "높이는" and "높이가" alike. The excerpt is returned as
segments (text, marked or not) rather than HTML, so whatever renders it escapes the text itself
and a passage can never inject markup.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CONTENT_TAGS = ("NNG", "NNP", "SL", "SH", "SN", "XR")


@dataclass(frozen=True, slots=True)
class Segment:
    """A run of an excerpt's text, marked when it is one of the query's terms."""

    text: str
    mark: bool = False


def query_terms(query: str) -> list[str]:
    """The query's content morphemes (longest first), without repeats."""
    from korag.text.morph import shared_kiwi

    terms = {t.form for t in shared_kiwi().tokenize(query) if t.tag in _CONTENT_TAGS and t.form.strip()}
    # a single Hangul syllable ("산", "안") matches inside too many words to be worth marking
    terms = {t for t in terms if len(t) > 1 or not ("가" <= t <= "힣")}
    return sorted(terms, key=lambda t: (-len(t), t))


def excerpt(text: str, terms: list[str], width: int = 240) -> list[Segment]:
    """About `width` characters of `text` around the first marked term (its start when none
    occurs), split into marked and unmarked segments."""
    text = " ".join(text.split())
    pattern = re.compile("|".join(re.escape(t) for t in terms), re.I) if terms else None
    first = pattern.search(text) if pattern else None
    start = 0 if first is None else max(0, first.start() - width // 3)
    end = min(len(text), start + width)
    window = text[start:end]
    segments: list[Segment] = [Segment("…")] if start > 0 else []
    pos = 0
    for m in pattern.finditer(window) if pattern else ():
        if m.start() > pos:
            segments.append(Segment(window[pos : m.start()]))
        segments.append(Segment(m.group(0), True))
        pos = m.end()
    if pos < len(window):
        segments.append(Segment(window[pos:]))
    if end < len(text):
        segments.append(Segment("…"))
    return segments
