"""Search results as passages: what an application shows, rather than ids and arrays."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from korag.data.schema import Corpus, Ranking


@dataclass(frozen=True, slots=True)
class Hit:
    """One retrieved passage, with where it comes from when the corpus recorded it."""

    rank: int
    id: str
    score: float
    text: str = ""
    title: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def file(self) -> str:
        """The source file (or the document's id when the corpus names no file)."""
        return str(self.meta.get("file") or self.meta.get("source_id") or self.id)

    @property
    def pages(self) -> list[int]:
        """The pages the passage spans (PDF passages), else empty."""
        return list(self.meta.get("pages") or [])

    def source(self) -> str:
        """``file p.3`` / ``file pp.3–4`` / the id: where to look."""
        pages = self.pages
        if not pages:
            return self.file
        where = f"p.{pages[0]}" if len(pages) == 1 else f"pp.{pages[0]}–{pages[-1]}"
        return f"{self.file} {where}"

    def to_dict(self) -> dict[str, Any]:
        """The hit as JSON (rank, id, score, title, text, document, file, pages, character offsets)."""
        return {
            "rank": self.rank,
            "id": self.id,
            "score": self.score,
            "title": self.title,
            "text": self.text,
            "document": str(self.meta.get("document") or self.file),
            "file": self.file,
            "pages": self.pages,
            "char_start": self.meta.get("char_start"),
            "char_end": self.meta.get("char_end"),
        }


def ranking_hits(ranking: Ranking, corpus: Corpus | None = None) -> list[list[Hit]]:
    """Each query's results as `Hit`s, with text and title when the corpus is known."""
    out: list[list[Hit]] = []
    for i in range(len(ranking)):
        hits = []
        for rank, (doc_id, score) in enumerate(ranking.row(i), start=1):
            if corpus is not None and doc_id in corpus:
                d = corpus.get(doc_id)
                hits.append(Hit(rank, doc_id, score, d.text, d.title, d.meta))
            else:
                hits.append(Hit(rank, doc_id, score))
        out.append(hits)
    return out


class PassageSearchMixin:
    """`search_passages` / `batch_search` for any retriever with `search` and `corpus()`."""

    def corpus(self) -> Corpus | None:  # pragma: no cover - overridden
        return None

    def batch_search(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        """Ranked passages (text, title, score) for each query."""
        return ranking_hits(self.search(list(queries), k=k), self.corpus())  # type: ignore[attr-defined]

    def search_passages(self, query: str, k: int = 10) -> list[Hit]:
        """Ranked passages (text, title, score) for one query."""
        return self.batch_search([query], k)[0]
