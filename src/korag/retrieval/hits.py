"""Search results as passages: what an application shows, rather than ids and arrays."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from korag.data.schema import Corpus, Ranking


@dataclass(frozen=True, slots=True)
class Hit:
    """One retrieved passage."""

    rank: int
    id: str
    score: float
    text: str = ""
    title: str = ""


def ranking_hits(ranking: Ranking, corpus: Corpus | None = None) -> list[list[Hit]]:
    """Each query's results as `Hit`s, with text and title when the corpus is known."""
    out: list[list[Hit]] = []
    for i in range(len(ranking)):
        hits = []
        for rank, (doc_id, score) in enumerate(ranking.row(i), start=1):
            if corpus is not None and doc_id in corpus:
                d = corpus.get(doc_id)
                hits.append(Hit(rank, doc_id, score, d.text, d.title))
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
