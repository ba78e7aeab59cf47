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


def load_file(path: Path, doc_id: str, chunk: ChunkConfig | None = None) -> list[Document]:
    """The documents of one file: a whole file, its passages, or (JSONL) its records."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        from korag.data.jsonl import read_corpus_jsonl

        corpus = read_corpus_jsonl(path)
        docs = [Document(f"{doc_id}:{d.id}", d.text, d.title, d.meta) for d in corpus]
    elif suffix == ".pdf":
        from korag.data.pdf import read_pdf

        docs = [read_pdf(path, doc_id=doc_id)]
    else:
        from korag.data.plaintext import read_text_file

        docs = [read_text_file(path, doc_id=doc_id)]
    if chunk is None:
        return docs
    out: list[Document] = []
    for doc in docs:
        pieces = chunk_document(doc, chunk)
        starts = doc.meta.get("page_starts")
        if starts is not None:
            pieces = [_with_pages(p, starts, len(doc.text)) for p in pieces]
        out.extend(pieces)
    return out


def _with_pages(piece: Document, page_starts: list[int], length: int) -> Document:
    """A PDF passage with its page numbers instead of the whole file's page offsets."""
    from korag.data.pdf import pages_of

    meta = {k: v for k, v in piece.meta.items() if k != "page_starts"}
    meta["pages"] = pages_of(page_starts, meta.get("char_start", 0), meta.get("char_end", length))
    return Document(piece.id, piece.text, piece.title, meta)


def _load_one(args: tuple[str, str, ChunkConfig | None]) -> list[Document] | DataError:
    path, doc_id, chunk = args
    try:
        return load_file(Path(path), doc_id, chunk)
    except DataError as exc:  # returned, not raised: the other files still load
        return exc


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
    jobs = [(str(p), p.relative_to(base).as_posix(), chunk) for p in files]
    workers = workers if workers is not None else min(len(jobs), os.cpu_count() or 1)
    from tqdm.auto import tqdm

    bar = {"total": len(jobs), "desc": "load files", "unit": "file", "disable": not show_progress}
    if workers <= 1 or len(jobs) == 1:
        results = [_load_one(j) for j in tqdm(jobs, **bar)]
    else:
        # forkserver: forking a parent that already runs Kiwi's threads can deadlock.
        ctx = multiprocessing.get_context("forkserver" if os.name == "posix" else "spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            results = list(tqdm(pool.map(_load_one, jobs, chunksize=1), **bar))
    docs: list[Document] = []
    for (path, _, _), result in zip(jobs, results, strict=True):
        if isinstance(result, DataError):
            if strict:
                raise result
            log.warning("skipped %s", result)
            if report is not None:
                report.skipped.append((path, str(result)))
            continue
        docs.extend(result)
    if not docs:
        raise DataError(base, f"none of its {len(files)} file(s) could be read (the first: {results[0]})")
    return Corpus.from_documents(docs, name=name or base.name, source=str(base))
