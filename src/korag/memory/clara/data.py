"""CLaRa training data: ml-clara's three JSONL schemas, read with every alias its loader accepts,
and built from any korag QA set.

- Stage 1 (compression pre-training): ``{"data_type": "qa", "question": [..], "answers": [..],
  "docs": [doc]}`` — parallel question/answer lists about one document — or
  ``{"data_type": "paraphrase", "docs": [doc], "answer": paraphrase}``.
- Stage 2 (instruction tuning): ``{"question": str, "docs": [k docs], "answer": str}``; the
  README's ``gold_answer`` is accepted as the answer when ``answer`` is absent.
- Stage 3 (end to end): stage 2 plus ``"pos_index": [indices of the gold documents]``.

Documents come from ``docs``, ``context`` or ``content`` (a list); the answer from ``answer``
(text), ``answers`` (a list) or ``golden_answers`` (a list, first item) — ml-clara's order —
and, unlike ml-clara, from ``gold_answer``: its README's stage-3 example uses only that field,
which its own loader rejects.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from korag import atomic
from korag.data.schema import QASet
from korag.errors import ConfigError, DataError
from korag.util.reading import iter_jsonl

DOC_FIELDS = ("docs", "context", "content")
Stage = Literal[1, 2, 3]


@dataclass(frozen=True, slots=True)
class ClaraExample:
    """One training record: questions and answers (parallel; one each after stage 1), the
    documents, the record kind and, for stage 3, which documents are gold."""

    questions: tuple[str, ...]
    answers: tuple[str, ...]
    docs: tuple[str, ...]
    kind: Literal["qa", "paraphrase"] = "qa"
    positives: tuple[int, ...] = ()

    def to_json(self, stage: Stage) -> dict[str, object]:
        """The record in ml-clara's layout for `stage`."""
        if stage == 1:
            if self.kind == "paraphrase":
                return {"data_type": "paraphrase", "docs": list(self.docs), "answer": self.answers[0]}
            return {
                "data_type": "qa",
                "question": list(self.questions),
                "answers": list(self.answers),
                "docs": list(self.docs),
            }
        out: dict[str, object] = {"question": self.questions[0], "docs": list(self.docs), "answer": self.answers[0]}
        if stage == 3:
            out["pos_index"] = list(self.positives)
        return out


def _strings(value: object, path: Path, rec: str, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise DataError(path, "expected a list of strings", record=rec, field=name)
    return tuple(value)


def _answers(obj: dict, path: Path, rec: str) -> tuple[str, ...]:
    if isinstance(obj.get("answer"), str):
        return (obj["answer"],)
    if "answers" in obj:
        return _strings(obj["answers"], path, rec, "answers")
    if "golden_answers" in obj:
        gold = _strings(obj["golden_answers"], path, rec, "golden_answers")
        if not gold:
            raise DataError(path, "is empty", record=rec, field="golden_answers")
        return gold[:1]
    if isinstance(obj.get("gold_answer"), str):
        return (obj["gold_answer"],)
    raise DataError(path, "no answer: expected 'answer', 'answers', 'golden_answers' or 'gold_answer'", record=rec)


def _example(obj: dict, path: Path, rec: str, stage: Stage) -> ClaraExample:
    field = next((f for f in DOC_FIELDS if f in obj), None)
    if field is None:
        raise DataError(path, f"no documents: expected one of {', '.join(DOC_FIELDS)} (a list)", record=rec)
    docs = _strings(obj[field], path, rec, field)
    if not docs:
        raise DataError(path, "has no documents", record=rec, field=field)
    kind = obj.get("data_type", "qa")
    if kind not in ("qa", "paraphrase"):
        raise DataError(path, f"unknown data_type {kind!r} (qa or paraphrase)", record=rec, field="data_type")
    answers = _answers(obj, path, rec)
    if kind == "paraphrase":
        if stage != 1:
            raise DataError(path, "paraphrase records belong to stage 1", record=rec, field="data_type")
        return ClaraExample((), answers[:1], docs, "paraphrase")
    q = obj.get("question")
    if stage == 1:
        questions = (q,) if isinstance(q, str) else _strings(q, path, rec, "question")
        if len(questions) != len(answers):
            raise DataError(
                path, f"{len(questions)} question(s) but {len(answers)} answer(s); they must pair up", record=rec
            )
        return ClaraExample(questions, answers, docs)
    if not isinstance(q, str) or not q.strip():
        raise DataError(path, "expected a non-empty string", record=rec, field="question")
    if "pos_index" not in obj and stage == 3:
        raise DataError(path, "stage 3 needs the indices of the gold documents", record=rec, field="pos_index")
    return ClaraExample((q,), answers[:1], docs, "qa", _positives(obj, len(docs), path, rec))


def _positives(obj: dict, n_docs: int, path: Path, rec: str) -> tuple[int, ...]:
    """The ``pos_index`` of a record (indices of its gold documents), checked; () when absent."""
    if "pos_index" not in obj:
        return ()
    pos = obj["pos_index"]
    if not isinstance(pos, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in pos):
        raise DataError(path, "expected a list of document indices", record=rec, field="pos_index")
    bad = [i for i in pos if not 0 <= i < n_docs]
    if bad:
        raise DataError(path, f"index {bad[0]} is outside the {n_docs} documents", record=rec, field="pos_index")
    return tuple(pos)


def read_clara_jsonl(path: str | Path, stage: Stage) -> list[ClaraExample]:
    """Every record of an ml-clara JSONL file for `stage`, validated (errors name line and field)."""
    if stage not in (1, 2, 3):
        raise ConfigError(f"stage must be 1, 2 or 3 (got {stage})")
    p = Path(path)
    return [_example(obj, p, f"line {n}", stage) for n, obj in iter_jsonl(p)]


def write_clara_jsonl(examples: Sequence[ClaraExample], path: str | Path, stage: Stage) -> None:
    """Write `examples` in ml-clara's layout (atomically)."""
    lines = [json.dumps(e.to_json(stage), ensure_ascii=False) for e in examples]
    atomic.write_text(path, "\n".join(lines) + ("\n" if lines else ""))


def stage1_from_qa(qa: QASet, *, with_title: bool = True) -> list[ClaraExample]:
    """One record per passage that has questions: all of its questions with their first answers."""
    by_doc: dict[str, list[tuple[str, str]]] = {}
    for e in qa.examples:
        if e.doc_ids and e.answers:
            by_doc.setdefault(e.doc_ids[0], []).append((e.question, e.answers[0]))
    contents = dict(zip(qa.corpus.ids, qa.corpus.contents(with_title), strict=True))
    return [
        ClaraExample(tuple(q for q, _ in pairs), tuple(a for _, a in pairs), (contents[d],))
        for d, pairs in by_doc.items()
    ]


def retrieval_examples(
    qa: QASet,
    retriever,
    *,
    k: int = 5,
    oracle: bool = False,
    with_title: bool = True,
    seed: int = 0,
) -> list[ClaraExample]:
    """Stage-2/3 records: each question with the retriever's top-k passages (`retriever` already
    indexed on the corpus) and `pos_index` marking the gold ones. With `oracle`, a gold passage the
    retriever missed replaces the last retrieved one, at a random position (the generator must not
    learn that gold sits last). A question for which the retriever finds fewer than k passages
    (BM25 returns only passages that share a term with it) gets random others to make k: every
    record reads the same number of documents."""
    if k < 1:
        raise ConfigError(f"k must be at least 1 (got {k})")
    rng = random.Random(seed)
    judged = [e for e in qa.examples if e.doc_ids and e.answers]
    from korag.data.schema import Queries

    ranking = retriever.search(Queries([e.id for e in judged], [e.question for e in judged]), k=k)
    hits = dict(ranking.items())
    contents = dict(zip(qa.corpus.ids, qa.corpus.contents(with_title), strict=True))
    out = []
    for e in judged:
        ids = [d for d, _ in hits[e.id]][:k]
        while len(ids) < min(k, len(qa.corpus)):
            d = qa.corpus.ids[rng.randrange(len(qa.corpus))]
            if d not in ids:
                ids.append(d)
        gold = set(e.doc_ids)
        if oracle and not gold & set(ids):
            ids = ids[: k - 1]
            ids.insert(rng.randrange(len(ids) + 1), e.doc_ids[0])
        pos = tuple(i for i, d in enumerate(ids) if d in gold)
        out.append(ClaraExample((e.question,), (e.answers[0],), tuple(contents[d] for d in ids), "qa", pos))
    return out
