"""Splitting long documents into passages: sentences packed up to a token budget, with overlap.

Sentences come from Kiwi's sentence splitter (it handles Korean sentence endings without
punctuation, quotations and numbers with dots) or, where speed matters more, a regular
expression. Tokens are counted with any korag tokenizer: whitespace words by default, or the
subword tokenizer of the model that will encode the passages, so chunks fit its window.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from korag.text.tokenize import Tokenizer, make_tokenizer

if TYPE_CHECKING:  # the schema needs numpy; settings (ChunkConfig) are read at CLI start-up without it
    from korag.data.schema import Corpus, Document


class ChunkConfig(BaseModel):
    """How documents are cut into passages."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_tokens: int = Field(200, gt=0, description="token budget of a passage")
    overlap_tokens: int = Field(40, ge=0, description="tokens of trailing sentences repeated in the next passage")
    splitter: Literal["kiwi", "kiwi-lines", "regex"] = Field(
        "kiwi", description="kiwi: sentences across wrapped lines; kiwi-lines: a line break ends a sentence; regex"
    )
    tokenizer: str = Field("whitespace", description="tokenizer spec used to count tokens")

    @model_validator(mode="after")
    def _overlap_below_budget(self) -> ChunkConfig:
        if self.overlap_tokens >= self.max_tokens:
            raise ValueError("overlap_tokens must be smaller than max_tokens")
        return self


@dataclass(frozen=True, slots=True)
class Span:
    """A passage as character offsets into its source text."""

    start: int
    end: int


# A sentence ends at . ! ? … or their full-width forms (plus closing quotes/brackets), or a
# line break, followed by whitespace.
_SENT_END = re.compile(r"([.!?…。！？][\"'”’)\]」』]?)\s+|\n+")


def split_sentences_regex(text: str) -> list[Span]:
    """Sentence spans by punctuation and line breaks (fast, language-agnostic)."""
    spans: list[Span] = []
    start = 0
    for m in _SENT_END.finditer(text):
        end = m.end(1) if m.group(1) else m.start()
        if text[start:end].strip():
            spans.append(Span(start, end))
        start = m.end()
    if start < len(text) and text[start:].strip():
        spans.append(Span(start, len(text.rstrip())))
    return spans


# A line that starts a list item, or follows a short line that ends no sentence (a heading),
# begins a new unit; other single line breaks are inside a sentence (wrapped text).
_LIST_ITEM = re.compile(r"^\s*([-•●○■□▪▶◆◇*·#]|\(?\d{1,3}[.)]|[①-⑳])\s")
_ENDS_SENTENCE = re.compile(r"[.!?…。！？:;\"'”’)\]」』》]\s*$")


def _units(text: str) -> list[tuple[int, int]]:
    """(start, end) of the runs of `text` a sentence may not cross: blank lines, list items and
    headings (a line that ends no sentence and is much shorter than the next) separate them; a
    line break inside a wrapped paragraph does not."""
    units: list[tuple[int, int]] = []
    start: int | None = None
    prev: tuple[int, int] | None = None
    for m in re.finditer(r"[^\n]+", text):
        a, b = m.start(), m.end()
        if prev is None:
            start = a
        else:
            last = text[prev[0] : prev[1]].strip()
            blank = "\n" in text[prev[1] + 1 : a]
            heading = bool(last) and len(last) < 0.6 * (b - a) and not _ENDS_SENTENCE.search(last)
            if blank or heading or _LIST_ITEM.match(m.group()):
                units.append((start, prev[1]))  # type: ignore[arg-type]
                start = a
        prev = (a, b)
    if prev is not None and start is not None:
        units.append((start, prev[1]))
    return units


def split_sentences_kiwi(text: str) -> list[Span]:
    """Sentence spans from Kiwi's splitter, across the line breaks of wrapped text (a line
    break inside a paragraph is read as a space; blank lines, headings and list items end a
    sentence)."""
    from korag.text.morph import shared_kiwi

    kiwi = shared_kiwi()
    spans: list[Span] = []
    for start, end in _units(text):
        unit = text[start:end].replace("\n", " ")  # same length: offsets stay valid
        for s in kiwi.split_into_sents(unit):
            if unit[s.start : s.end].strip():
                spans.append(Span(start + s.start, start + s.end))
    return spans


def split_sentences_kiwi_lines(text: str) -> list[Span]:
    """Kiwi's sentences within each line: every line break ends a sentence (for one sentence,
    or one record, per line; what korag did for every text before)."""
    from korag.text.morph import shared_kiwi

    kiwi = shared_kiwi()
    spans: list[Span] = []
    for line in re.finditer(r"[^\n]+", text):
        base = line.start()
        for s in kiwi.split_into_sents(line.group()):
            if line.group()[s.start : s.end].strip():
                spans.append(Span(base + s.start, base + s.end))
    return spans


SPLITTERS = {"kiwi": split_sentences_kiwi, "kiwi-lines": split_sentences_kiwi_lines, "regex": split_sentences_regex}


def split_sentences(text: str, splitter: str = "kiwi") -> list[Span]:
    """Sentence spans of `text` with the named splitter (``kiwi``, ``kiwi-lines`` or ``regex``)."""
    if splitter not in SPLITTERS:
        raise ValueError(f"unknown sentence splitter {splitter!r}")
    return SPLITTERS[splitter](text)


def _split_long(text: str, span: Span, count, max_tokens: int, overlap: int) -> list[tuple[Span, int]]:
    """Cut one over-long sentence at word boundaries into pieces within the budget."""
    words = [(m.start() + span.start, m.end() + span.start) for m in re.finditer(r"\S+", text[span.start : span.end])]
    pieces: list[tuple[Span, int]] = []
    i = 0
    while i < len(words):
        j, used = i, 0
        while j < len(words):
            c = count(text[words[j][0] : words[j][1]])
            if used + c > max_tokens and j > i:
                break
            used += c
            j += 1
        pieces.append((Span(words[i][0], words[j - 1][1]), used))
        if j >= len(words):
            break
        # step back over trailing words worth `overlap` tokens, but always advance
        back, k = 0, j
        while k - 1 > i and back + count(text[words[k - 1][0] : words[k - 1][1]]) <= overlap:
            k -= 1
            back += count(text[words[k][0] : words[k][1]])
        i = k
    return pieces


def chunk_spans(text: str, config: ChunkConfig, tokenizer: Tokenizer | None = None) -> list[Span]:
    """Passages of `text`: whole sentences packed up to `max_tokens`, consecutive passages
    sharing trailing sentences worth up to `overlap_tokens`."""
    tok = tokenizer or make_tokenizer(config.tokenizer)

    def count(s: str) -> int:
        return len(tok.tokenize(s))

    units: list[tuple[Span, int]] = []
    for sent in split_sentences(text, config.splitter):
        n = count(text[sent.start : sent.end])
        if n > config.max_tokens:
            units.extend(_split_long(text, sent, count, config.max_tokens, config.overlap_tokens))
        elif n:
            units.append((sent, n))
    chunks: list[Span] = []
    i = 0
    while i < len(units):
        j, used = i, 0
        while j < len(units) and (j == i or used + units[j][1] <= config.max_tokens):
            used += units[j][1]
            j += 1
        chunks.append(Span(units[i][0].start, units[j - 1][0].end))
        if j >= len(units):
            break
        k, back = j, 0
        while k - 1 > i and back + units[k - 1][1] <= config.overlap_tokens:
            k -= 1
            back += units[k][1]
        i = k
    return chunks


def chunk_document(doc: Document, config: ChunkConfig, tokenizer: Tokenizer | None = None) -> list[Document]:
    """Passages of one document, ids ``<doc id>#<n>``; meta records the source id and offsets."""
    from korag.data.schema import Document

    spans = chunk_spans(doc.text, config, tokenizer)
    if len(spans) <= 1 and (not spans or (spans[0].start, spans[0].end) == (0, len(doc.text))):
        return [doc]
    return [
        Document(
            id=f"{doc.id}#{n}",
            text=doc.text[s.start : s.end],
            title=doc.title,
            meta={**doc.meta, "source_id": doc.id, "chunk": n, "char_start": s.start, "char_end": s.end},
        )
        for n, s in enumerate(spans)
    ]


def chunk_corpus(corpus: Corpus, config: ChunkConfig, *, show_progress: bool = False) -> Corpus:
    """Every document of `corpus` cut into passages (short documents stay whole)."""
    from tqdm.auto import tqdm

    from korag.data.schema import Corpus

    tok = make_tokenizer(config.tokenizer)
    docs: list[Document] = []
    for doc in tqdm(corpus, total=len(corpus), desc="chunk", unit="doc", disable=not show_progress):
        docs.extend(chunk_document(doc, config, tok))
    return Corpus.from_documents(docs, name=corpus.name)


def passages_containing(spans: Sequence[Span], start: int, end: int) -> list[int]:
    """Indices of the passages that fully contain [start, end), else those that overlap it."""
    inside = [i for i, s in enumerate(spans) if s.start <= start and end <= s.end]
    if inside:
        return inside
    return [i for i, s in enumerate(spans) if s.start < end and start < s.end]
