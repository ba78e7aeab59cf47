"""BM25 on bm25s, with any korag tokenizer and incremental `add` / `delete`.

bm25s is an eager BM25: it precomputes every (token, document) score into a sparse matrix
and answers a query by summing the rows of its tokens. Retrieval, top-k selection and the
on-disk format (memory-mappable) here are bm25s's own — a saved korag index *is* a bm25s index
(``<dir>/bm25s``) that plain `bm25s.BM25.load` opens.

What korag adds, and why it computes the score matrix itself: bm25s builds that matrix from
per-document token lists in a Python loop and cannot change it afterwards. korag keeps the
corpus' term-count matrix (`TermCounts`) and derives the score matrix from it with vectorised
numpy, using bm25s's formulas for each variant (Lucene, Robertson, ATIRE, BM25L, BM25+). Since
N, average length and IDF are corpus-wide, an added or deleted document changes every score;
with the counts kept, that costs one vectorised pass over the non-zeros (milliseconds for
KorQuAD, seconds for millions of passages) instead of re-tokenising the corpus. Updates are
batched: the matrix is rebuilt lazily at the next search or save. `tests/test_bm25.py`
checks the result equals bm25s's own indexing, before and after updates.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import scipy.sparse as sp

from korag import atomic
from korag.data.schema import Corpus, Queries, Ranking
from korag.errors import ConfigError, DataError, ModelError
from korag.retrieval.base import RetrieverBase, as_queries, read_retriever_info, write_indexed_corpus
from korag.retrieval.term_counts import TermCounts
from korag.text.tokenize import Tokenizer, make_tokenizer

if TYPE_CHECKING:
    from korag.retrieval.expansion import QueryExpansion

BM25Method = Literal["lucene", "robertson", "atire", "bm25l", "bm25+"]
METHODS: tuple[str, ...] = ("lucene", "robertson", "atire", "bm25l", "bm25+")


def _idf(method: str, df: np.ndarray, n: int) -> np.ndarray:
    """IDF per token (0 where df = 0), the variants of Kamphuis et al. (ECIR 2020) as in bm25s."""
    d = df.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        if method == "lucene":
            idf = np.log1p((n - d + 0.5) / (d + 0.5))
        elif method == "robertson":
            idf = np.log(np.maximum((n - d + 0.5) / (d + 0.5), 1.0))
        elif method == "atire":
            idf = np.log(n / d)
        elif method == "bm25l":
            idf = np.log((n + 1) / (d + 0.5))
        elif method == "bm25+":
            idf = np.log((n + 1) / d)
        else:
            raise ConfigError(f"unknown BM25 method {method!r}; choose from {', '.join(METHODS)}")
    return np.where(df > 0, idf, 0.0)


def _tfc(method: str, tf: np.ndarray, dl: np.ndarray | float, avgdl: float, k1: float, b: float, delta: float):
    """Term-frequency component of each variant."""
    norm = 1 - b + b * dl / avgdl
    if method in ("lucene", "robertson"):
        return tf / (k1 * norm + tf)
    if method == "atire":
        return tf * (k1 + 1) / (tf + k1 * norm)
    if method == "bm25l":
        c = tf / norm
        return (k1 + 1) * (c + delta) / (k1 + c + delta)
    if method == "bm25+":
        return (k1 + 1) * tf / (k1 * norm + tf) + delta
    raise ConfigError(f"unknown BM25 method {method!r}; choose from {', '.join(METHODS)}")


def bm25_score_matrix(
    counts: TermCounts, *, method: str, k1: float, b: float, delta: float
) -> tuple[dict[str, Any], np.ndarray | None]:
    """bm25s's eager score matrix (token-major: ``indptr`` over tokens, ``indices`` = documents)
    and, for BM25L/BM25+, its non-occurrence array."""
    n_docs, n_vocab = counts.tf.shape
    dl = counts.doc_lengths.astype(np.float64)
    avgdl = float(dl.mean()) if n_docs else 1.0
    idf = _idf(method, counts.document_frequencies, n_docs)
    by_token = counts.tf.T.tocsr()  # (vocab × docs): row t lists the documents containing t
    by_token.sort_indices()
    tokens = np.repeat(np.arange(n_vocab), np.diff(by_token.indptr))
    tf = by_token.data.astype(np.float64)
    weights = idf[tokens] * _tfc(method, tf, dl[by_token.indices], avgdl, k1, b, delta)
    nonocc = None
    if method in ("bm25l", "bm25+"):
        nonocc = (idf * _tfc(method, 0.0, avgdl, avgdl, k1, b, delta)).astype(np.float32)
        weights -= nonocc[tokens]
    scores = {
        "data": weights.astype(np.float32),
        "indices": by_token.indices.astype(np.int32),
        "indptr": by_token.indptr.astype(np.int64),
        "num_docs": n_docs,
    }
    return scores, nonocc


class BM25Retriever(RetrieverBase):
    """BM25 over any `Tokenizer`, searchable in batches, savable, memory-mappable and updatable.

    >>> from korag.data import Corpus
    >>> r = BM25Retriever("bigram")
    >>> r.index(Corpus(["a", "b"], ["서울은 한국의 수도이다", "부산은 항구 도시이다"]))
    >>> r.search(["한국의 수도"], k=1).row(0)[0][0]
    'a'
    """

    name = "bm25"

    def __init__(
        self,
        tokenizer: Tokenizer | str | dict[str, Any] | None = None,
        *,
        k1: float = 1.5,
        b: float = 0.75,
        delta: float = 0.5,
        method: str = "lucene",
        with_title: bool = True,
        backend: Literal["numpy", "numba"] = "numpy",
    ) -> None:
        if method not in METHODS:
            raise ConfigError(f"unknown BM25 method {method!r}; choose from {', '.join(METHODS)}")
        if k1 < 0 or not 0 <= b <= 1:
            raise ConfigError(f"BM25 needs k1 ≥ 0 and 0 ≤ b ≤ 1 (got k1={k1}, b={b})")
        super().__init__()
        self.tokenizer = make_tokenizer(tokenizer)
        self.k1, self.b, self.delta, self.method = float(k1), float(b), float(delta), method
        self.with_title = with_title
        self.backend = backend
        self._counts: TermCounts | None = None
        self._counts_dir: Path | None = None  # set when loaded lazily from disk
        self._engine = None
        self._doc_ids: list[str] = []
        self._dirty = False

    # -- building -------------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """Scoring parameters (what a stage key or a report needs to know)."""
        return {"k1": self.k1, "b": self.b, "delta": self.delta, "method": self.method, "with_title": self.with_title}

    def settings(self) -> dict[str, Any]:
        """Tokenizer and scoring parameters."""
        return {"tokenizer": self.tokenizer.config(), **self.params()}

    def label(self) -> str:
        """The tokenizer's name."""
        return str(self.tokenizer.config()["name"])

    def _tokenize(self, texts: Sequence[str], show_progress: bool) -> list[list[str]]:
        t0 = time.perf_counter()
        toks = self.tokenizer.tokenize_batch(texts, show_progress=show_progress)
        self.timings["tokenize_seconds"] = self.timings.get("tokenize_seconds", 0.0) + time.perf_counter() - t0
        return toks

    def index(self, corpus: Corpus, *, show_progress: bool = False) -> None:
        """Tokenize `corpus` and build the index (replacing any previous one)."""
        if len(corpus) == 0:
            raise DataError(None, "cannot index an empty corpus")
        self.timings = {}
        tokens = self._tokenize(corpus.contents(self.with_title), show_progress)
        self.index_counts(TermCounts.build(tokens, corpus.ids))
        self._corpus = corpus

    def index_counts(self, counts: TermCounts) -> None:
        """Build the index from term counts computed elsewhere (e.g. a cached tokenize stage)."""
        if len(counts) == 0:
            raise DataError(None, "cannot index an empty corpus")
        self._counts = counts
        self._counts_dir = None
        self._rebuild()

    def _rebuild(self) -> None:
        import bm25s

        t0 = time.perf_counter()
        counts = self._require_counts()
        scores, nonocc = bm25_score_matrix(counts, method=self.method, k1=self.k1, b=self.b, delta=self.delta)
        engine = bm25s.BM25(k1=self.k1, b=self.b, delta=self.delta, method=self.method, backend=self.backend)
        engine.scores = scores
        engine.vocab_dict = counts.vocab
        engine.unique_token_ids_set = set(counts.vocab.values())
        engine.nonoccurrence_array = nonocc
        self._engine = engine
        self._doc_ids = counts.doc_ids
        self._dirty = False
        self.timings["weights_seconds"] = time.perf_counter() - t0

    def _require_counts(self) -> TermCounts:
        if self._counts is None and self._counts_dir is not None:
            self._counts = TermCounts.load(self._counts_dir)
            self._counts_dir = None
        if self._counts is None:
            raise ModelError("the index is empty: call index(corpus) first")
        return self._counts

    # -- updates --------------------------------------------------------------------------
    def add(self, corpus: Corpus, *, show_progress: bool = False) -> None:
        """Add documents; only they are tokenized. Weights are refreshed at the next search."""
        if len(corpus) == 0:
            return
        counts = self._require_counts()
        counts.add(self._tokenize(corpus.contents(self.with_title), show_progress), corpus.ids)
        known = self.corpus()
        self._corpus = known.concat(corpus) if known is not None else None
        self._dirty = True

    def delete(self, doc_ids: Sequence[str] | str) -> int:
        """Remove documents by id; returns how many. Weights are refreshed at the next search."""
        ids = [doc_ids] if isinstance(doc_ids, str) else list(doc_ids)
        counts = self._require_counts()
        if len(counts) - len(set(ids)) <= 0:
            raise DataError(None, "cannot delete every document of the index")
        removed = counts.delete(ids)
        known = self.corpus()
        if known is not None and removed:
            gone = set(ids)
            self._corpus = known.subset(i for i, d in enumerate(known.ids) if d not in gone)
        self._dirty = self._dirty or removed > 0
        return removed

    # -- search ---------------------------------------------------------------------------
    @property
    def doc_ids(self) -> list[str]:
        """Ids of the indexed documents, in index order."""
        if self._dirty:
            self._rebuild()
        return self._doc_ids

    def __len__(self) -> int:
        return len(self.doc_ids)

    def search(
        self,
        queries: Queries | Sequence[str],
        k: int = 10,
        *,
        show_progress: bool = False,
        n_threads: int = 0,
        expansion: QueryExpansion | None = None,
    ) -> Ranking:
        """Top-`k` documents for every query in one call (bm25s scores queries in a loop,
        in `n_threads` threads if asked).

        With an `expansion`, a document scores BM25(query) + Σ w · BM25(synonym) over the
        query's dictionary synonyms (see `korag.retrieval.expansion`), computed as one sparse
        product with the score matrix instead of bm25s's per-query loop."""
        if self._engine is None:
            raise ModelError("the index is empty: call index(corpus) first")
        if self._dirty:
            self._rebuild()
        qs = as_queries(queries)
        if expansion is not None:
            return self._search_expanded(qs, k, expansion)
        t0 = time.perf_counter()
        q_tokens = self.tokenizer.tokenize_batch(qs.texts)
        t1 = time.perf_counter()
        k_eff = max(1, min(k, len(self._doc_ids)))
        if len(qs) == 0:
            indices = np.empty((0, k_eff), dtype=np.int64)
            scores = np.empty((0, k_eff), dtype=np.float32)
        else:
            indices, scores = self._engine.retrieve(
                q_tokens, k=k_eff, show_progress=show_progress, n_threads=n_threads, sorted=True
            )
            indices, scores = self._drop_unmatched(indices, scores)
        t2 = time.perf_counter()
        self.timings.update(query_tokenize_seconds=t1 - t0, search_seconds=t2 - t1)
        return Ranking(qs.ids, indices, scores, self._doc_ids)

    def _drop_unmatched(self, indices: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Results that share no term with the query are not results: bm25s fills a short list
        with arbitrary documents at score 0 (a query of punctuation alone gets k of them). For
        the variants where a non-matching document scores exactly 0, they become padding."""
        if self.method in ("bm25l", "bm25+"):  # a query-dependent floor: every document scores > 0
            return indices, scores
        unmatched = scores <= 0
        if unmatched.any():
            indices = np.where(unmatched, -1, indices)
            scores = np.where(unmatched, -np.inf, scores).astype(np.float32)
        return indices, scores

    def _query_matrix(self, token_lists: Sequence[Sequence[str]]) -> sp.csr_matrix:
        """(texts × vocabulary) token counts; tokens outside the index vocabulary are dropped,
        as bm25s drops them."""
        vocab = self._engine.vocab_dict
        rows, cols = [], []
        for i, tokens in enumerate(token_lists):
            ids = [vocab[t] for t in tokens if t in vocab]
            rows.extend([i] * len(ids))
            cols.extend(ids)
        shape = (len(token_lists), len(self._engine.scores["indptr"]) - 1)
        # duplicates add up: bm25s sums a repeated query token once per occurrence
        return sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)), shape=shape, dtype=np.float32)

    def _search_expanded(self, qs: Queries, k: int, expansion: QueryExpansion) -> Ranking:
        t0 = time.perf_counter()
        synonyms, weights = expansion.weight_matrix(qs.texts)
        q = self._query_matrix(self.tokenizer.tokenize_batch(qs.texts))
        if synonyms:  # each synonym tokenized on its own: no bigram across two terms
            q = (q + weights @ self._query_matrix(self.tokenizer.tokenize_batch(synonyms))).tocsr()
        t1 = time.perf_counter()
        matrix = self.score_matrix()
        nonocc = self._engine.nonoccurrence_array
        n_docs = matrix.shape[1]
        k_eff = max(1, min(k, n_docs))
        indices = np.empty((len(qs), k_eff), dtype=np.int64)
        scores = np.empty((len(qs), k_eff), dtype=np.float32)
        step = max(1, (1 << 22) // max(1, n_docs))  # ~16 MB of dense scores per block of queries
        for start in range(0, len(qs), step):
            block = q[start : start + step]
            dense = np.asarray((block @ matrix).todense(), dtype=np.float32)
            if nonocc is not None:  # BM25L/BM25+ give every document a query-dependent floor
                dense += (block @ nonocc.astype(np.float32))[:, None]
            top = np.argpartition(-dense, k_eff - 1, axis=1)[:, :k_eff]
            top_scores = np.take_along_axis(dense, top, axis=1)
            order = np.argsort(-top_scores, axis=1, kind="stable")
            indices[start : start + step] = np.take_along_axis(top, order, axis=1)
            scores[start : start + step] = np.take_along_axis(top_scores, order, axis=1)
        indices, scores = self._drop_unmatched(indices, scores)
        self.timings.update(query_tokenize_seconds=t1 - t0, search_seconds=time.perf_counter() - t1)
        return Ranking(qs.ids, indices, scores, self._doc_ids)

    def score_pairs(self, queries: Sequence[str], doc_ids: Sequence[Sequence[str]]) -> np.ndarray:
        """BM25 scores of each query against its listed documents (queries × docs-per-query),
        e.g. teacher scores for distillation. Every row must list the same number of ids."""
        if self._engine is None:
            raise ModelError("the index is empty: call index(corpus) first")
        if self._dirty:
            self._rebuild()
        if self.method in ("bm25l", "bm25+"):
            raise ModelError("score_pairs supports the lucene, robertson and atire variants")
        width = len(doc_ids[0]) if len(doc_ids) else 0
        if any(len(row) != width for row in doc_ids):
            raise ValueError("score_pairs: every query needs the same number of documents")
        position = {d: i for i, d in enumerate(self._doc_ids)}
        missing = [d for row in doc_ids for d in row if d not in position]
        if missing:
            raise DataError(None, f"score_pairs: {len(missing)} document id(s) not in the index, e.g. {missing[0]!r}")
        matrix = self.score_matrix().T.tocsr()  # documents × vocabulary weights
        vocab = self._require_counts().vocab
        out = np.zeros((len(queries), width), dtype=np.float32)
        for i, tokens in enumerate(self.tokenizer.tokenize_batch(list(queries))):
            # bm25s sums a repeated query token once per occurrence; so does this
            cols = [vocab[t] for t in tokens if t in vocab]
            if not cols:
                continue
            rows = [position[d] for d in doc_ids[i]]
            out[i] = np.asarray(matrix[rows][:, cols].sum(axis=1)).ravel()
        return out

    # -- as sparse vectors -----------------------------------------------------------------
    # A Lucene/Robertson/ATIRE score is Σ_t count_q(t) · idf(t) · tfc(tf_dt, dl_d): a dot product of
    # a query vector (count · idf) with a document vector (tfc). Splitting it that way keeps the
    # corpus-wide IDF on the query side, so stored document vectors depend on the corpus only
    # through the average document length (see `korag.collections.milvus`).
    _VECTOR_METHODS = ("lucene", "robertson", "atire")

    def _check_vector_method(self) -> None:
        if self.method not in self._VECTOR_METHODS:
            # BM25L/BM25+ add a query-dependent floor to every document (bm25s' non-occurrence
            # array): not a dot product with a sparse document vector
            raise ConfigError(
                f"BM25 method {self.method!r} has no sparse-vector form; use one of {', '.join(self._VECTOR_METHODS)}"
            )

    def document_vectors(self) -> sp.csr_matrix:
        """(documents × vocabulary) document-side BM25 weights, rows in index order (`doc_ids`).

        Entry (d, t) is the term-frequency component tf/(k1·norm + tf) (Lucene, Robertson; ATIRE:
        tf·(k1+1)/(tf + k1·norm)), norm = 1 − b + b·dl/avgdl, so that
        ``query_vectors(q) @ document_vectors().T`` is the score `search` returns (to float32
        rounding). The weights depend on this index's average document length: after `add` or
        `delete` every row changes slightly. Raises `ConfigError` for BM25L and BM25+, whose
        scores are not a dot product."""
        self._check_vector_method()
        counts = self._require_counts()
        tf = counts.tf.tocsr()
        tf.sort_indices()
        n_docs = tf.shape[0]
        dl = counts.doc_lengths.astype(np.float64)
        avgdl = float(dl.mean()) if n_docs else 1.0
        rows = np.repeat(np.arange(n_docs), np.diff(tf.indptr))
        weights = _tfc(self.method, tf.data.astype(np.float64), dl[rows], avgdl, self.k1, self.b, self.delta)
        return sp.csr_matrix((weights.astype(np.float32), tf.indices.copy(), tf.indptr.copy()), shape=tf.shape)

    def query_vectors(self, texts: Sequence[str]) -> sp.csr_matrix:
        """(texts × vocabulary) query-side BM25 weights: count · IDF of each query token in the
        index vocabulary (a repeated token counts once per occurrence, as bm25s sums it; unknown
        tokens are dropped). IDF is this index's current one. See `document_vectors`."""
        self._check_vector_method()
        counts = self._require_counts()
        vocab = counts.vocab
        rows, cols = [], []
        for i, tokens in enumerate(self.tokenizer.tokenize_batch(list(texts))):
            ids = [vocab[t] for t in tokens if t in vocab]
            rows.extend([i] * len(ids))
            cols.extend(ids)
        idf = _idf(self.method, counts.document_frequencies, len(counts))
        cols_a = np.asarray(cols, dtype=np.int64)
        q = sp.csr_matrix(
            (idf[cols_a].astype(np.float32), (np.asarray(rows, dtype=np.int64), cols_a)),
            shape=(len(texts), len(vocab)),
            dtype=np.float32,
        )
        q.sum_duplicates()  # duplicates add up: count · idf
        q.eliminate_zeros()  # Robertson's IDF is 0 for tokens in over half the documents
        return q

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: str | Path, *, overwrite: bool = True, with_corpus: bool = True) -> None:
        """Write the index atomically: ``bm25s/`` (a plain bm25s index), ``counts/`` (term
        counts for updates), the passages (unless `with_corpus` is off: kept elsewhere) and
        ``retriever.json``."""
        if self._engine is None:
            raise ModelError("nothing to save: call index(corpus) first")
        if self._dirty:
            self._rebuild()
        counts = self._require_counts()
        with atomic.atomic_directory(path, overwrite=overwrite) as tmp:
            self._engine.save(str(tmp / "bm25s"), show_progress=False)
            counts.save(tmp / "counts")
            if with_corpus:
                write_indexed_corpus(self.corpus(), tmp)
            self.write_header(
                tmp,
                tokenizer=self.tokenizer.config(),
                params=self.params(),
                backend=self.backend,
                num_docs=len(counts),
                vocab_size=len(counts.vocab),
            )

    @classmethod
    def load(cls, path: str | Path, *, mmap: bool = True) -> BM25Retriever:
        """Open a saved index; with `mmap` the score matrix stays on disk until touched."""
        import bm25s

        p = Path(path)
        info = read_retriever_info(p, cls.name)
        params = info["params"]
        r = cls(
            info["tokenizer"],
            k1=params["k1"],
            b=params["b"],
            delta=params["delta"],
            method=params["method"],
            with_title=params.get("with_title", True),
            backend=info.get("backend", "numpy"),
        )
        engine = bm25s.BM25.load(str(p / "bm25s"), mmap=mmap, load_corpus=False)
        engine.backend = r.backend
        engine.unique_token_ids_set = set(engine.vocab_dict.values())
        r._engine = engine
        r._doc_ids = json.loads((p / "counts" / "doc_ids.json").read_text(encoding="utf-8"))
        r._counts_dir = p / "counts"  # term counts are read only if the index is updated
        r._corpus_dir = p  # passages (when saved) are read only if results need their text
        return r

    def term_counts(self) -> TermCounts:
        """The term-count matrix behind the index."""
        return self._require_counts()

    def score_matrix(self) -> sp.csr_matrix:
        """The (vocabulary × documents) BM25 weight matrix, for inspection and tests."""
        if self._dirty:
            self._rebuild()
        s = self._engine.scores
        return sp.csr_matrix((s["data"], s["indices"], s["indptr"]), shape=(len(s["indptr"]) - 1, s["num_docs"]))
