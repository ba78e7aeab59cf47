"""HotpotQA JSON (a list of multi-hop questions with their context paragraphs) → `QASet`.

Each record has ``_id``, ``question``, ``answer``, ``supporting_facts`` (``[title, sentence
index]`` pairs) and ``context`` (``[title, [sentences]]`` pairs; distractor files give ten per
question, gold and distractors mixed). Every distinct paragraph becomes one document, shared by
the questions whose context holds it; its id is its title (``title (2)``, ``(3)``… when one title
comes with different texts). A question's relevant documents are its supporting paragraphs in
the order the supporting facts name them — the hop order iterative readers follow.

Sentences are joined as given (HotpotQA keeps their leading spaces); ``meta["sentence_starts"]``
holds each sentence's character offset so supporting sentences can be located again.
Test files without answers or supporting facts read with empty answers and no relevant documents.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from korag.data.schema import Corpus, QAExample, QASet
from korag.errors import DataError
from korag.util.reading import field, id_field, load_json


def read_hotpotqa(path: str | Path, *, name: str | None = None) -> QASet:
    """Read a HotpotQA file (train, dev distractor or fullwiki) into a validated `QASet`."""
    src = Path(path)
    root = load_json(src)
    if not isinstance(root, list):
        raise DataError(src, "expected a JSON list of questions (HotpotQA layout)")
    first = root[0] if root else None
    if not (isinstance(first, dict) and "context" in first and "question" in first):
        keys = sorted(first)[:6] if isinstance(first, dict) else type(first).__name__
        raise DataError(
            src,
            "not a format korag reads as JSON — tried HotpotQA (a top-level list of questions), but its first "
            f"record has no 'question' and 'context' (it has {keys}); SQuAD and KorQuAD 1.0/2.x need a top-level "
            "object with a 'data' list; a corpus of one object per line is JSONL (name it .jsonl); BEIR is a directory",
        )
    return parse_hotpotqa(root, source=src, name=name or src.stem)


def _paragraph(item: Any, source: Path, rec: str) -> tuple[str, list[str]]:
    if (
        not isinstance(item, list)
        or len(item) != 2
        or not isinstance(item[0], str)
        or not isinstance(item[1], list)
        or not all(isinstance(s, str) for s in item[1])
    ):
        raise DataError(source, "expected [title, [sentence, ...]]", record=rec, field="context")
    if not item[0].strip():
        raise DataError(source, "paragraph title is empty", record=rec, field="context")
    return item[0], item[1]


def parse_hotpotqa(records: list[Any], *, source: str | Path, name: str = "") -> QASet:
    """Build a `QASet` from already parsed HotpotQA records."""
    src = Path(source)
    ids: list[str] = []
    texts: list[str] = []
    metas: list[dict[str, Any]] = []
    titles: list[str] = []
    by_title: dict[str, list[int]] = {}  # title → indices of its distinct texts
    examples: list[QAExample] = []
    seen: dict[str, int] = {}
    for r, obj in enumerate(records):
        rec = f"[{r}]"
        if not isinstance(obj, dict):
            raise DataError(src, "expected an object", record=rec)
        qid = id_field(obj, "_id" if "_id" in obj else "id", source=src, record=rec)
        rec = f"[{r}] (_id={qid!r})"
        if qid in seen:
            raise DataError(src, f"duplicate question id (first at [{seen[qid]}])", record=rec, field="_id")
        seen[qid] = r
        question = field(obj, "question", str, source=src, record=rec, nonempty=True)
        answer = field(obj, "answer", str, source=src, record=rec, default="")
        context = field(obj, "context", list, source=src, record=rec)
        local: dict[str, str] = {}  # this record's title → document id
        for c, item in enumerate(context):
            title, sentences = _paragraph(item, src, f"{rec}.context[{c}]")
            text = "".join(sentences)
            doc = next((i for i in by_title.get(title, []) if texts[i] == text), None)
            if doc is None:
                doc = len(ids)
                n = len(by_title.setdefault(title, [])) + 1
                by_title[title].append(doc)
                starts, offset = [], 0
                for s in sentences:
                    starts.append(offset)
                    offset += len(s)
                ids.append(title if n == 1 else f"{title} ({n})")
                texts.append(text)
                titles.append(title)
                metas.append({"sentence_starts": starts})
            local[title] = ids[doc]
        gold: list[str] = []
        for f, fact in enumerate(field(obj, "supporting_facts", list, source=src, record=rec, default=[])):
            if not (
                isinstance(fact, list) and len(fact) == 2 and isinstance(fact[0], str) and isinstance(fact[1], int)
            ):
                raise DataError(
                    src,
                    "expected [title, sentence index]",
                    record=f"{rec}.supporting_facts[{f}]",
                    field="supporting_facts",
                )
            if fact[0] not in local:
                raise DataError(
                    src,
                    f"supporting title {fact[0]!r} is not in the question's context",
                    record=f"{rec}.supporting_facts[{f}]",
                )
            if local[fact[0]] not in gold:
                gold.append(local[fact[0]])
        examples.append(QAExample(qid, question, (answer,) if answer.strip() else (), tuple(gold)))
    if not examples:
        raise DataError(src, "no questions in the file")
    corpus = Corpus(ids, texts, titles, metas, name=name, source=str(src))
    return QASet(corpus, examples, name=name)
