"""Synthetic queries: generated questions tied to the passage they came from.

A `SyntheticQuery` may carry its own positive text: inverse-cloze queries are a sentence cut out
of their passage, and training must see the passage *without* it (otherwise the pair teaches
string matching). Everything else about them is an ordinary query with one relevant document.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from korag import atomic
from korag.data.schema import Corpus, Qrels, Queries, RetrievalSet
from korag.errors import DataError
from korag.util.reading import field as read_field
from korag.util.reading import iter_jsonl

METHODS = ("llm-question", "llm-keyword", "ict", "keyphrase", "human")


@dataclass(frozen=True, slots=True)
class SyntheticQuery:
    """A generated query, the document it was generated from and how."""

    id: str
    text: str
    doc_id: str
    method: str
    positive: str | None = None  # training text of the positive when it differs from the corpus's
    logprob: float | None = None  # mean token log-probability under the generating LLM
    meta: dict[str, Any] = field(default_factory=dict)


def _source_label(source: str | Path | None) -> str | None:
    return str(source) if source is not None else None


class SyntheticSet:
    """Synthetic queries over a corpus, in generation order."""

    def __init__(self, corpus: Corpus, queries: Sequence[SyntheticQuery], *, source: str | Path | None = None) -> None:
        self.corpus = corpus
        self.queries = list(queries)
        seen: set[str] = set()
        for i, q in enumerate(self.queries):
            rec = f"query {i + 1} (id={q.id!r})"
            if q.id in seen:
                raise DataError(_source_label(source), "duplicate query id", record=rec, field="id")
            seen.add(q.id)
            if q.doc_id not in corpus:
                raise DataError(_source_label(source), f"unknown document {q.doc_id!r}", record=rec, field="doc_id")
            if q.method not in METHODS:
                raise DataError(_source_label(source), f"unknown method {q.method!r}", record=rec, field="method")
            if not q.text.strip():
                raise DataError(_source_label(source), "query text is empty", record=rec, field="text")

    def __len__(self) -> int:
        return len(self.queries)

    def filter(self, keep: Iterable[bool]) -> SyntheticSet:
        """The queries whose flag in `keep` is true."""
        return SyntheticSet(self.corpus, [q for q, k in zip(self.queries, keep, strict=True) if k])

    def counts_by_method(self) -> dict[str, int]:
        """How many queries each generator contributed."""
        out: dict[str, int] = {}
        for q in self.queries:
            out[q.method] = out.get(q.method, 0) + 1
        return out

    def to_retrieval_set(self, name: str = "synthetic") -> RetrievalSet:
        """Queries with their source document as the one relevant document (for evaluation and
        round-trip filtering; positive overrides do not matter there)."""
        queries = Queries([q.id for q in self.queries], [q.text for q in self.queries])
        qrels = Qrels({q.id: {q.doc_id: 1} for q in self.queries})
        return RetrievalSet(self.corpus, queries, qrels, name=name)

    def to_training_pairs(self, *, with_title: bool = True, negatives: Mapping[str, Sequence[str]] | None = None):
        """`TrainingPair`s, using each query's own positive text where it has one."""
        from korag.data.training import TrainingPair

        contents = dict(zip(self.corpus.ids, self.corpus.contents(with_title), strict=True))
        titles = dict(zip(self.corpus.ids, self.corpus.titles, strict=True))
        pairs = []
        for q in self.queries:
            if q.positive is not None:
                title = titles[q.doc_id]
                positive = f"{title}\n{q.positive}" if with_title and title else q.positive
            else:
                positive = contents[q.doc_id]
            neg_ids = tuple((negatives or {}).get(q.id, ()))
            pairs.append(TrainingPair(q.text, positive, tuple(contents[n] for n in neg_ids), q.id, q.doc_id, neg_ids))
        return pairs

    def save_jsonl(self, path: str | Path) -> None:
        """One JSON object per query (atomic)."""
        lines = [json.dumps(asdict(q), ensure_ascii=False) for q in self.queries]
        atomic.write_text(path, "\n".join(lines) + ("\n" if lines else ""))

    @classmethod
    def read_jsonl(cls, path: str | Path, corpus: Corpus) -> SyntheticSet:
        """Read what `save_jsonl` wrote, validating every record against `corpus`."""
        out = []
        for lineno, obj in iter_jsonl(path):
            rec = f"line {lineno}"
            logprob = obj.get("logprob")
            if logprob is not None and not isinstance(logprob, int | float):
                raise DataError(path, "must be a number or null", record=rec, field="logprob")
            positive = obj.get("positive")
            if positive is not None and not isinstance(positive, str):
                raise DataError(path, "must be text or null", record=rec, field="positive")
            out.append(
                SyntheticQuery(
                    id=read_field(obj, "id", str, source=path, record=rec, nonempty=True),
                    text=read_field(obj, "text", str, source=path, record=rec, nonempty=True),
                    doc_id=read_field(obj, "doc_id", str, source=path, record=rec, nonempty=True),
                    method=read_field(obj, "method", str, source=path, record=rec, nonempty=True),
                    positive=positive,
                    logprob=logprob,
                    meta=read_field(obj, "meta", dict, source=path, record=rec, default={}),
                )
            )
        return cls(corpus, out, source=path)
