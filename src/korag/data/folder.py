"""A folder of files (PDF, text, Markdown, HTML, JSONL) → one `Corpus`, loaded in parallel.

Each file is read — and, with a `ChunkConfig`, cut into passages — in a worker process, since
PDF parsing and Kiwi sentence splitting are CPU-bound. Files are visited in sorted order and
results kept in that order, so the corpus is the same whatever the number of workers.

A file korag cannot read (corrupt, encrypted or image-only PDF, not UTF-8, …) is skipped with its
reason, logged and recorded in the `LoadReport`, and the rest of the folder loads: one bad file
in a thousand must not stop an index. With ``strict=True`` the first bad file (in sorted order)
stops the load with its `DataError` instead.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from korag.data.chunk import ChunkConfig, chunk_document
from korag.data.schema import Corpus, Document
from korag.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class LoadReport:
    """What a load skipped and why (one line per file), and warnings about what it read."""

    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    warnings: list[str] = field(default_factory=list)
    pages: dict[str, int] = field(default_factory=dict)  # file → pages (PDF)
    thin_pages: dict[str, list[int]] = field(default_factory=dict)  # file → pages with (almost) no text

    def merge(self, other: LoadReport) -> None:
        """Add what another load (of other files) reported."""
        self.skipped.extend(other.skipped)
        self.warnings.extend(other.warnings)
        self.pages.update(other.pages)
        self.thin_pages.update(other.thin_pages)

    def note_pages(self, file: str, total: int, thin: Sequence[int]) -> None:
        """Record a PDF's page count and its pages with little or no extractable text (with a
        warning about those)."""
        self.pages[file] = total
        pages = list(thin)
        if pages:
            self.thin_pages[file] = list(pages)
            shown = ", ".join(map(str, pages[:10])) + (" …" if len(pages) > 10 else "")
            self.warnings.append(
                f"{file}: {len(pages)} of {total} page(s) have little or no extractable text "
                f"(scanned images or figures? page {shown}); their content is not searchable"
            )

    def summary(self) -> str:
        """One line: how many files were skipped (empty when none)."""
        if not self.skipped:
            return ""
        return f"skipped {len(self.skipped)} file(s) korag could not read: " + "; ".join(r for _, r in self.skipped[:5])


DOCUMENT_SUFFIXES = (".pdf", ".txt", ".md", ".markdown", ".html", ".htm", ".xhtml", ".jsonl")


def list_documents(root: str | Path, suffixes: Sequence[str] = DOCUMENT_SUFFIXES) -> list[Path]:
    """Supported files under `root` (recursively, hidden files skipped), sorted."""
    base = Path(root)
    found = [
        p
        for p in base.rglob("*")
        if p.is_file()
        and p.suffix.lower() in suffixes
        and not any(part.startswith(".") for part in p.relative_to(base).parts)
    ]
    return sorted(found)


def load_file(
    path: Path, doc_id: str, chunk: ChunkConfig | None = None, report: LoadReport | None = None
) -> list[Document]:
    """The documents of one file: a whole file, its passages, or (JSONL) its records; PDF pages
    without text are noted in `report`."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        from korag.data.jsonl import read_corpus_jsonl

        corpus = read_corpus_jsonl(path)
        docs = [Document(f"{doc_id}:{d.id}", d.text, d.title, d.meta) for d in corpus]
    elif suffix == ".pdf":
        from korag.data.pdf import read_pdf

        docs = [read_pdf(path, doc_id=doc_id)]
        if report is not None:
            report.note_pages(path.name, docs[0].meta.get("pages", 0), docs[0].meta.get("thin_pages") or [])
    else:
        from korag.data.plaintext import read_text_file

        docs = [read_text_file(path, doc_id=doc_id)]
    if chunk is None:
        return docs
    out: list[Document] = []
    for doc in docs:
        pieces = [_with_offsets(p) for p in chunk_document(doc, chunk)]
        if doc.meta.get("page_spans") is not None or doc.meta.get("page_starts") is not None:
            pieces = [_with_pages(p, doc.meta, len(doc.text)) for p in pieces]
        out.extend(pieces)
    return out


def _with_offsets(piece: Document) -> Document:
    """A document kept whole (shorter than a passage) still says which characters it covers."""
    if "char_start" in piece.meta:
        return piece
    return Document(piece.id, piece.text, piece.title, {**piece.meta, "char_start": 0, "char_end": len(piece.text)})


def _with_pages(piece: Document, doc_meta: dict, length: int) -> Document:
    """A PDF passage with its page numbers instead of the whole file's page offsets."""
    from korag.data.pdf import pages_in, pages_of

    meta = {k: v for k, v in piece.meta.items() if k not in ("page_starts", "page_spans", "thin_pages")}
    start, end = meta.get("char_start", 0), meta.get("char_end", length)
    spans = doc_meta.get("page_spans")
    meta["pages"] = pages_in(spans, start, end) if spans is not None else pages_of(doc_meta["page_starts"], start, end)
    return Document(piece.id, piece.text, piece.title, meta)


Loaded = tuple[list[Document], LoadReport]


def _load_one(args: tuple[str, str, ChunkConfig | None]) -> Loaded | DataError:
    path, doc_id, chunk = args
    report = LoadReport()
    try:
        return load_file(Path(path), doc_id, chunk, report), report
    except DataError as exc:  # returned, not raised: the other files still load
        return exc


def load_files(
    files: Sequence[tuple[Path, str]],
    *,
    chunk: ChunkConfig | None = None,
    workers: int | None = None,
    show_progress: bool = False,
) -> list[Loaded | DataError]:
    """Each (path, document id)'s documents and what loading them reported, or the `DataError`
    that stopped it, in order; read in worker processes when there are several files."""
    jobs = [(str(p), doc_id, chunk) for p, doc_id in files]
    workers = workers if workers is not None else min(len(jobs), os.cpu_count() or 1)
    from tqdm.auto import tqdm

    bar = {"total": len(jobs), "desc": "read files", "unit": "file", "disable": not show_progress}
    if workers <= 1 or len(jobs) <= 1:
        return [_load_one(j) for j in tqdm(jobs, **bar)]
    # forkserver: forking a parent that already runs Kiwi's threads can deadlock.
    ctx = multiprocessing.get_context("forkserver" if os.name == "posix" else "spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        return list(tqdm(pool.map(_load_one, jobs, chunksize=1), **bar))


def read_folder(
    root: str | Path,
    *,
    chunk: ChunkConfig | None = None,
    workers: int | None = None,
    show_progress: bool = False,
    name: str | None = None,
    strict: bool = False,
    report: LoadReport | None = None,
) -> Corpus:
    """Every supported file under `root` as documents (ids are paths relative to `root`); files
    that cannot be read are skipped and listed in `report` (or, `strict`, stop the load)."""
    base = Path(root)
    if not base.is_dir():
        raise DataError(base, "not a directory")
    files = list_documents(base)
    if not files:
        raise DataError(base, f"no supported files ({', '.join(DOCUMENT_SUFFIXES)})")
    jobs = [(p, p.relative_to(base).as_posix()) for p in files]
    results = load_files(jobs, chunk=chunk, workers=workers, show_progress=show_progress)
    docs: list[Document] = []
    for (path, _), result in zip(jobs, results, strict=True):
        if isinstance(result, DataError):
            if strict:
                raise result
            log.warning("skipped %s", result)
            if report is not None:
                report.skipped.append((str(path), str(result)))
            continue
        docs.extend(result[0])
        if report is not None:
            report.merge(result[1])
    if not docs:
        raise DataError(base, f"none of its {len(files)} file(s) could be read (the first: {results[0]})")
    return Corpus.from_documents(docs, name=name or base.name, source=str(base))
