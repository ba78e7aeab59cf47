"""KorQuAD readers: 1.0 (SQuAD layout) and 2.x (whole Wikipedia pages as HTML).

KorQuAD 2.x articles are ``{title, url, context: <html>, raw_html, qas: [{id, question,
answer: {text, answer_start, html_answer_start, …}}]}``. The HTML is cleaned to text (tags,
scripts and styles removed, entities decoded, whitespace normalised) and each answer is
re-located in the cleaned text. An article becomes one document, or — with a `ChunkConfig` —
several passages, the relevant ones being those that contain the answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from korag.data.chunk import ChunkConfig, chunk_spans, passages_containing
from korag.data.clean import clean_html, html_to_text, normalize_text
from korag.data.schema import Corpus, Document, QAExample, QASet
from korag.data.spans import find_span
from korag.data.squad import parse_squad, read_question
from korag.errors import DataError
from korag.util.reading import field, load_json


def read_korquad(path: str | Path, *, chunk: ChunkConfig | None = None, name: str | None = None) -> QASet:
    """Read KorQuAD 1.0 or 2.x, telling them apart by their layout."""
    src = Path(path)
    root = load_json(src)
    if not isinstance(root, dict) or not isinstance(root.get("data"), list):
        has = sorted(root)[:6] if isinstance(root, dict) else type(root).__name__
        raise DataError(
            src,
            "expected a JSON object with a 'data' list (SQuAD / KorQuAD layout), found "
            f"{'an object with keys ' + str(has) if isinstance(root, dict) else 'a ' + has}; HotpotQA is a top-level "
            "list of questions; a corpus of one object per line is JSONL (name it .jsonl)",
            field="data",
        )
    name = name or str(root.get("version") or src.stem)
    first = root["data"][0] if root["data"] else {}
    if isinstance(first, dict) and "paragraphs" in first:
        return parse_squad(root, source=src, name=name)
    return parse_korquad2(root, source=src, chunk=chunk, name=name)


def _answer_items(qa: dict[str, Any], *, source: Path, record: str) -> list[tuple[str, int | None, str]]:
    """(text, offset in the HTML context or None, field path) for each answer of a question.

    Accepts ``answer`` or ``answers``, each a dict with ``text`` / ``answer_start`` or a string.
    """
    if "answer" in qa and qa["answer"] is not None:
        raw, base = [qa["answer"]], "answer"
    elif "answers" in qa and qa["answers"] is not None:
        raw, base = qa["answers"], "answers"
        if not isinstance(raw, list):
            raw = [raw]
    else:
        raise DataError(source, "missing field", record=record, field="answer")
    items = []
    for i, ans in enumerate(raw):
        path = base if base == "answer" else f"{base}[{i}]"
        if isinstance(ans, str):
            text, start = ans, None
        elif isinstance(ans, dict):
            text = field(ans, "text", str, source=source, record=record, path=f"{path}.text")
            start = field(
                ans, "answer_start", int, source=source, record=record, path=f"{path}.answer_start", default=None
            )
        else:
            raise DataError(
                source, f"expected an object or a string, got {type(ans).__name__}", record=record, field=path
            )
        if not text.strip():
            raise DataError(source, "is empty", record=record, field=f"{path}.text" if isinstance(ans, dict) else path)
        items.append((text, start, path))
    return items


def parse_korquad2(
    root: dict[str, Any], *, source: str | Path, chunk: ChunkConfig | None = None, name: str = ""
) -> QASet:
    """Build a `QASet` from a parsed KorQuAD 2.x object (see module docstring)."""
    source = Path(source)
    docs: list[Document] = []
    examples: list[QAExample] = []
    seen_q: dict[str, str] = {}
    for a, article in enumerate(root["data"]):
        rec = f"data[{a}]"
        if not isinstance(article, dict):
            raise DataError(source, "expected an object", record=rec)
        title = normalize_text(field(article, "title", str, source=source, record=rec, default=""))
        html = field(article, "context", str, source=source, record=rec, nonempty=True)
        cleaned = clean_html(html)
        if not cleaned.text.strip():
            raise DataError(source, "context has no text after HTML cleaning", record=rec, field="context")
        spans = chunk_spans(cleaned.text, chunk) if chunk else []
        article_docs = _article_documents(article, a, title, cleaned.text, spans)
        docs += article_docs
        doc_ids = [d.id for d in article_docs]
        for q, qa in enumerate(field(article, "qas", list, source=source, record=rec, default=[])):
            qid, qrec, question = read_question(qa, f"{rec}.qas[{q}]", source=source, seen=seen_q)
            answers, starts = _answers_in(qa, cleaned, source=source, record=qrec)
            relevant: list[str] = []
            for answer, start in zip(answers, starts, strict=True):
                hits = passages_containing(spans, start, start + len(answer)) if spans else [0]
                relevant += [doc_ids[i] for i in hits if doc_ids[i] not in relevant]
            # Offsets refer to the article text, so passages (chunks) keep none.
            kept_starts = () if spans else tuple(starts)
            examples.append(QAExample(qid, question.strip(), tuple(answers), tuple(relevant), kept_starts))
    if not docs:
        raise DataError(source, "no articles found", field="data")
    return QASet(Corpus.from_documents(docs, name=name, source=str(source)), examples, name=name)


def _article_documents(article: dict[str, Any], index: int, title: str, text: str, spans: list) -> list[Document]:
    """The article as one document, or as its passages (`spans`) with their offsets."""
    base_id = str(article.get("id") or index)
    meta = {"article": title, "article_index": index, "url": article.get("url", "")}
    if not spans:
        return [Document(base_id, text, title, meta)]
    return [
        Document(
            f"{base_id}#{n}",
            text[s.start : s.end],
            title,
            {**meta, "chunk": n, "char_start": s.start, "char_end": s.end},
        )
        for n, s in enumerate(spans)
    ]


def _answers_in(qa: Any, cleaned, *, source: Path, record: str) -> tuple[list[str], list[int]]:
    """Each answer as plain text and its offset in the cleaned article text."""
    answers: list[str] = []
    starts: list[int] = []
    for text, html_start, path in _answer_items(qa, source=source, record=record):
        plain = html_to_text(text) if "<" in text else normalize_text(text)
        hint = cleaned.to_text_offset(html_start) if html_start is not None else None
        start = find_span(cleaned.text, plain, hint)
        if start < 0:
            raise DataError(
                source, f"answer {plain[:60]!r} not found in the cleaned context", record=record, field=path
            )
        answers.append(plain)
        starts.append(start)
    return answers, starts
