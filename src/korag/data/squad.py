"""SQuAD v1.1 / v2.0 and KorQuAD 1.0 JSON (same layout) → `QASet`.

Each paragraph becomes one document (id ``"<article>-<paragraph>"``, 0-based, titled with its
article's title) and each question one `QAExample` whose relevant document is its paragraph.
Unanswerable SQuAD 2.0 questions keep no relevant document.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from korag.data.schema import Corpus, QAExample, QASet
from korag.data.spans import find_span
from korag.errors import DataError
from korag.util.reading import field, id_field, load_json


def paragraph_id(article_index: int, paragraph_index: int) -> str:
    """The document id korag gives a SQuAD-layout paragraph."""
    return f"{article_index}-{paragraph_index}"


def read_squad(path: str | Path, *, name: str | None = None) -> QASet:
    """Read a SQuAD-layout file (SQuAD v1.1/v2.0, KorQuAD 1.0) into a validated `QASet`."""
    src = Path(path)
    root = load_json(src)
    if not isinstance(root, dict) or not isinstance(root.get("data"), list):
        raise DataError(src, "expected a JSON object with a 'data' list (SQuAD layout)", field="data")
    return parse_squad(root, source=src, name=name or str(root.get("version") or src.stem))


def parse_squad(root: dict[str, Any], *, source: str | Path, name: str = "") -> QASet:
    """Build a `QASet` from an already parsed SQuAD-layout object."""
    ids: list[str] = []
    texts: list[str] = []
    titles: list[str] = []
    metas: list[dict[str, Any]] = []
    examples: list[QAExample] = []
    seen_q: dict[str, str] = {}
    for a, article in enumerate(root["data"]):
        rec = f"data[{a}]"
        if not isinstance(article, dict):
            raise DataError(source, "expected an object", record=rec)
        title = field(article, "title", str, source=source, record=rec, default="")
        paragraphs = field(article, "paragraphs", list, source=source, record=rec)
        for p, para in enumerate(paragraphs):
            prec = f"{rec}.paragraphs[{p}]"
            if not isinstance(para, dict):
                raise DataError(source, "expected an object", record=prec)
            context = field(para, "context", str, source=source, record=prec, nonempty=True)
            doc_id = paragraph_id(a, p)
            ids.append(doc_id)
            texts.append(context)
            titles.append(title)
            metas.append({"article": title, "article_index": a})
            for q, qa in enumerate(field(para, "qas", list, source=source, record=prec, default=[])):
                qid, qrec, question = read_question(qa, f"{prec}.qas[{q}]", source=source, seen=seen_q)
                answers, starts = _answers(qa, context, source=source, record=qrec)
                impossible = bool(qa.get("is_impossible", False)) or not answers
                examples.append(
                    QAExample(
                        id=qid,
                        question=question.strip(),
                        answers=tuple(answers),
                        doc_ids=() if impossible else (doc_id,),
                        answer_starts=tuple(starts),
                    )
                )
    if not ids:
        raise DataError(source, "no paragraphs found", field="data")
    corpus = Corpus(ids, texts, titles, metas, name=name, source=str(source))
    return QASet(corpus, examples, name=name)


def read_question(qa: Any, record: str, *, source: str | Path, seen: dict[str, str]) -> tuple[str, str, str]:
    """(id, record label with the id, question) of one SQuAD-family ``qas`` entry.

    `seen` maps ids read so far to their record labels; a repeated id is an error naming both.
    """
    if not isinstance(qa, dict):
        raise DataError(source, "expected an object", record=record)
    qid = id_field(qa, "id", source=source, record=record)
    record = f"{record} (id={qid!r})"
    if qid in seen:
        raise DataError(source, f"duplicate question id (first at {seen[qid]})", record=record, field="id")
    seen[qid] = record
    return qid, record, field(qa, "question", str, source=source, record=record, nonempty=True)


def _answers(qa: dict[str, Any], context: str, *, source: str | Path, record: str) -> tuple[list[str], list[int]]:
    raw = field(qa, "answers", list, source=source, record=record, default=[])
    texts: list[str] = []
    starts: list[int] = []
    for i, ans in enumerate(raw):
        path = f"answers[{i}]"
        if not isinstance(ans, dict):
            raise DataError(source, "expected an object with 'text' and 'answer_start'", record=record, field=path)
        text = field(ans, "text", str, source=source, record=record, path=f"{path}.text", nonempty=True)
        hint = field(ans, "answer_start", int, source=source, record=record, path=f"{path}.answer_start", default=None)
        # Offsets off by a few characters are common in converted data; the text decides.
        start = find_span(context, text, hint)
        if start < 0:
            raise DataError(
                source, f"answer {text!r} does not occur in the context", record=record, field=f"{path}.text"
            )
        texts.append(text)
        starts.append(start)
    return texts, starts
