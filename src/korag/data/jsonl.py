"""Plain JSON Lines corpora: one document per line, field names configurable or detected."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from korag.data.schema import Corpus
from korag.errors import DataError
from korag.util.reading import field, id_field, iter_jsonl

ID_FIELDS = ("_id", "id", "doc_id", "docid")
TEXT_FIELDS = ("text", "contents", "content", "body", "passage")
TITLE_FIELDS = ("title", "name")


def _detect(obj: Mapping[str, Any], candidates: tuple[str, ...]) -> str | None:
    return next((c for c in candidates if c in obj), None)


def read_corpus_jsonl(
    path: str | Path,
    *,
    id_field_name: str | None = "auto",
    text_field: str = "auto",
    title_field: str | None = "auto",
    name: str = "",
) -> Corpus:
    """A corpus from JSON Lines, one document per line.

    Field names default to detection on the first record (``_id``/``id``/``doc_id``,
    ``text``/``contents``/…, ``title``); with `id_field_name=None` (or no id field found)
    documents are numbered by line. Extra ``metadata`` objects are kept.
    """
    src = Path(path)
    ids: list[str] = []
    texts: list[str] = []
    titles: list[str] = []
    metas: list[Mapping[str, Any]] = []
    first_line: dict[str, int] = {}
    for lineno, obj in iter_jsonl(src):
        rec = f"line {lineno}"
        if not ids:  # resolve "auto" names on the first record
            if id_field_name == "auto":
                id_field_name = _detect(obj, ID_FIELDS)
            if text_field == "auto":
                text_field = _detect(obj, TEXT_FIELDS) or "text"
            if title_field == "auto":
                title_field = _detect(obj, TITLE_FIELDS)
        doc_id = id_field(obj, id_field_name, source=src, record=rec) if id_field_name else str(lineno)
        if doc_id in first_line:
            raise DataError(
                src,
                f"duplicate document id {doc_id!r} (first on line {first_line[doc_id]})",
                record=rec,
                field=id_field_name,
            )
        first_line[doc_id] = lineno
        text = field(obj, text_field, str, source=src, record=f"{rec} (id={doc_id!r})", nonempty=True)
        title = field(obj, title_field, str, source=src, record=rec, default="") if title_field else ""
        meta = obj.get("metadata") or {}
        if not isinstance(meta, dict):
            raise DataError(src, "expected an object", record=rec, field="metadata")
        ids.append(doc_id)
        texts.append(text)
        titles.append(title)
        metas.append(meta)
    if not ids:
        raise DataError(src, "no documents in file")
    return Corpus(ids, texts, titles, metas, name=name or src.stem, source=str(src))
