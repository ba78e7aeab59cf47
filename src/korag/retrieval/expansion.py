"""Query expansion with a Korean–English synonym dictionary, weighted below the original query.

A retriever scores ``score(query) + Σ w_s · score(synonym s)`` where ``w_s`` is the expansion
`weight` times the dictionary entry's trust (`SynonymEntry.weight`). Scoring the synonyms as
separate texts — rather than appending them to the query — keeps their tokens apart from the
query's (no bigram across the join) and lets a lexical retriever add them linearly, so with
``weight < 1`` an expansion can only lift documents that also mention the term in the other
language, never outweigh the words the user typed.

Terms are found as dictionary surface forms inside the query text (`SynonymDict.find`), so a
Korean term with a particle attached (``광합성은``) still matches. A synonym that already
occurs in the query (``DNA(디옥시리보핵산)``) is not added again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from korag.errors import ConfigError
from korag.text.synonyms import SynonymDict


@dataclass(frozen=True)
class QueryExpansion:
    """Expand queries with `synonyms`, each at `weight` × its entry weight, at most
    `max_per_term` synonyms per matched term (the most trusted)."""

    synonyms: SynonymDict
    weight: float = 0.5
    max_per_term: int = 3

    def __post_init__(self) -> None:
        if not 0 <= self.weight <= 1:
            raise ConfigError(f"the expansion weight must be in [0, 1] (got {self.weight})")
        if self.max_per_term < 1:
            raise ConfigError(f"max_per_term must be at least 1 (got {self.max_per_term})")

    def terms(self, query: str) -> list[tuple[str, float]]:
        """(synonym text, weight) to add to `query`, strongest first; the same synonym reached
        from two matched terms counts once, with the larger weight."""
        folded = query.casefold()
        out: dict[str, float] = {}
        for _, _, surface in self.synonyms.find(query):
            for synonym, trust in self.synonyms.expansions(surface)[: self.max_per_term]:
                if synonym.casefold() in folded:
                    continue
                out[synonym] = max(out.get(synonym, 0.0), self.weight * trust)
        return sorted(((s, w) for s, w in out.items() if w > 0), key=lambda p: (-p[1], p[0]))

    def weight_matrix(self, queries: Sequence[str]) -> tuple[list[str], sp.csr_matrix]:
        """The distinct synonym texts of all `queries` and a (queries × synonyms) weight matrix:
        a retriever's expanded query vectors are ``Q + W @ S`` for synonym vectors ``S``."""
        index: dict[str, int] = {}
        rows, cols, vals = [], [], []
        for i, q in enumerate(queries):
            for synonym, w in self.terms(q):
                rows.append(i)
                cols.append(index.setdefault(synonym, len(index)))
                vals.append(w)
        w_matrix = sp.csr_matrix(
            (np.asarray(vals, dtype=np.float32), (rows, cols)), shape=(len(queries), len(index)), dtype=np.float32
        )
        return list(index), w_matrix


class ExpandingRetriever:
    """A BM25 or sparse retriever that always searches with `expansion` (so code that only
    knows the `Retriever` protocol — evaluation, fusion — gets expanded queries)."""

    def __init__(self, inner, expansion: QueryExpansion) -> None:
        if not hasattr(inner, "search") or "expansion" not in inner.search.__code__.co_varnames:
            raise ConfigError(f"{type(inner).__name__} does not support query expansion (BM25 and sparse do)")
        self.inner = inner
        self.expansion = expansion

    def index(self, corpus, *, show_progress: bool = False) -> None:
        """Index with the wrapped retriever."""
        self.inner.index(corpus, show_progress=show_progress)

    def search(self, queries, k: int = 10, *, show_progress: bool = False):
        """The wrapped retriever's search with the expansion."""
        return self.inner.search(queries, k, show_progress=show_progress, expansion=self.expansion)

    def save(self, path) -> None:
        """Save the wrapped retriever (the dictionary is a separate file)."""
        self.inner.save(path)

    def describe(self) -> dict:
        """The wrapped retriever's description with the expansion's settings."""
        inner = self.inner.describe()
        expansion = {"entries": len(self.expansion.synonyms), "weight": self.expansion.weight}
        return {**inner, "name": f"{inner['name']} + synonyms", "expansion": expansion}

    def __getattr__(self, name: str):
        return getattr(self.inner, name)
