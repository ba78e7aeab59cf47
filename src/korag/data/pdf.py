"""PDF → `Document` with pypdf: text per page, page offsets kept for passage metadata."""

from __future__ import annotations

import logging
from pathlib import Path

from korag.data.clean import normalize_text
from korag.data.schema import Document
from korag.errors import DataError


def read_pdf(path: str | Path, *, doc_id: str | None = None) -> Document:
    """The text of a PDF as one document.

    ``meta["page_starts"]`` holds the character offset where each page's text begins, so
    passages cut from the document can name their pages. Encrypted (password-protected),
    corrupt, or image-only PDFs raise a `DataError` naming the file.
    """
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError

    src = Path(path)
    pypdf_log = logging.getLogger("pypdf")
    level = pypdf_log.level
    pypdf_log.setLevel(logging.ERROR)  # recoverable-structure warnings are noise here
    try:
        try:
            reader = PdfReader(src)
            if reader.is_encrypted and not reader.decrypt(""):
                raise DataError(src, "PDF is encrypted with a password; decrypt it first (e.g. qpdf --decrypt)")
            pages = []
            for number, page in enumerate(reader.pages, start=1):
                try:
                    pages.append(page.extract_text() or "")
                except Exception as exc:
                    raise DataError(src, f"cannot extract text: {exc}", record=f"page {number}") from None
            title = (reader.metadata.title if reader.metadata else None) or src.stem
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
    texts: list[str] = []
    starts: list[int] = []
    offset = 0
    for page_text in pages:
        clean = normalize_text(page_text, keep_newlines=True)
        starts.append(offset)
        texts.append(clean)
        offset += len(clean) + 1  # pages are joined with a newline
    text = "\n".join(texts)
    if not text.strip():
        raise DataError(src, f"no extractable text in {len(pages)} page(s) (scanned images need OCR first)")
    return Document(
        id=doc_id or src.name,
        text=text,
        title=normalize_text(str(title)),
        meta={"source": str(src), "pages": len(pages), "page_starts": starts},
    )


def pages_of(page_starts: list[int], start: int, end: int) -> list[int]:
    """1-based page numbers overlapped by the character range [start, end)."""
    import bisect

    first = bisect.bisect_right(page_starts, start)
    last = bisect.bisect_right(page_starts, max(start, end - 1))
    return list(range(max(first, 1), max(last, 1) + 1))
