"""korag's internal vocabulary: the types every stage reads and writes.

Containers that may hold millions of items (`Corpus`, `Queries`, `Ranking`) are columnar:
they keep parallel lists / numpy arrays and build a `Document` or `Query` only when one is
asked for, so a million-document corpus costs a few lists of strings, not a million objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from korag.errors import DataError

__all__ = [
    "Corpus",
    "Document",
    "QAExample",
    "QASet",
    "Qrels",
    "Queries",
    "Query",
    "Ranking",
    "RetrievalSet",
]


@dataclass(frozen=True, slots=True)
class Document:
    """One retrievable unit: a passage, a chunk of a PDF, a paragraph of an article."""

    id: str
    text: str
    title: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)

    def content(self, with_title: bool = True) -> str:
        """The text a retriever indexes: title and text joined by a space, or text alone."""
        return f"{self.title} {self.text}" if with_title and self.title else self.text


@dataclass(frozen=True, slots=True)
class Query:
    """A search query or question."""

    id: str
    text: str


@dataclass(frozen=True, slots=True)
class QAExample:
    """A question with its gold answers and the documents that contain them."""

    id: str
    question: str
    answers: tuple[str, ...]
    doc_ids: tuple[str, ...] = ()
    answer_starts: tuple[int, ...] = ()


def _check_ids(ids: Sequence[str], what: str, source: str | None) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, doc_id in enumerate(ids):
        if not isinstance(doc_id, str) or not doc_id:
            raise DataError(source, f"{what} id must be a non-empty string", record=f"{what} {i + 1}", field="id")
        if doc_id in index:
            raise DataError(
                source,
                f"duplicate {what} id {doc_id!r} (first seen as {what} {index[doc_id] + 1})",
                record=f"{what} {i + 1}",
                field="id",
            )
        index[doc_id] = i
    return index


class Corpus:
    """An ordered collection of documents with unique ids, stored column by column."""

    __slots__ = ("_index", "ids", "metas", "name", "texts", "titles")

    def __init__(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        titles: Sequence[str] | None = None,
        metas: Sequence[Mapping[str, Any]] | None = None,
        *,
        name: str = "",
        source: str | None = None,
    ) -> None:
        n = len(ids)
        if len(texts) != n or (titles is not None and len(titles) != n) or (metas is not None and len(metas) != n):
            raise ValueError("ids, texts, titles and metas must have the same length")
        self.ids: list[str] = list(ids)
        self.texts: list[str] = list(texts)
        self.titles: list[str] = list(titles) if titles is not None else [""] * n
        # Most corpora carry no metadata; `None` saves a million empty dicts.
        self.metas: list[Mapping[str, Any]] | None = list(metas) if metas is not None and any(metas) else None
        self.name = name
        self._index = _check_ids(self.ids, "document", source)
        for i, text in enumerate(self.texts):
            if not isinstance(text, str) or not text.strip():
                raise DataError(
                    source, "document text is empty", record=f"document {i + 1} (id={self.ids[i]!r})", field="text"
                )

    @classmethod
    def from_documents(cls, documents: Iterable[Document], *, name: str = "", source: str | None = None) -> Corpus:
        """Build a corpus from `Document` objects."""
        docs = list(documents)
        return cls(
            [d.id for d in docs],
            [d.text for d in docs],
            [d.title for d in docs],
            [d.meta for d in docs],
            name=name,
            source=source,
        )

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[Document]:
        for i in range(len(self.ids)):
            yield self[i]

    def __getitem__(self, i: int) -> Document:
        meta = self.metas[i] if self.metas is not None else {}
        return Document(self.ids[i], self.texts[i], self.titles[i], meta)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._index

    def __repr__(self) -> str:
        return f"Corpus(name={self.name!r}, documents={len(self)})"

    def get(self, doc_id: str) -> Document:
        """The document with id `doc_id` (KeyError if absent)."""
        return self[self._index[doc_id]]

    def index_of(self, doc_id: str) -> int:
        """Position of `doc_id` in the corpus (KeyError if absent)."""
        return self._index[doc_id]

    def contents(self, with_title: bool = True) -> list[str]:
        """Title + text of every document, in corpus order: what retrievers index."""
        if not with_title:
            return list(self.texts)
        return [f"{t} {x}" if t else x for t, x in zip(self.titles, self.texts, strict=True)]

    def subset(self, indices: Iterable[int], *, name: str | None = None) -> Corpus:
        """A new corpus holding the documents at `indices`, in that order."""
        idx = list(indices)
        return Corpus(
            [self.ids[i] for i in idx],
            [self.texts[i] for i in idx],
            [self.titles[i] for i in idx],
            [self.metas[i] for i in idx] if self.metas is not None else None,
            name=self.name if name is None else name,
        )

    def concat(self, other: Corpus) -> Corpus:
        """Documents of `self` followed by those of `other` (ids must stay unique)."""
        return Corpus(
            self.ids + other.ids,
            self.texts + other.texts,
            self.titles + other.titles,
            (self.metas or [{}] * len(self)) + (other.metas or [{}] * len(other)),
            name=self.name,
        )


class Queries:
    """An ordered collection of queries with unique ids, stored column by column."""

    __slots__ = ("_index", "ids", "texts")

    def __init__(self, ids: Sequence[str], texts: Sequence[str], *, source: str | None = None) -> None:
        if len(ids) != len(texts):
            raise ValueError("ids and texts must have the same length")
        self.ids: list[str] = list(ids)
        self.texts: list[str] = list(texts)
        self._index = _check_ids(self.ids, "query", source)
        for i, text in enumerate(self.texts):
            if not isinstance(text, str) or not text.strip():
                raise DataError(
                    source, "query text is empty", record=f"query {i + 1} (id={self.ids[i]!r})", field="text"
                )

    @classmethod
    def from_texts(cls, texts: Sequence[str]) -> Queries:
        """Queries with ids "0", "1", … for ad-hoc search."""
        return cls([str(i) for i in range(len(texts))], list(texts))

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[Query]:
        for i, t in zip(self.ids, self.texts, strict=True):
            yield Query(i, t)

    def __getitem__(self, i: int) -> Query:
        return Query(self.ids[i], self.texts[i])

    def __contains__(self, qid: object) -> bool:
        return qid in self._index

    def get(self, qid: str) -> Query:
        """The query with id `qid` (KeyError if absent)."""
        return self[self._index[qid]]

    def subset(self, qids: Iterable[str]) -> Queries:
        """The queries whose ids are in `qids`, in the order given."""
        idx = [self._index[q] for q in qids]
        return Queries([self.ids[i] for i in idx], [self.texts[i] for i in idx])


class Qrels:
    """Relevance judgements: query id → document id → integer grade (0 = judged not relevant)."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Mapping[str, int]] | None = None) -> None:
        self._data: dict[str, dict[str, int]] = {}
        for qid, docs in (data or {}).items():
            self._data[qid] = {d: int(g) for d, g in docs.items()}

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, str, int]]) -> Qrels:
        """Build from (query id, document id, grade) rows; a repeated pair keeps its last grade."""
        data: dict[str, dict[str, int]] = {}
        for qid, did, grade in rows:
            data.setdefault(qid, {})[did] = int(grade)
        return cls(data)

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __contains__(self, qid: object) -> bool:
        return qid in self._data

    def __getitem__(self, qid: str) -> dict[str, int]:
        return self._data[qid]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Qrels) and self._data == other._data

    def items(self) -> Iterator[tuple[str, dict[str, int]]]:
        """(query id, {document id: grade}) pairs."""
        return iter(self._data.items())

    def relevant(self, qid: str, min_grade: int = 1) -> dict[str, int]:
        """Documents judged at least `min_grade` for `qid`."""
        return {d: g for d, g in self._data.get(qid, {}).items() if g >= min_grade}

    def rows(self) -> Iterator[tuple[str, str, int]]:
        """(query id, document id, grade) rows in insertion order."""
        for qid, docs in self._data.items():
            for did, grade in docs.items():
                yield qid, did, grade

    def num_pairs(self) -> int:
        """Number of judged (query, document) pairs."""
        return sum(len(d) for d in self._data.values())

    def restrict(self, qids: Iterable[str]) -> Qrels:
        """Judgements for the given queries only."""
        keep = set(qids)
        return Qrels({q: d for q, d in self._data.items() if q in keep})

    def to_dict(self) -> dict[str, dict[str, int]]:
        """A plain nested dict copy (for JSON or reference evaluators)."""
        return {q: dict(d) for q, d in self._data.items()}


@dataclass(slots=True)
class RetrievalSet:
    """A corpus, queries and judgements: everything an IR evaluation needs."""

    corpus: Corpus
    queries: Queries
    qrels: Qrels
    name: str = ""

    def validate(self, source: str | None = None) -> RetrievalSet:
        """Check that every judgement names a known query and a known document."""
        for qid, did, _ in self.qrels.rows():
            if qid not in self.queries:
                raise DataError(source, f"qrels name unknown query {qid!r}", record=f"query {qid!r}", field="query-id")
            if did not in self.corpus:
                raise DataError(
                    source, f"qrels name unknown document {did!r}", record=f"query {qid!r}", field="corpus-id"
                )
        return self

    def judged_queries(self) -> Queries:
        """The queries that have at least one relevant document — the ones an evaluation scores."""
        return self.queries.subset(q for q in self.queries.ids if self.qrels.relevant(q))


@dataclass(slots=True)
class QASet:
    """A corpus and questions whose answers are spans of (or facts in) its documents."""

    corpus: Corpus
    examples: list[QAExample]
    name: str = ""

    def validate(self, source: str | None = None) -> QASet:
        """Check unique question ids and that every referenced document exists."""
        seen: set[str] = set()
        for n, ex in enumerate(self.examples, start=1):
            record = f"question {n} (id={ex.id!r})"
            if ex.id in seen:
                raise DataError(source, f"duplicate question id {ex.id!r}", record=record, field="id")
            seen.add(ex.id)
            if not ex.question.strip():
                raise DataError(source, "question is empty", record=record, field="question")
            for did in ex.doc_ids:
                if did not in self.corpus:
                    raise DataError(source, f"unknown document {did!r}", record=record, field="doc_ids")
        return self

    def to_retrieval_set(self) -> RetrievalSet:
        """Questions as queries; each question's relevant documents are its `doc_ids` (grade 1)."""
        queries = Queries([e.id for e in self.examples], [e.question for e in self.examples])
        qrels = Qrels({e.id: dict.fromkeys(e.doc_ids, 1) for e in self.examples if e.doc_ids})
        return RetrievalSet(self.corpus, queries, qrels, name=self.name)


class Ranking:
    """Top-k results per query, as arrays.

    `indices[i, j]` is the position (in `doc_ids`) of the j-th result for `query_ids[i]`,
    `scores[i, j]` its score; rows are sorted by descending score and padded with -1 /
    -inf when a query has fewer than k results. `doc_ids` is usually the corpus' id list.
    """

    __slots__ = ("doc_ids", "indices", "query_ids", "scores")

    def __init__(
        self,
        query_ids: Sequence[str],
        indices: np.ndarray,
        scores: np.ndarray,
        doc_ids: Sequence[str],
    ) -> None:
        indices = np.asarray(indices, dtype=np.int64)
        scores = np.asarray(scores, dtype=np.float32)
        if indices.ndim != 2 or indices.shape != scores.shape or indices.shape[0] != len(query_ids):
            raise ValueError("indices and scores must both be (num_queries, k) arrays")
        self.query_ids = list(query_ids)
        self.indices = indices
        self.scores = scores
        self.doc_ids = doc_ids

    @classmethod
    def from_dict(
        cls,
        results: Mapping[str, Mapping[str, float] | Sequence[tuple[str, float]]],
        doc_ids: Sequence[str] | None = None,
    ) -> Ranking:
        """Build from {query id: {doc id: score}} or {query id: [(doc id, score), …]}."""
        rows = {q: list(r.items()) if isinstance(r, Mapping) else list(r) for q, r in results.items()}
        if doc_ids is None:
            seen: dict[str, int] = {}
            for r in rows.values():
                for d, _ in r:
                    seen.setdefault(d, len(seen))
            doc_ids = list(seen)
            position = seen
        else:
            position = {d: i for i, d in enumerate(doc_ids)}
        k = max((len(r) for r in rows.values()), default=0)
        indices = np.full((len(rows), k), -1, dtype=np.int64)
        scores = np.full((len(rows), k), -np.inf, dtype=np.float32)
        for i, r in enumerate(rows.values()):
            r = sorted(r, key=lambda x: -x[1])
            indices[i, : len(r)] = [position[d] for d, _ in r]
            scores[i, : len(r)] = [s for _, s in r]
        return cls(list(rows), indices, scores, doc_ids)

    def __len__(self) -> int:
        return len(self.query_ids)

    @property
    def k(self) -> int:
        """Width of the result arrays (the largest number of results of any query)."""
        return int(self.indices.shape[1])

    def row(self, i: int) -> list[tuple[str, float]]:
        """Results of the i-th query as (doc id, score), best first."""
        return [(self.doc_ids[j], float(s)) for j, s in zip(self.indices[i], self.scores[i], strict=True) if j >= 0]

    def __getitem__(self, qid: str) -> list[tuple[str, float]]:
        return self.row(self.query_ids.index(qid))

    def items(self) -> Iterator[tuple[str, list[tuple[str, float]]]]:
        """(query id, [(doc id, score), …]) for every query."""
        for i, q in enumerate(self.query_ids):
            yield q, self.row(i)

    def to_dict(self) -> dict[str, dict[str, float]]:
        """{query id: {doc id: score}} — the run format of trec_eval-style tools."""
        return {q: dict(r) for q, r in self.items()}

    def top(self, k: int) -> Ranking:
        """The same ranking cut to its first k results per query."""
        return Ranking(self.query_ids, self.indices[:, :k], self.scores[:, :k], self.doc_ids)
