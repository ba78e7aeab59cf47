"""Plain text, Markdown and HTML files → `Document`."""

from __future__ import annotations

from pathlib import Path

from korag.data.clean import html_to_text, normalize_text
from korag.data.schema import Document
from korag.errors import DataError
from korag.util.reading import read_text

HTML_SUFFIXES = (".html", ".htm", ".xhtml")


def read_text_file(path: str | Path, *, doc_id: str | None = None) -> Document:
    """One file as one document: strict UTF-8, HTML cleaned, whitespace normalised (line breaks kept)."""
    src = Path(path)
    raw = read_text(src)
    if src.suffix.lower() in HTML_SUFFIXES:
        raw = html_to_text(raw)
    text = normalize_text(raw, keep_newlines=True)
    if not text:
        raise DataError(src, "file has no text")
    return Document(id=doc_id or src.name, text=text, title=src.stem, meta={"source": str(src)})
