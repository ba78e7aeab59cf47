"""One entry point that reads any supported source, detecting its format."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from korag.data.chunk import ChunkConfig, chunk_corpus
from korag.data.folder import LoadReport
from korag.data.schema import Corpus, QASet, RetrievalSet
from korag.errors import DataError

Format = Literal["auto", "squad", "korquad", "hotpotqa", "beir", "jsonl", "pdf", "text", "folder", "sample"]
FORMATS: tuple[str, ...] = ("auto", "squad", "korquad", "hotpotqa", "beir", "jsonl", "pdf", "text", "folder", "sample")
SAMPLE = "builtin:sample"
# Formats whose documents are files people wrote (papers, reports, manuals): cut into passages by
# default, the same way wherever they are read (index, data stats/convert, recipes, collections).
DOCUMENT_FORMATS = ("pdf", "text", "folder")


def detect_format(path: str | Path) -> str:
    """The reader `load` would use for `path`."""
    if str(path) == SAMPLE:
        return "sample"
    p = Path(path)
    if not p.exists():
        raise DataError(p, "no such file or directory")
    if p.is_dir():
        return "beir" if (p / "corpus.jsonl").is_file() else "folder"
    suffix = p.suffix.lower()
    if suffix == ".json":
        # HotpotQA is a top-level list; SQuAD/KorQuAD 1.0 and KorQuAD 2.x an object (one reader)
        with p.open("rb") as fh:
            head = fh.read(256).lstrip(b"\xef\xbb\xbf \t\r\n")
        return "hotpotqa" if head.startswith(b"[") else "korquad"
    if suffix == ".jsonl":
        return "jsonl"
    if suffix == ".pdf":
        return "pdf"
    if suffix in (".txt", ".md", ".markdown", ".html", ".htm", ".xhtml"):
        return "text"
    raise DataError(p, f"cannot tell the format from the name; pass one of {', '.join(FORMATS[1:])}")


def load(
    path: str | Path,
    *,
    format: str = "auto",
    split: str = "test",
    chunk: ChunkConfig | None = None,
    workers: int | None = None,
    show_progress: bool = False,
    strict: bool = False,
    report: LoadReport | None = None,
) -> RetrievalSet | QASet | Corpus:
    """Read `path` as a QASet (SQuAD/KorQuAD, the sample), a RetrievalSet (BEIR) or a Corpus
    (JSONL, PDF, text, folders). `chunk` cuts long documents into passages; PDF, text and
    folders are cut with the default `ChunkConfig` when none is given. In a folder, files that
    cannot be read are skipped (listed in `report`) unless `strict`."""
    fmt = detect_format(path) if format == "auto" else format
    if fmt not in FORMATS:
        raise DataError(path, f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if chunk is None and fmt in DOCUMENT_FORMATS:
        chunk = ChunkConfig()
    if fmt == "sample":
        from korag.data.sample import load_sample

        return load_sample()
    if fmt == "squad":
        from korag.data.squad import read_squad

        return read_squad(path)
    if fmt == "korquad":
        from korag.data.korquad import read_korquad

        return read_korquad(path, chunk=chunk)
    if fmt == "hotpotqa":
        from korag.data.hotpotqa import read_hotpotqa

        return read_hotpotqa(path)
    if fmt == "beir":
        from korag.data.beir import read_beir

        return read_beir(path, split)
    if fmt == "folder":
        from korag.data.folder import read_folder

        return read_folder(
            path, chunk=chunk, workers=workers, show_progress=show_progress, strict=strict, report=report
        )
    from korag.data.folder import load_file

    p = Path(path)
    if not p.is_file():
        raise DataError(p, "file not found")
    if fmt == "jsonl":
        from korag.data.jsonl import read_corpus_jsonl

        corpus = read_corpus_jsonl(p)
        return chunk_corpus(corpus, chunk, show_progress=show_progress) if chunk else corpus
    docs = load_file(p, p.name, chunk, report)
    return Corpus.from_documents(docs, name=p.stem, source=str(p))


def as_retrieval_set(data: RetrievalSet | QASet | Corpus) -> RetrievalSet | None:
    """The retrieval task of loaded data, or None for a bare corpus."""
    if isinstance(data, RetrievalSet):
        return data
    if isinstance(data, QASet):
        return data.to_retrieval_set()
    return None


def corpus_of(data: RetrievalSet | QASet | Corpus) -> Corpus:
    """The corpus of loaded data."""
    return data if isinstance(data, Corpus) else data.corpus
