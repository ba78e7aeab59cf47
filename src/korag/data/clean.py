"""Text cleaning: HTML to plain text, and Unicode / whitespace normalisation.

HTML is parsed with the standard library's `html.parser`, which tolerates the broken markup
found in crawled pages and needs no extra dependency. Script, style and similar elements are
dropped with their content; block elements become line breaks; entities are decoded.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from dataclasses import dataclass, field
from html.parser import HTMLParser

# Elements whose content is never visible text.
_SKIP = frozenset({"script", "style", "noscript", "template", "head", "svg", "math", "iframe", "object"})
# Elements that start a new line of text.
_BLOCK = frozenset(
    {
        "address",
        "article",
        "aside",
        "blockquote",
        "br",
        "caption",
        "dd",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "li",
        "main",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "table",
        "tbody",
        "thead",
        "tfoot",
        "tr",
        "ul",
    }
)
_CELL = frozenset({"td", "th"})
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"})

# Zero-width and BOM characters carry no text; odd spaces become plain spaces.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))
_SPACES = re.compile(r"[ \t\f\v\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_BLANK_LINES = re.compile(r"\s*\n\s*")


def normalize_text(text: str, *, keep_newlines: bool = False) -> str:
    """NFC-normalise (so decomposed Hangul jamo compose), drop invisible characters, collapse spaces.

    With `keep_newlines`, line breaks survive (collapsed to one); otherwise all whitespace
    becomes single spaces.
    """
    text = unicodedata.normalize("NFC", text).translate(_INVISIBLE)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if keep_newlines:
        text = _SPACES.sub(" ", text)
        return _BLANK_LINES.sub("\n", text).strip()
    return " ".join(text.split())


@dataclass
class CleanedHTML:
    """Plain text extracted from HTML, with anchors mapping text offsets back to the source."""

    text: str
    # Parallel, increasing lists: text offset → source (HTML) offset at the start of each text run.
    text_offsets: list[int] = field(default_factory=list)
    source_offsets: list[int] = field(default_factory=list)

    def to_text_offset(self, source_offset: int) -> int:
        """Approximate position in `text` of the character at `source_offset` in the HTML."""
        i = bisect.bisect_right(self.source_offsets, source_offset) - 1
        if i < 0:
            return 0
        return min(len(self.text), self.text_offsets[i] + (source_offset - self.source_offsets[i]))


class _TextExtractor(HTMLParser):
    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", source)]
        self.parts: list[str] = []
        self.length = 0
        self.text_offsets: list[int] = []
        self.source_offsets: list[int] = []
        self._skip_depth = 0
        self._pending = ""  # separator owed before the next visible text

    def _source_pos(self) -> int:
        line, col = self.getpos()
        return self._line_starts[line - 1] + col

    def _separate(self, sep: str) -> None:
        # A line break outranks a space; nothing is owed before the first visible text.
        if self.length and (sep == "\n" or not self._pending):
            self._pending = sep

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in _SKIP:
            if tag not in _VOID:
                self._skip_depth += 1
        elif tag in _BLOCK:
            self._separate("\n")
        elif tag in _CELL:
            self._separate(" ")

    def handle_startendtag(self, tag: str, attrs) -> None:
        if tag in _BLOCK:
            self._separate("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in _BLOCK:
            self._separate("\n")
        elif tag in _CELL:
            self._separate(" ")

    def handle_data(self, data: str) -> None:
        if self._skip_depth:
            return
        piece = _SPACES.sub(" ", data.translate(_INVISIBLE).replace("\n", " ").replace("\r", " "))
        if not piece.strip():
            if piece and self.length:
                self._separate(" ")
            return
        lead = piece[0] == " "
        piece = piece.strip(" ")
        sep = self._pending or (" " if lead and self.length else "")
        if sep:
            self.parts.append(sep)
            self.length += len(sep)
        self.text_offsets.append(self.length)
        self.source_offsets.append(self._source_pos() + (len(data) - len(data.lstrip())))
        self.parts.append(piece)
        self.length += len(piece)
        self._pending = " " if data[-1:].isspace() else ""


def clean_html(html: str) -> CleanedHTML:
    """Extract visible text from HTML: tags stripped, scripts/styles dropped, entities decoded,
    whitespace normalised, block elements on their own lines."""
    parser = _TextExtractor(html)
    parser.feed(html)
    parser.close()
    raw = "".join(parser.parts)
    # NFC may merge characters; only then do offsets need a (rare, small) shift we accept.
    text = unicodedata.normalize("NFC", raw)
    return CleanedHTML(text, parser.text_offsets, parser.source_offsets)


def html_to_text(html: str) -> str:
    """Visible text of an HTML fragment or page (see `clean_html`)."""
    return clean_html(html).text


_TAG = re.compile(r"<[^>]+>")


def looks_like_html(text: str) -> bool:
    """Heuristic: does `text` contain markup worth cleaning?"""
    return bool(_TAG.search(text)) or "&nbsp;" in text or "&amp;" in text
