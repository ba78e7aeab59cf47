"""The built-in Korean sample set: original encyclopedia-style passages and questions.

Written for korag (no third-party text), so `korag run` works offline out of the box. It
includes mixed Korean–English terminology and questions that name a concept in the other
language than its passage (``kind`` = ``english-term`` / ``korean-term``), for measuring
cross-lingual term matching.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

from korag.data.schema import Corpus, QAExample, QASet
from korag.data.spans import find_span
from korag.errors import DataError
from korag.util.reading import field, id_field, iter_jsonl

NAME = "korag-sample"


def sample_dir() -> Path:
    """Directory holding ``passages.jsonl`` and ``questions.jsonl``."""
    return Path(str(resources.files("korag") / "resources" / "sample"))


def sample_fingerprint() -> str:
    """Content hash of the sample files (part of the key of stages that load them)."""
    h = hashlib.sha256()
    for name in ("passages.jsonl", "questions.jsonl"):
        h.update((sample_dir() / name).read_bytes())
    return h.hexdigest()


def question_kinds() -> dict[str, str]:
    """Question id → kind (``factoid``, ``english-term``, ``korean-term``)."""
    path = sample_dir() / "questions.jsonl"
    return {str(obj["id"]): str(obj.get("kind", "factoid")) for _, obj in iter_jsonl(path)}


def load_sample() -> QASet:
    """The sample as a `QASet` (passages are documents; each question has one gold passage)."""
    pdir = sample_dir()
    ppath, qpath = pdir / "passages.jsonl", pdir / "questions.jsonl"
    ids, texts, titles, metas = [], [], [], []
    for lineno, obj in iter_jsonl(ppath):
        rec = f"line {lineno}"
        ids.append(id_field(obj, "id", source=ppath, record=rec))
        texts.append(field(obj, "text", str, source=ppath, record=rec, nonempty=True))
        titles.append(field(obj, "title", str, source=ppath, record=rec, default=""))
        metas.append({"topic": obj.get("topic", "")})
    corpus = Corpus(ids, texts, titles, metas, name=NAME, source=str(ppath))
    examples = []
    for lineno, obj in iter_jsonl(qpath):
        rec = f"line {lineno}"
        qid = id_field(obj, "id", source=qpath, record=rec)
        question = field(obj, "question", str, source=qpath, record=rec, nonempty=True)
        answers = tuple(field(obj, "answers", list, source=qpath, record=rec))
        doc_ids = tuple(field(obj, "passage_ids", list, source=qpath, record=rec))
        if not doc_ids or any(d not in corpus for d in doc_ids):
            raise DataError(qpath, f"unknown passage in {doc_ids!r}", record=rec, field="passage_ids")
        context = corpus.get(doc_ids[0]).text
        starts = tuple(find_span(context, a) for a in answers)
        if not answers or min(starts) < 0:
            raise DataError(qpath, "an answer does not occur in its passage", record=rec, field="answers")
        examples.append(QAExample(qid, question, answers, doc_ids, starts))
    return QASet(corpus, examples, name=NAME).validate(str(qpath))
