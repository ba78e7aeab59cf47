"""Loaded data as stored inside the artifact store, so later stages can reopen it exactly.

A directory in BEIR layout (``corpus.jsonl``, ``queries.jsonl``, ``qrels/test.tsv``), plus
``examples.jsonl`` for QA sets (questions with answers, offsets and gold documents) and
``dataset.json`` saying which of Corpus / RetrievalSet / QASet it holds.
"""

from __future__ import annotations

import json
from pathlib import Path

from korag import atomic
from korag.data.beir import read_beir, write_beir, write_corpus_jsonl
from korag.data.jsonl import read_corpus_jsonl
from korag.data.schema import Corpus, QAExample, QASet, RetrievalSet
from korag.util.reading import iter_jsonl

Dataset = RetrievalSet | QASet | Corpus


def save_dataset(data: Dataset, directory: str | Path) -> Path:
    """Write `data` to a new directory (atomically)."""
    d = Path(directory)
    if isinstance(data, Corpus):
        with atomic.atomic_directory(d) as tmp:
            write_corpus_jsonl(data, tmp / "corpus.jsonl")
            atomic.write_json(tmp / "dataset.json", {"kind": "corpus", "name": data.name})
        return d
    rs = data.to_retrieval_set() if isinstance(data, QASet) else data
    answers = {e.id: e.answers for e in data.examples} if isinstance(data, QASet) else None
    write_beir(rs, d, answers=answers)
    if isinstance(data, QASet):
        rows = (
            {
                "id": e.id,
                "question": e.question,
                "answers": list(e.answers),
                "doc_ids": list(e.doc_ids),
                "answer_starts": list(e.answer_starts),
            }
            for e in data.examples
        )
        atomic.write_text(d / "examples.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    kind = "qa" if isinstance(data, QASet) else "retrieval"
    atomic.write_json(d / "dataset.json", {"kind": kind, "name": rs.name})
    return d


def open_dataset(directory: str | Path) -> Dataset:
    """Reopen what `save_dataset` wrote."""
    d = Path(directory)
    info = json.loads((d / "dataset.json").read_text(encoding="utf-8"))
    name = info.get("name", "")
    if info["kind"] == "corpus":
        return read_corpus_jsonl(
            d / "corpus.jsonl", id_field_name="_id", text_field="text", title_field="title", name=name
        )
    rs = read_beir(d, "test", name=name)
    if info["kind"] == "retrieval":
        return rs
    examples = [
        QAExample(str(o["id"]), o["question"], tuple(o["answers"]), tuple(o["doc_ids"]), tuple(o["answer_starts"]))
        for _, o in iter_jsonl(d / "examples.jsonl")
    ]
    return QASet(rs.corpus, examples, name=name)
