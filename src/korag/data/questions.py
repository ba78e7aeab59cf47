"""Questions with reference answers about a corpus that has no gold passages (a PDF, a folder).

One JSON object per line: ``question`` and the reference answers as ``answers`` (a list),
``answer`` or ``golden_answers``; an ``id`` is optional (numbered by line otherwise). These are
what a user writes by hand about their own document, so the format is the smallest that can be
scored with EM/F1.
"""

from __future__ import annotations

from pathlib import Path

from korag.data.schema import QAExample
from korag.errors import DataError
from korag.util.reading import field, id_field, iter_jsonl

ANSWER_FIELDS = ("answers", "answer", "golden_answers")


def read_questions_jsonl(path: str | Path) -> list[QAExample]:
    """Every question of a JSON Lines file with its reference answers, validated."""
    src = Path(path)
    out: list[QAExample] = []
    seen: dict[str, int] = {}
    for lineno, obj in iter_jsonl(src):
        rec = f"line {lineno}"
        qid = id_field(obj, "id", source=src, record=rec) if "id" in obj else str(lineno)
        if qid in seen:
            raise DataError(src, f"duplicate question id {qid!r} (first on line {seen[qid]})", record=rec, field="id")
        seen[qid] = lineno
        question = field(obj, "question", str, source=src, record=rec, nonempty=True)
        name = next((f for f in ANSWER_FIELDS if f in obj), None)
        if name is None:
            raise DataError(
                src, f"no reference answer: expected one of {', '.join(ANSWER_FIELDS)}", record=rec, field="answers"
            )
        value = obj[name]
        answers = [value] if isinstance(value, str) else value
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            raise DataError(src, "expected a string or a list of strings", record=rec, field=name)
        answers = [a for a in answers if a.strip()]
        if not answers:
            raise DataError(src, "has no non-empty answer", record=rec, field=name)
        out.append(QAExample(qid, question, tuple(answers)))
    if not out:
        raise DataError(src, "no questions in the file")
    return out


def looks_like_questions(path: str | Path) -> bool:
    """Whether `path` is a JSON Lines file whose first record has a question (and no text): a
    questions file given where a corpus or a dataset was expected."""
    import json

    p = Path(path)
    if not p.is_file() or p.suffix.lower() not in (".jsonl", ".json"):
        return False
    try:
        with p.open(encoding="utf-8") as fh:
            first = next((line for line in fh if line.strip()), "")
        obj = json.loads(first)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(obj, dict) and "question" in obj and "text" not in obj
