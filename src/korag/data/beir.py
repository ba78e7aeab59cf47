"""BEIR layout: read a retrieval task from, and write one to, a directory.

    corpus.jsonl        {"_id", "title", "text", "metadata"?}
    queries.jsonl       {"_id", "text", "metadata"?}
    qrels/<split>.tsv   header "query-id<TAB>corpus-id<TAB>score", one judgement per line

korag adds one optional file, ``answers.jsonl`` ({"_id", "answers": [..]}), so that QA sets
converted to BEIR keep their gold answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from korag import atomic
from korag.data.jsonl import read_corpus_jsonl
from korag.data.schema import Corpus, Qrels, Queries, RetrievalSet
from korag.errors import DataError
from korag.util.reading import decode_utf8, field, id_field, iter_jsonl

QRELS_HEADER = ("query-id", "corpus-id", "score")


def available_splits(directory: str | Path) -> list[str]:
    """Names of the qrels splits present in a BEIR directory."""
    qdir = Path(directory) / "qrels"
    return sorted(p.stem for p in qdir.glob("*.tsv")) if qdir.is_dir() else []


def read_queries_jsonl(path: str | Path) -> Queries:
    """Queries from JSON Lines with ``_id`` and ``text``."""
    src = Path(path)
    ids: list[str] = []
    texts: list[str] = []
    first_line: dict[str, int] = {}
    for lineno, obj in iter_jsonl(src):
        rec = f"line {lineno}"
        qid = id_field(obj, "_id", source=src, record=rec)
        if qid in first_line:
            raise DataError(
                src, f"duplicate query id {qid!r} (first on line {first_line[qid]})", record=rec, field="_id"
            )
        first_line[qid] = lineno
        ids.append(qid)
        texts.append(field(obj, "text", str, source=src, record=f"{rec} (id={qid!r})", nonempty=True))
    return Queries(ids, texts, source=str(src))


def read_qrels_tsv(path: str | Path, corpus: Corpus | None = None, queries: Queries | None = None) -> Qrels:
    """Judgements from a BEIR qrels TSV; unknown query or document ids are errors."""
    src = Path(path)
    if not src.is_file():
        raise DataError(src, "file not found")
    text = decode_utf8(src.read_bytes(), src)
    rows: list[tuple[str, str, int]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        cols = line.rstrip("\r\n").split("\t")
        rec = f"line {lineno}"
        if lineno == 1 and cols[0].strip().lower() in ("query-id", "query_id", "qid"):
            continue  # header
        if len(cols) != 3:
            raise DataError(
                src, f"expected 3 tab-separated columns (query-id, corpus-id, score), got {len(cols)}", record=rec
            )
        qid, did, score = cols[0].strip(), cols[1].strip(), cols[2].strip()
        try:
            grade = int(float(score))
        except ValueError:
            raise DataError(src, f"score {score!r} is not a number", record=rec, field="score") from None
        if queries is not None and qid not in queries:
            raise DataError(src, f"unknown query {qid!r} (not in queries.jsonl)", record=rec, field="query-id")
        if corpus is not None and did not in corpus:
            raise DataError(src, f"unknown document {did!r} (not in corpus.jsonl)", record=rec, field="corpus-id")
        rows.append((qid, did, grade))
    return Qrels.from_rows(rows)


def read_beir(directory: str | Path, split: str = "test", *, name: str | None = None) -> RetrievalSet:
    """A retrieval task from a BEIR directory: the corpus, the split's judgements, and the
    queries that have judgements in that split."""
    d = Path(directory)
    if not d.is_dir():
        raise DataError(d, "not a directory (expected BEIR layout: corpus.jsonl, queries.jsonl, qrels/)")
    for required in ("corpus.jsonl", "queries.jsonl"):
        if not (d / required).is_file():
            raise DataError(d, f"missing {required} (expected BEIR layout)")
    qrels_path = d / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        have = available_splits(d)
        raise DataError(d, f"no qrels for split {split!r}; available: {', '.join(have) or 'none'}")
    corpus = read_corpus_jsonl(
        d / "corpus.jsonl", id_field_name="_id", text_field="text", title_field="title", name=name or d.name
    )
    queries = read_queries_jsonl(d / "queries.jsonl")
    qrels = read_qrels_tsv(qrels_path, corpus, queries)
    queries = queries.subset(q for q in queries.ids if q in qrels)
    return RetrievalSet(corpus, queries, qrels, name=name or d.name)


def read_answers(directory: str | Path) -> dict[str, tuple[str, ...]]:
    """Gold answers per query id from ``answers.jsonl`` (empty if the file is absent)."""
    path = Path(directory) / "answers.jsonl"
    if not path.is_file():
        return {}
    out: dict[str, tuple[str, ...]] = {}
    for lineno, obj in iter_jsonl(path):
        rec = f"line {lineno}"
        qid = id_field(obj, "_id", source=path, record=rec)
        answers = field(obj, "answers", list, source=path, record=rec)
        if not all(isinstance(a, str) for a in answers):
            raise DataError(path, "answers must be strings", record=rec, field="answers")
        out[qid] = tuple(answers)
    return out


def _jsonl(rows: Iterable[dict[str, Any]]) -> str:
    import json

    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def write_corpus_jsonl(corpus: Corpus, path: str | Path) -> None:
    """The corpus as BEIR ``corpus.jsonl`` rows (``metadata`` only where a document has some)."""
    metas = corpus.metas
    rows = (
        {
            "_id": corpus.ids[i],
            "title": corpus.titles[i],
            "text": corpus.texts[i],
            **({"metadata": dict(metas[i])} if metas is not None and metas[i] else {}),
        }
        for i in range(len(corpus))
    )
    Path(path).write_text(_jsonl(rows), encoding="utf-8")


def write_beir(
    dataset: RetrievalSet,
    directory: str | Path,
    *,
    splits: Mapping[str, Qrels] | None = None,
    answers: Mapping[str, Sequence[str]] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write `dataset` in BEIR layout, atomically (the directory appears complete or not at all).

    `splits` maps split names to judgements; by default the dataset's qrels are the ``test``
    split. `answers` (query id → gold answers) is written to ``answers.jsonl``.
    """
    splits = dict(splits) if splits is not None else {"test": dataset.qrels}
    corpus = dataset.corpus
    with atomic.atomic_directory(directory, overwrite=overwrite) as tmp:
        write_corpus_jsonl(corpus, tmp / "corpus.jsonl")
        (tmp / "queries.jsonl").write_text(
            _jsonl({"_id": q.id, "text": q.text} for q in dataset.queries), encoding="utf-8"
        )
        (tmp / "qrels").mkdir()
        for split, qrels in splits.items():
            lines = ["\t".join(QRELS_HEADER)] + [f"{q}\t{d}\t{g}" for q, d, g in qrels.rows()]
            (tmp / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        if answers:
            (tmp / "answers.jsonl").write_text(
                _jsonl({"_id": q, "answers": list(a)} for q, a in answers.items()), encoding="utf-8"
            )
    return Path(directory)
