"""A collection whose indexes live in Milvus (``engine: {kind: milvus, uri: …}``): the passages'
dense, learned-sparse and BM25 vectors in one Milvus collection (`MilvusStore`), searched there.

What stays in the collection's directory: documents.json, passages.jsonl and the BM25 term
counts — korag computes BM25 itself (Milvus' analyzers cannot segment Korean), so the counts give
the query vectors (count · IDF) and the document vectors (saturated tf), whose inner product in
Milvus is the BM25 score (`BM25Retriever.document_vectors`). Dense and sparse vectors are
encoded here and only stored in Milvus.

Atomic changes across two stores. A row's primary key is ``<passage id>@<document hash>``
(12 hex digits of the file's SHA-256): a replaced document's new passages get new keys instead
of overwriting the old rows, so until the collection's HEAD moves, searches (which keep only the
keys of the current generation) see the old state; after it moves, the new. The keys a change
writes and those it will delete are recorded first (``milvus-pending.json``); the next writer
deletes whatever of them the current generation does not use — the rows a killed writer left —
and the deletes of a change run after HEAD moved, so a crash between leaves only rows no search
returns. BM25 document vectors depend on the average passage length at write time; after each
change the rows made with another one are rewritten (`MilvusStore.rewrite_bm25`), so BM25
scores equal the embedded index's.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from korag import atomic
from korag.collections.config import CollectionConfig
from korag.collections.milvus import MAX_TOP_K
from korag.data.schema import Corpus, Queries, Ranking
from korag.errors import ConfigError
from korag.retrieval.base import RetrieverBase, as_queries

log = logging.getLogger(__name__)

PENDING_FILE = "milvus-pending.json"


def row_key(passage_id: str, document_sha: str) -> str:
    """A passage's Milvus primary key: its id and its document's content hash."""
    return f"{passage_id}@{document_sha[:12]}"


class MilvusIndexes:
    """The Milvus side of a collection: writing changes, recovering from a killed writer,
    keeping BM25 rows current, and the retrievers that search it."""

    def __init__(self, root: Path, config: CollectionConfig, *, dense_dim: int | None) -> None:
        from korag.collections.milvus import MilvusStore, milvus_name

        engine = config.engine
        assert engine.uri is not None
        self.root = root
        self.config = config
        self.store = MilvusStore(
            engine.uri,
            engine.collection or milvus_name(config.name),
            token=os.environ.get(engine.token_env) or None,
            dense_dim=dense_dim,
            sparse=config.sparse is not None,
            bm25=True,
        )
        self.store.ensure()

    # -- writing ---------------------------------------------------------------------------------
    def recover(self, valid: set[str]) -> int:
        """Delete the rows a killed writer left (recorded keys the current generation does not
        use); returns how many."""
        path = self.root / PENDING_FILE
        if not path.is_file():
            return 0
        pending = json.loads(path.read_text(encoding="utf-8"))
        stale = [k for k in [*pending.get("add", []), *pending.get("delete", [])] if k not in valid]
        if stale:
            log.info("removing %d Milvus row(s) of an interrupted change", len(stale))
            self.store.delete(stale)
        path.unlink()
        return len(stale)

    def write(
        self,
        fresh: Corpus,
        keys: Sequence[str],
        gone: Sequence[str],
        encoders: Mapping[str, Any],
        bm25,
        *,
        show_progress: bool = False,
    ) -> None:
        """Record the change, then upsert the fresh passages' rows (the old rows stay until
        `finish`)."""
        atomic.write_json(self.root / PENDING_FILE, {"add": list(keys), "delete": list(gone)})
        if not len(fresh):
            return
        contents = fresh.contents(self.config.with_title)
        vectors: dict[str, Any] = {}
        if "dense" in encoders:
            vectors["dense"] = encoders["dense"].encode_documents(contents, show_progress=show_progress)
        if "sparse" in encoders:
            vectors["sparse"] = encoders["sparse"].encode_documents(contents, show_progress=show_progress)
        positions = [bm25.term_counts().index_of(pid) for pid in fresh.ids]
        metas = fresh.metas or [{}] * len(fresh)
        self.store.upsert(
            list(keys),
            fresh.texts,
            fresh.titles,
            metas,
            bm25=bm25.document_vectors()[positions],
            bm25_avgdl=_avgdl(bm25),
            **vectors,
        )

    def finish(self, gone: Sequence[str], bm25, key_of: Mapping[str, str]) -> None:
        """After HEAD moved: delete the replaced and removed rows, bring BM25 rows to the current
        statistics, forget the pending record."""
        if gone:
            self.store.delete(list(gone))
        if bm25 is not None:
            self.sync_bm25(bm25, key_of)
        (self.root / PENDING_FILE).unlink(missing_ok=True)

    def sync_bm25(self, bm25, key_of: Mapping[str, str]) -> int:
        """Rewrite the BM25 vectors made with another average passage length."""
        avgdl = _avgdl(bm25)
        stale = self.store.ids(self.store._avgdl_filter(avgdl, 0.0))
        pid_of = {k: pid for pid, k in key_of.items()}
        keep = [k for k in stale if k in pid_of]
        if not keep:
            return 0
        counts = bm25.term_counts()
        rows = bm25.document_vectors()[[counts.index_of(pid_of[k]) for k in keep]]
        return self.store.rewrite_bm25(keep, rows, avgdl)

    def drop_all(self, keys: Sequence[str]) -> None:
        """Delete the rows of every passage (the collection is left empty)."""
        if keys:
            self.store.delete(list(keys))


def _avgdl(bm25) -> float:
    counts = bm25.term_counts()
    return float(counts.doc_lengths.mean()) if len(counts) else 1.0


class MilvusRetriever(RetrieverBase):
    """Searches a collection's Milvus rows: BM25 (query vectors from the collection's counts),
    dense or sparse (queries encoded here), or a hybrid fused as the embedded one is (each field
    searched in Milvus, fused by `korag.retrieval.fusion.fuse`). Rows whose key is not in the
    current generation (`key_of`) are left out."""

    name = "milvus"

    def __init__(
        self,
        indexes: MilvusIndexes,
        kind: str,
        *,
        bm25,
        encoders: Mapping[str, Any],
        key_of: Mapping[str, str],
        passages: Corpus,
        method: str = "rrf",
        weights: Sequence[float] | None = None,
        rrf_k: int = 60,
        combiner: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.indexes, self.kind, self.bm25, self.encoders = indexes, kind, bm25, encoders
        self.pid_of = {k: pid for pid, k in key_of.items()}
        self.method, self.weights, self.rrf_k, self.combiner = method, weights, rrf_k, combiner
        self._corpus = passages

    def index(self, corpus: Corpus, *, show_progress: bool = False) -> None:
        """Not how a Milvus collection changes: add and remove documents instead."""
        raise ConfigError("a Milvus collection is changed with add and remove, not indexed")

    def save(self, path: str | Path) -> None:
        """Nothing to save here: the rows live in Milvus."""
        raise ConfigError("a Milvus collection's indexes live in Milvus")

    def label(self) -> str:
        """``milvus:<kind>``."""
        return f"milvus:{self.kind}"

    def _requests(self, texts: list[str]) -> dict[str, Any]:
        fields = ["bm25", *[f for f in ("dense", "sparse") if f in self.encoders]]
        if self.kind != "hybrid":
            fields = [self.kind]
        out: dict[str, Any] = {}
        for f in fields:
            out[f] = self.bm25.query_vectors(texts) if f == "bm25" else self.encoders[f].encode_queries(texts)
        return out

    def search(self, queries: Queries | Sequence[str], k: int = 10, *, show_progress: bool = False) -> Ranking:
        """Top-`k` passages of each query, from Milvus."""
        qs = as_queries(queries)
        texts = list(qs.texts)
        found: list[list[tuple[str, float]]] = [[] for _ in texts]
        todo, over = list(range(len(texts))), k + 10
        while todo:
            lists = self._search([texts[i] for i in todo], over)
            again = []
            for i, hits in zip(todo, lists, strict=True):
                found[i] = [(self.pid_of[key], score) for key, score in hits if key in self.pid_of][:k]
                # rows of an interrupted change filled the list: look deeper
                if len(found[i]) < k and len(hits) == over and over < MAX_TOP_K:
                    again.append(i)
            todo, over = again, min(MAX_TOP_K, over * 4)
        return Ranking.from_dict(dict(zip(qs.ids, found, strict=True)))

    def _search(self, texts: list[str], limit: int) -> list[list[tuple[str, float]]]:
        requests = self._requests(texts)
        store = self.indexes.store
        if len(requests) == 1:
            ((field, q),) = requests.items()
            return store.search(field, q, limit)
        if self.method == "adaptive":  # each field from Milvus, fused by the fitted combiner here
            from korag.retrieval.adaptive import apply_adaptive

            depth = max(100, limit)
            ids = [str(i) for i in range(len(texts))]
            rankings = [
                Ranking.from_dict(dict(zip(ids, store.search(f, q, depth), strict=True))) for f, q in requests.items()
            ]
            fused = apply_adaptive(rankings, self.combiner or {}, k=limit)
            return [row for _, row in fused.items()]
        return store.hybrid(
            requests,
            limit,
            method=self.method,
            weights=self.weights,
            rrf_k=self.rrf_k,
            depth=max(100, limit),
            normalization="minmax" if self.method == "weighted" else "none",
            fusion="korag",
        )


def dense_dim(encoder) -> int:
    """The embedding size of a dense retriever's encoder."""
    return int(encoder.encoder.dim)


__all__ = ["MilvusIndexes", "MilvusRetriever", "dense_dim", "row_key"]
