"""PDF → `Document` with pypdf: running text that keeps Korean words whole, page offsets kept.

pypdf returns each page's text line by line, as laid out. Turned into running text as is, a
third of the lines of a justified Korean paper end inside a word (``경`` / ``량화``), every
line ends a "sentence" for the splitter, the running header repeats on every page, footnotes
sit between the two columns' texts, and the metadata title is often a template's name. What
``layout="clean"`` (the default) does about each, and why:

- **Line ends.** Some producers keep the space a line was broken at, so a line that ends with
  a space ended a word. Kiwi reads the two words around every Hangul–Hangul break (and digits
  followed by Hangul, ``2025`` / ``년``): a morpheme across the break (``경`` / ``량화``) or a
  word that cannot start with what follows (a particle, an ending, a suffix: ``자립`` / ``률``)
  is joined without a space; a word that ends with a particle, an ending or an adverb gets
  one. Between two content words the document's signal decides: where at least 5% of its
  Hangul–Hangul breaks keep a space, a break without one is mid-word; producers that drop the
  space at every break (reportlab, many converters) get a space. A Latin word hyphenated
  across lines (``retrie-`` / ``val``) is rejoined; other Latin breaks are word ends. Measured
  on `bench/documents.py`'s three PDFs: passages that start or end mid-word, before/after,
  are in its table.
- **Headings and paragraphs.** A short line that does not end a sentence (a section title) and
  a line followed by one that starts a list item keep their line break; other breaks inside a
  paragraph become spaces, so the sentence splitter sees sentences, not lines.
- **Running headers, footers and page numbers.** The first and last two lines of each page are
  compared across pages with their digits masked; a line found on at least half of the pages
  (three pages or more) is a header or footer and is dropped, as is a line that is only a page
  number (``7``, ``- 7 -``, ``7 / 12``).
- **Footnotes.** Text drawn smaller than the body's most common size in the bottom quarter of
  a page is a footnote: it is taken out of the running text and appended after the last
  page's text (keeping its page number for citations), where it no longer splits a sentence
  (footnote *markers* inside the text are left).
- **Pages without text.** A page with fewer than `MIN_PAGE_CHARS` extractable characters (a
  scanned image, a figure) is named in ``meta["thin_pages"]`` and in the load report; a PDF with
  no text at all is an error (it needs OCR first).
- **Title.** The metadata title unless it is empty or a template's name (``Microsoft Word -
  x.docx``, ``Untitled``, …); else the text drawn in the largest font on the first page (the
  title block); else the file name.

``layout="raw"`` keeps pypdf's lines and the metadata title as they are (what korag did before).
"""

from __future__ import annotations

import itertools
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from korag.data.clean import normalize_text
from korag.data.schema import Document
from korag.errors import DataError

log = logging.getLogger(__name__)

Layout = Literal["clean", "raw"]
MIN_PAGE_CHARS = 40
_TEMPLATE_TITLE = re.compile(
    r"^(microsoft (word|powerpoint)|untitled|제목 없음|무제|document\d*$|slide\d*$)|\.(docx?|hwpx?|pptx?|odt|pdf|tex)$",
    re.I,
)
_PAGE_NUMBER = re.compile(r"^[\s\-–—(]*(\d{1,4}|[ivxlc]{1,6})[\s\-–—)]*(/\s*\d{1,4})?\s*$", re.I)
_HANGUL = re.compile(r"[가-힣]")
_SENTENCE_END = re.compile(r"[.!?…。！？:;\"'”’)\]」』》]\s*$")
_LIST_ITEM = re.compile(r"^\s*([-•●○■□▪▶◆◇*·]|\(?\d{1,3}[.)]|[①-⑳]|[가-하][.)]|[a-zA-Z][.)])\s")


@dataclass
class _Line:
    text: str
    size: float = 0.0  # the font size most of its characters were drawn in (0: unknown)
    y: float = 0.0  # its baseline (from the bottom of the page)


@dataclass
class _Page:
    text: str
    chunks: list[tuple[float, float, str]] = field(default_factory=list)  # (font size, y, text)
    height: float = 842.0

    def lines(self) -> list[_Line]:
        """The page's lines with the font size and position they were drawn at, found by
        locating each drawn chunk in the extracted text (pypdf writes them in drawing order)."""
        text = self.text
        size_at = [0.0] * len(text)
        y_at = [0.0] * len(text)
        pos = 0
        for size, y, chunk in self.chunks:
            piece = chunk.strip()
            i = text.find(piece, pos)
            if i < 0:
                continue
            for k in range(i, i + len(piece)):
                size_at[k], y_at[k] = size, y
            pos = i + len(piece)
        out = []
        start = 0
        for raw in text.split("\n"):
            sizes = Counter(s for s in size_at[start : start + len(raw)] if s)
            ys = [
                y for y, s in zip(y_at[start : start + len(raw)], size_at[start : start + len(raw)], strict=True) if s
            ]
            out.append(
                _Line(raw, sizes.most_common(1)[0][0] if sizes else 0.0, sorted(ys)[len(ys) // 2] if ys else 0.0)
            )
            start += len(raw) + 1
        return out


def read_pdf(path: str | Path, *, doc_id: str | None = None, layout: Layout = "clean") -> Document:
    """The text of a PDF as one document.

    ``meta["page_spans"]`` holds ``[start, end, page]`` for every stretch of text (a page's body,
    a page's footnotes), so passages cut from the document can name their pages
    (`pages_of`); ``meta["page_starts"]`` the offset where each page's body begins;
    ``meta["thin_pages"]`` the pages with (almost) no extractable text. Encrypted
    (password-protected), corrupt, or image-only PDFs raise a `DataError` naming the file.
    """
    src = Path(path)
    pages, meta_title = _extract(src)
    if layout == "raw":
        bodies, notes = [normalize_text(p.text, keep_newlines=True) for p in pages], [[] for _ in pages]
        title, glues = meta_title or src.stem, ["\n"] * len(pages)
    else:
        bodies, notes, glues = clean_pages(pages)
        title = choose_title(meta_title, pages, src)
    text, spans = _assemble(bodies, notes, glues)
    if not text.strip():
        raise DataError(src, f"no extractable text in {len(pages)} page(s) (scanned images need OCR first)")
    thin = [i + 1 for i, t in enumerate(bodies) if len(t.strip()) + sum(map(len, notes[i])) < MIN_PAGE_CHARS]
    if thin:
        # in meta and in the load report, which commands print; a log line too would repeat it
        log.debug("%s: page(s) %s have little or no extractable text", src, thin)
    starts = [
        next(a for a, _, page in spans if page == n) if any(pg == n for _, _, pg in spans) else 0
        for n in range(1, len(pages) + 1)
    ]
    meta = {"source": str(src), "file": src.name, "pages": len(pages), "page_starts": starts, "page_spans": spans}
    return Document(
        id=doc_id or src.name, text=text, title=normalize_text(str(title)), meta={**meta, "thin_pages": thin}
    )


def _assemble(bodies: list[str], notes: list[list[str]], glues: list[str]) -> tuple[str, list[list[int]]]:
    """The document's text — page bodies joined by their glue (a blank line, or what continues a
    sentence across the page break), then every page's footnotes — and its page spans."""
    parts: list[str] = []
    spans: list[list[int]] = []
    offset = 0
    for n, body in enumerate(bodies, start=1):
        if n > 1:
            parts.append(glues[n - 1])
            offset += len(glues[n - 1])
        spans.append([offset, offset + len(body), n])
        parts.append(body)
        offset += len(body)
    for n, page_notes in enumerate(notes, start=1):
        for note in page_notes:
            parts.append("\n\n")
            offset += 2
            spans.append([offset, offset + len(note), n])
            parts.append(note)
            offset += len(note)
    return "".join(parts), spans


def _extract(src: Path) -> tuple[list[_Page], str]:
    """Each page's text and drawn text chunks (font size, baseline y), and the metadata title."""
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError

    pypdf_log = logging.getLogger("pypdf")
    level = pypdf_log.level
    pypdf_log.setLevel(logging.ERROR)  # recoverable-structure warnings are noise here
    try:
        try:
            if src.is_file() and src.stat().st_size == 0:
                raise DataError(src, "empty file (0 bytes)")
            reader = PdfReader(src)
            if reader.is_encrypted and not reader.decrypt(""):
                raise DataError(src, "PDF is encrypted with a password; decrypt it first (e.g. qpdf --decrypt)")
            pages = [_page(src, number, page) for number, page in enumerate(reader.pages, start=1)]
            meta_title = (reader.metadata.title if reader.metadata else None) or ""
        except DataError:
            raise
        except FileNotFoundError:
            raise DataError(src, "file not found") from None
        except (FileNotDecryptedError, DependencyError) as exc:
            raise DataError(src, f"PDF is encrypted and cannot be opened: {exc}") from None
        except (PdfReadError, ValueError, KeyError, TypeError, OSError, AttributeError) as exc:
            raise DataError(src, f"corrupt or unreadable PDF: {exc}") from None
    finally:
        pypdf_log.setLevel(level)
    return pages, str(meta_title)


def _page(src: Path, number: int, page) -> _Page:
    chunks: list[tuple[float, float, str]] = []

    def visit(text, cm, tm, font, size) -> None:
        if text.strip():
            scale = abs(tm[0]) if tm and tm[0] else 1.0
            chunks.append((round(float(size) * scale, 1), float(tm[5] + cm[5]) if tm and cm else 0.0, text))

    try:
        text = page.extract_text(visitor_text=visit) or ""
    except Exception as exc:
        raise DataError(src, f"cannot extract text: {exc}", record=f"page {number}") from None
    try:
        height = float(page.mediabox.height)
    except (AttributeError, TypeError, ValueError):
        height = 842.0
    return _Page(text, chunks, height)


# -- cleaning ---------------------------------------------------------------------------------------
def clean_pages(pages: list[_Page]) -> tuple[list[str], list[list[str]], list[str]]:
    """(each page's running text, each page's footnotes, the glue before each page): repeated
    headers/footers and page numbers dropped, footnotes taken out, lines joined into paragraphs,
    and a sentence that runs over a page break joined like a line."""
    body = _body_size(pages)
    page_lines = [_page_lines(p) for p in pages]
    repeated = _repeated_lines([[line.text for line in lines] for lines in page_lines])
    signal = _has_space_signal([[line.text for line in lines] for lines in page_lines])
    bodies: list[list[_Line]] = []
    notes: list[list[str]] = []
    for p, lines in zip(pages, page_lines, strict=True):
        kept = [line for i, line in enumerate(lines) if not _is_furniture(line.text, i, len(lines), repeated)]
        page_notes = [line for line in kept if _is_footnote(line, body, p.height)]
        bodies.append([line for line in kept if line not in page_notes])
        notes.append([join_lines(page_notes, space_signal=signal)] if page_notes else [])
    glues = ["\n\n"]
    for prev, nxt in itertools.pairwise(bodies):
        glue = "\n\n"
        if prev and nxt:
            typical = sorted(len(line.text.strip()) for line in prev)[len(prev) // 2]
            glue = _junction(prev[-1], nxt[0], typical, signal, body, heading=False)
            glue = "\n\n" if glue in ("\n", "-") else glue
        glues.append(glue)
    return [join_lines(lines, space_signal=signal, body_size=body) for lines in bodies], notes, glues


def _page_lines(page: _Page) -> list[_Line]:
    """A page's non-empty lines, normalised, keeping whether the raw line began or ended with a
    space (pypdf's word-boundary signal)."""
    out = []
    for line in page.lines():
        clean = normalize_text(line.text)
        if clean:
            lead = " " if line.text.startswith((" ", "\u00a0")) else ""
            trail = " " if line.text.endswith((" ", "\u00a0")) else ""
            out.append(_Line(lead + clean + trail, line.size, line.y))
    return out


def _is_footnote(line: _Line, body: float, height: float) -> bool:
    """Text drawn clearly smaller than the body in the bottom quarter of the page."""
    return bool(body and line.size and line.size <= 0.85 * body and line.y < 0.25 * height)


def _body_size(pages: list[_Page]) -> float:
    sizes: Counter[float] = Counter()
    for p in pages:
        for size, _, text in p.chunks:
            sizes[size] += len(text.strip())
    return sizes.most_common(1)[0][0] if sizes else 0.0


_EDGE_NUMBER = re.compile(
    r"(^\s*[-–—]?\s*\d{1,4}\s*(/\s*\d{1,4})?\s*[-–—]?\s+|\s+[-–—]?\s*\d{1,4}\s*(/\s*\d{1,4})?\s*[-–—]?\s*$)"
)


def _mask(line: str) -> str:
    """A header/footer line with its page number (at either end) dropped and digits masked."""
    return re.sub(r"\d+", "#", _EDGE_NUMBER.sub("", line.strip()))


def _repeated_lines(pages: list[list[str]]) -> set[str]:
    """Masked lines among the first/last two of at least half the pages (3 pages or more)."""
    if len(pages) < 3:
        return set()
    seen: Counter[str] = Counter()
    for lines in pages:
        edge = {_mask(line) for line in lines[:2] + lines[-2:]}
        seen.update(edge)
    return {m for m, n in seen.items() if n >= max(2, len(pages) / 2) and m}


def _is_furniture(line: str, i: int, n: int, repeated: set[str]) -> bool:
    at_edge = i < 2 or i >= n - 2
    return at_edge and (_mask(line) in repeated or bool(_PAGE_NUMBER.match(line)))


def _has_space_signal(pages: list[list[str]]) -> bool:
    """Whether line breaks at word ends kept their space (then a break without one is mid-word).
    Only Hangul–Hangul breaks count: a Latin or digit line end keeps its space with producers
    that drop it everywhere else."""
    ends = [
        line.endswith(" ")
        for p in pages
        for line, nxt in itertools.pairwise(p)
        if line.strip() and nxt.strip() and _HANGUL.match(line.rstrip()[-1]) and _HANGUL.match(nxt.lstrip()[0])
    ]
    return bool(ends) and sum(ends) >= 0.05 * len(ends)


def join_lines(lines: list[_Line], *, space_signal: bool = True, body_size: float = 0.0) -> str:
    """One page's lines as running text: paragraphs and headings on lines of their own, words
    broken at line ends rejoined (see the module docstring)."""
    if not lines:
        return ""
    typical = sorted(len(line.text.strip()) for line in lines)[len(lines) // 2]
    heading = [_is_heading(a, b, typical) for a, b in itertools.pairwise(lines)] + [False]
    out = lines[0].text.strip()
    for k, (prev, line) in enumerate(itertools.pairwise(lines)):
        glue = _junction(prev, line, typical, space_signal, body_size, heading=heading[k] or heading[k + 1])
        if glue == "-":  # a Latin word hyphenated across the break: the hyphen goes
            out, glue = out[:-1], ""
        out += glue + line.text.strip()
    return out


def _is_heading(line: _Line, nxt: _Line, typical: int) -> bool:
    """A short line that ends no sentence, followed by a longer one: a section title."""
    text = line.text.strip()
    return len(text) < 0.6 * typical and len(text) < len(nxt.text.strip()) and not _SENTENCE_END.search(text)


def _junction(prev: _Line, line: _Line, typical: int, space_signal: bool, body_size: float, *, heading: bool) -> str:
    """What goes between two consecutive lines: a line break, a space, or nothing."""
    a, b = prev.text.rstrip(), line.text.strip()
    if not a or not b:
        return "\n"
    if prev.size and line.size and abs(prev.size - line.size) > 0.1 * max(prev.size, line.size):
        return "\n"  # a title, a header, a caption: text of another size is not the same paragraph
    if heading or _LIST_ITEM.match(b):
        return "\n"
    if a.endswith("-") and len(a) > 1 and a[-2].isascii() and a[-2].isalpha() and b[:1].islower():
        return "-"
    if _SENTENCE_END.search(a):
        return " "
    last, first = a[-1], b[0]
    # CJK wrapping breaks words between two syllables (or digits and the unit after them); only
    # body text fills its lines that way — elsewhere, or between Latin words, a break is a word end
    body = not body_size or not prev.size or abs(prev.size - body_size) <= 0.1 * body_size
    if not (body and _HANGUL.match(first) and (_HANGUL.match(last) or last.isdigit())):
        return " "
    kind = _morph_junction(a.split()[-1], b.split()[0])
    marked = prev.text.endswith(" ") or line.text.startswith(" ")  # pypdf kept the break's space
    if kind in ("span", "suffix"):  # also over a space pypdf kept: some producers leave stray ones
        return ""
    if kind == "space" or marked:
        return " "
    return "" if space_signal else " "  # between two content words: the document's signal decides


_WORD_FINAL = ("J", "EF", "EC", "ETM", "ETN")  # particles and (non-prefinal) endings close a word
_STANDALONE = ("MAG", "MAJ", "IC")  # adverbs and interjections are words of their own
_BOUND = ("J", "E", "XS", "VCP")  # particles, endings, suffixes, the copula: never start a word


def _morph_junction(left: str, right: str) -> str:
    """How Kiwi reads the junction of `left` and `right` (the words around a line break):
    ``space`` (`left` ends a word — a particle, an ending, an adverb — and `right` starts one),
    ``suffix`` (`right` begins with what cannot start a word: ``자립|률``, ``있으|므로``),
    ``span`` (one morpheme of the joined text crosses the break: ``경|량화``, ``있으|므로``) or
    ``open`` (two content morphemes: a compound or two words — the document's space signal
    decides). A "morpheme" Kiwi only guessed as an unknown proper noun does not count: joined,
    ``처리구를|무처리구와`` reads as one."""
    from korag.text.morph import shared_kiwi

    kiwi = shared_kiwi()
    lt, rt = kiwi.tokenize(left), kiwi.tokenize(right)
    if rt and rt[0].tag.startswith(_BOUND):
        return "suffix"
    if len(lt) >= 2 and lt[-1].tag == "EF":
        return "space"  # a stem and a sentence-final ending (…이다, …한다): a sentence ends here
    cut = len(left)
    # a morpheme across the break, unless it is Kiwi's guess for an unknown string (NNP)
    if any(t.start < cut < t.start + t.len and t.tag != "NNP" for t in kiwi.tokenize(left + right)):
        return "span"
    if lt and (lt[-1].tag.startswith(_WORD_FINAL) or lt[-1].tag in _STANDALONE):
        return "space"
    return "open"


def choose_title(meta_title: str, pages: list[_Page], src: Path) -> str:
    """The metadata title unless it is empty or a template's; else the first page's largest
    text; else the file name."""
    meta = normalize_text(meta_title)
    if meta and not _TEMPLATE_TITLE.search(meta):
        return meta
    if pages and pages[0].chunks:
        body = _body_size(pages)
        biggest = max(size for size, _, _ in pages[0].chunks)
        if biggest >= 1.2 * body:
            title = " ".join(t.strip() for size, _, t in pages[0].chunks if size == biggest)
            title = normalize_text(title)
            if 2 <= len(title) <= 200:
                return title
    return src.stem


def pages_of(page_starts: list[int], start: int, end: int) -> list[int]:
    """1-based page numbers overlapped by the character range [start, end), from the offsets
    where each page begins."""
    import bisect

    first = bisect.bisect_right(page_starts, start)
    last = bisect.bisect_right(page_starts, max(start, end - 1))
    return list(range(max(first, 1), max(last, 1) + 1))


def pages_in(page_spans: list[list[int]], start: int, end: int) -> list[int]:
    """1-based page numbers of the text spans (``meta["page_spans"]``) that [start, end) overlaps."""
    return sorted({page for a, b, page in page_spans if a < max(end, start + 1) and start < b})
