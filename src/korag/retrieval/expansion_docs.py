"""Document expansion (doc2query): generated queries appended to a passage's *indexed* text.

A passage that answers "누가 한글을 만들었나?" but says "세종이 훈민정음을 창제하였다" shares no
term with the question; the queries an LLM wrote for it (`korag synth queries`) do. Appending
them to what a lexical index sees (BM25, learned sparse) lets the passage match them, while what
is shown — search results, the corpus saved beside an index, a collection's passages — stays the
original text: an expansion is a guess about how people ask, not content to cite.

Two shapes of the same operation, so callers pick what fits:

- `expand_corpus(corpus, expansions)`: a new `Corpus` whose texts carry the expansions (for code
  that indexes a corpus itself);
- `ExpandedRetriever(base, expansions)`: a retriever that indexes (and `add`s) expanded text
  through `base` and keeps the original passages as its corpus, so `search_passages`, `save`
  and a collection's displayed text never see the expansion.

Expansions are read from JSON Lines (`read_expansions`): what `korag synth queries` writes
(``{"doc_id", "text", …}`` per query), or one record per passage ``{"doc_id", "queries": [...]}``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from korag import atomic
from korag.data.schema import Corpus, Queries, Ranking
from korag.errors import ConfigError, DataError
from korag.retrieval.base import Retriever, RetrieverBase

log = logging.getLogger(__name__)

EXPANSION_FILE = "expansion.json"
#: one line per query, after the passage: sentence-based tokenizers (Kiwi) then never read a query
#: as the passage's last sentence continued
SEPARATOR = "\n"


@dataclass
class ExpansionStats:
    """What an expansion file held and how much of it applied to a corpus."""

    records: int = 0
    queries: int = 0
    documents: int = 0
    unknown_documents: int = 0
    duplicates: int = 0
    examples_unknown: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counts."""
        return {
            "records": self.records,
            "queries": self.queries,
            "documents": self.documents,
            "unknown_documents": self.unknown_documents,
            "duplicates": self.duplicates,
        }


def read_expansions(path: str | Path) -> dict[str, list[str]]:
    """Queries per document id from a JSON Lines file, in file order, duplicates dropped.

    Each line is ``{"doc_id": ID, "text": QUERY}`` (korag synth queries' output; ``query`` is
    accepted for ``text``) or ``{"doc_id": ID, "queries": [QUERY, ...]}``. A malformed line is a
    `DataError` naming the file, line and field."""
    from korag.util.reading import id_field, iter_jsonl

    out: dict[str, list[str]] = {}
    for lineno, obj in iter_jsonl(path):
        rec = f"line {lineno}"
        doc_id = id_field(obj, "doc_id", source=path, record=rec)
        if "queries" in obj:
            value = obj["queries"]
            if not isinstance(value, list) or not all(isinstance(q, str) for q in value):
                raise DataError(path, "expected a list of strings", record=rec, field="queries")
            texts = value
        else:
            name = "text" if "text" in obj else "query" if "query" in obj else None
            if name is None:
                raise DataError(
                    path, "missing field (a query as 'text', or a list as 'queries')", record=rec, field="text"
                )
            if not isinstance(obj[name], str):
                raise DataError(path, f"expected a string, got {type(obj[name]).__name__}", record=rec, field=name)
            texts = [obj[name]]
        bucket = out.setdefault(doc_id, [])
        for t in texts:
            t = " ".join(t.split())
            if t and t not in bucket:
                bucket.append(t)
    if not out:
        raise DataError(path, "no expansions in the file")
    return out


def expand_corpus(
    corpus: Corpus,
    expansions: Mapping[str, Sequence[str]],
    *,
    max_per_doc: int | None = None,
    stats: ExpansionStats | None = None,
) -> Corpus:
    """`corpus` with each passage's expansions (at most `max_per_doc`) appended to its text; ids,
    titles, metadata and order unchanged. Expansions of ids not in `corpus` are ignored (and
    counted in `stats`)."""
    if max_per_doc is not None and max_per_doc < 1:
        raise ConfigError(f"max_per_doc must be at least 1 (got {max_per_doc})")
    texts = list(corpus.texts)
    expanded = added = 0
    for doc_id, queries in expansions.items():
        if doc_id not in corpus:
            continue
        chosen = [q for q in queries if q.strip()][:max_per_doc]
        if not chosen:
            continue
        i = corpus.index_of(doc_id)
        texts[i] = texts[i] + SEPARATOR + SEPARATOR.join(chosen)
        expanded += 1
        added += len(chosen)
    if stats is not None:
        unknown = [d for d in expansions if d not in corpus]
        stats.records = sum(len(q) for q in expansions.values())
        stats.queries, stats.documents = added, expanded
        stats.unknown_documents, stats.examples_unknown = len(unknown), unknown[:3]
    return Corpus(corpus.ids, texts, corpus.titles, corpus.metas, name=corpus.name)


class ExpandedRetriever(RetrieverBase):
    """A retriever indexing passages with their expansions, answering with the originals.

    Queries go to `base` unchanged (expansion is index-time only), so a saved index is an
    ordinary `base` index — `load_retriever` opens it and searches match the expansions — with
    ``expansion.json`` beside it recording what was appended. `base` must keep an attachable
    corpus (every `RetrieverBase` does); otherwise its saved passages would hold the expansions.
    """

    name = "expanded"

    def __init__(
        self,
        base: Retriever,
        expansions: Mapping[str, Sequence[str]],
        *,
        max_per_doc: int | None = None,
        source: str | None = None,
    ) -> None:
        if not hasattr(base, "attach_corpus"):
            raise ConfigError(f"{type(base).__name__} cannot keep the original passages apart from what it indexes")
        super().__init__()
        self.base = base
        self.expansions = {k: list(v) for k, v in expansions.items()}
        self.max_per_doc = max_per_doc
        self.source = source
        self.stats = ExpansionStats()

    def index(self, corpus: Corpus, *, show_progress: bool = False) -> None:
        """Index the expanded passages with the base retriever; keep the originals as the corpus."""
        expanded = expand_corpus(corpus, self.expansions, max_per_doc=self.max_per_doc, stats=self.stats)
        if self.stats.unknown_documents:
            log.warning(
                "%d expansion document id(s) are not in the corpus (e.g. %s); they are ignored",
                self.stats.unknown_documents,
                ", ".join(repr(d) for d in self.stats.examples_unknown),
            )
        self.base.index(expanded, show_progress=show_progress)
        self._corpus = corpus
        self.base.attach_corpus(corpus)  # type: ignore[attr-defined]
        self.timings = dict(getattr(self.base, "timings", {}))

    def add(self, corpus: Corpus, *, show_progress: bool = False) -> None:
        """Add passages (expanded where expansions name them) through the base retriever."""
        if not hasattr(self.base, "add"):
            raise ConfigError(f"{type(self.base).__name__} cannot add documents")
        added = ExpansionStats()
        self.base.add(
            expand_corpus(corpus, self.expansions, max_per_doc=self.max_per_doc, stats=added),
            show_progress=show_progress,
        )  # type: ignore[attr-defined]
        self.stats.documents += added.documents
        self.stats.queries += added.queries
        known = self.corpus()
        self._corpus = known.concat(corpus) if known is not None else corpus
        self.base.attach_corpus(self._corpus)  # type: ignore[attr-defined]

    def delete(self, doc_ids: Sequence[str] | str) -> int:
        """Remove passages by id from the base index and from the originals."""
        ids = [doc_ids] if isinstance(doc_ids, str) else list(doc_ids)
        removed = self.base.delete(ids)  # type: ignore[attr-defined]
        known = self.corpus()
        if known is not None and removed:
            gone = set(ids)
            self._corpus = known.subset(i for i, d in enumerate(known.ids) if d not in gone)
            self.base.attach_corpus(self._corpus)  # type: ignore[attr-defined]
        return removed

    def search(self, queries: Queries | Sequence[str], k: int = 10, *, show_progress: bool = False) -> Ranking:
        """The base retriever's ranking (its index holds the expansions)."""
        ranking = self.base.search(queries, k=k, show_progress=show_progress)
        self.timings = dict(getattr(self.base, "timings", {}))
        return ranking

    def corpus(self) -> Corpus | None:
        """The original passages (never the expanded text)."""
        return self._corpus if self._corpus is not None else self.base.corpus()

    def save(self, path: str | Path, **kwargs: Any) -> None:
        """Save the base retriever (with the original passages) and ``expansion.json`` beside it."""
        self.base.save(path, **kwargs)  # type: ignore[call-arg]
        atomic.write_json(Path(path) / EXPANSION_FILE, self.expansion_info())

    def expansion_info(self) -> dict[str, Any]:
        """What was appended: source file, cap per passage and counts."""
        return {"method": "doc2query", "source": self.source, "max_per_doc": self.max_per_doc, **self.stats.to_dict()}

    def label(self) -> str:
        """The base's label, marked as expanded."""
        return f"{self.base.describe()['name']}+doc2query"

    def settings(self) -> dict[str, Any]:
        """The base's description and the expansion's."""
        return {"base": self.base.describe(), "expansion": self.expansion_info()}
