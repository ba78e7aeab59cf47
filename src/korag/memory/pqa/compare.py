"""One table: a trained parametric-QA model and every baseline on the same questions (see
`korag.memory.pqa.baselines`), plus its write quality — what `korag eval qa --system pqa` and
`bench/pqa_korquad.py` print.

Write quality belongs to the write phase: a read phase that trains the projection (or z) moves
the memories away from what reconstructs the documents, so it is measured on the written model
when that is given, and labelled with the phase it was measured after."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from korag.data.schema import Corpus, QAExample
from korag.errors import ConfigError
from korag.eval.comparison import System, SystemRow
from korag.memory.pqa.baselines import clara_row, retrieved_rows, text_baselines, xrag_row
from korag.memory.pqa.evaluate import evaluate_reading, write_quality
from korag.memory.pqa.inference import Intermediate, PQAReader
from korag.memory.pqa.model import ParametricQA
from korag.memory.pqa.query import QueryEmbeddings, load_query_encoder
from korag.memory.pqa.store import load_pqa
from korag.memory.pqa.train import read_records, written_with_title
from korag.memory.text_rag import TextReader

TEXT_BASELINES = ("closed-book", "bm25", "dense", "hybrid", "oracle")
QA_COLUMNS = ("em_squad", "f1_squad", "em_korquad", "f1_korquad", "all_gold_selected")


def pool_corpus(corpus: Corpus, doc_ids: Sequence[str], source: str = "") -> Corpus:
    """The written documents, in the pool's order, from `corpus`."""
    missing = [d for d in doc_ids if d not in corpus]
    if missing:
        raise ConfigError(
            f"{source or 'the data'} lacks {len(missing)} of the model's {len(doc_ids)} documents "
            f"(e.g. {missing[0]!r}): evaluate on the data the model was written from"
        )
    return corpus.subset([corpus.index_of(d) for d in doc_ids])


def read_config(info: dict[str, Any]) -> dict[str, Any]:
    """The read-phase settings a saved model records (empty for a written-only model)."""
    return info.get("records", {}).get("read", {}).get("config", {})


def read_phase_changed_memories(info: dict[str, Any]) -> bool:
    """Whether the saved model's read phase trained its memories or their projection."""
    return any(float(read_config(info).get(k) or 0) > 0 for k in ("lr_z", "lr_projection"))


def model_write_quality(
    model: ParametricQA, info: dict[str, Any], corpus: Corpus, source: str, **options: Any
) -> dict[str, Any]:
    """`evaluate.write_quality` (with `options`) of a loaded model over its written documents
    (taken from `corpus`), with "measured_after": the last phase that changed its memories."""
    pool = pool_corpus(corpus, info["doc_ids"], source)
    out = write_quality(model, pool.contents(written_with_title(info)), **options)
    out["measured_after"] = "read" if read_phase_changed_memories(info) else "write"
    out["model"] = source
    return out


def measure_write_quality(
    pqa_dir: str | Path,
    corpus: Corpus,
    *,
    identify: int = 100,
    regenerate: int = 10,
    random_projection: bool = True,
    device: str = "cpu",
    show_progress: bool = False,
    doc_ids: Sequence[str] | None = None,
) -> dict[str, Any]:
    """`model_write_quality` of the saved model at `pqa_dir`. `doc_ids`, when given, must be the
    model's pool (a check that two models hold the same documents)."""
    model, _, _, info = load_pqa(pqa_dir, device=device)
    if doc_ids is not None and list(doc_ids) != info["doc_ids"]:
        raise ConfigError(f"{pqa_dir} was written from other documents than the model under evaluation")
    return model_write_quality(
        model,
        info,
        corpus,
        str(pqa_dir),
        identify=identify,
        regenerate=regenerate,
        random_projection=random_projection,
        show_progress=show_progress,
    )


def compare_systems(
    pqa_dir: str | Path,
    corpus: Corpus,
    examples: Sequence[QAExample],
    *,
    k: int = 1,
    baselines: Sequence[str] = TEXT_BASELINES,
    clara_dir: str | Path | None = None,
    xrag_dir: str | Path | None = None,
    multihop: bool = False,
    intermediate: Intermediate | None = None,
    write: bool = True,
    written_dir: str | Path | None = None,
    identify: int = 100,
    regenerate: int = 10,
    random_projection: bool = True,
    device: str = "cpu",
    batch_size: int = 8,
    show_progress: bool = False,
) -> dict[str, Any]:
    """{"rows": [SystemRow], "write": write quality, "questions": n, "k": k} for the PQA model at
    `pqa_dir` and the chosen baselines over its written documents. Write quality is measured on
    `written_dir` (the write phase's model) when given, else on `pqa_dir` itself."""
    unknown = [b for b in baselines if b not in TEXT_BASELINES]
    if unknown:
        raise ConfigError(f"unknown baseline(s) {', '.join(unknown)}; choose from {', '.join(TEXT_BASELINES)}")
    model, selector, _, info = load_pqa(pqa_dir, device=device)
    pool = pool_corpus(corpus, info["doc_ids"], str(pqa_dir))
    records = read_records(examples, info["doc_ids"])
    if not records:
        raise ConfigError(f"none of the {len(examples)} questions has an answer and its documents among the model's")
    with_title = written_with_title(info)
    encoder_name = info.get("encoder")
    queries = QueryEmbeddings(load_query_encoder(encoder_name), device=device) if encoder_name else None
    reader = PQAReader(model, selector, queries)
    if intermediate is None:
        intermediate = read_config(info).get("intermediate", "answer")
    rows: list[SystemRow] = evaluate_reading(
        reader,
        records,
        info["doc_ids"],
        k=k,
        multihop=multihop,
        intermediate=intermediate,  # type: ignore[arg-type]
        batch_size=batch_size,
        show_progress=show_progress,
    )
    width = max(len(g) for _, g in records) if multihop else k
    needs_dense = any(b in baselines for b in ("dense", "hybrid")) or xrag_dir is not None
    if needs_dense and not encoder_name:
        raise ConfigError("dense and hybrid baselines need the model's encoder (train the read phase first)")
    wanted = {*baselines, *(["bm25"] if clara_dir is not None else []), *(["dense"] if xrag_dir is not None else [])}
    retrieved = _retrieved(pool, records, width, wanted, with_title, queries.encoder.model if queries else None)
    rows += _baseline_rows(
        model, pool, records, width, baselines, retrieved, with_title, info, clara_dir, xrag_dir, device, batch_size
    )
    text_bytes = sum(len(t.encode("utf-8")) for t in pool.contents(with_title)) / len(pool)
    result: dict[str, Any] = {
        "rows": rows,
        "questions": len(records),
        "k": width,
        "documents": len(pool),
        "text_bytes_per_document": text_bytes,
    }
    options = {"identify": identify, "regenerate": regenerate, "random_projection": random_projection}
    if write and written_dir is not None:
        del model, reader  # the written model replaces it in memory
        result["write"] = measure_write_quality(
            written_dir, corpus, device=device, show_progress=show_progress, doc_ids=info["doc_ids"], **options
        )
    elif write:
        result["write"] = model_write_quality(model, info, corpus, str(pqa_dir), show_progress=show_progress, **options)
    return result


def _baseline_rows(
    model: Any,
    pool: Corpus,
    records: list,
    width: int,
    baselines: Sequence[str],
    retrieved: dict[str, Any],
    with_title: bool,
    info: dict[str, Any],
    clara_dir: str | Path | None,
    xrag_dir: str | Path | None,
    device: str,
    batch_size: int,
) -> list[SystemRow]:
    """The text baselines read by the PQA model's own LM (adapters off), then CLaRa over BM25's
    passages and xRAG over dense's, when their directories are given."""
    text = TextReader(model, max_answer_tokens=model.config.max_answer_tokens)
    shown = {n: r for n, r in retrieved.items() if n in baselines}
    rows = list(
        text_baselines(
            text,
            pool,
            records,
            k=width,
            retrieved=shown,
            with_title=with_title,
            closed_book="closed-book" in baselines,
            oracle="oracle" in baselines,
            batch_size=batch_size,
        )
    )
    if clara_dir is not None:
        rows.append(_clara_row(clara_dir, pool, records, retrieved["bm25"], width, device, batch_size))
    if xrag_dir is not None:
        rows.append(_xrag_row(xrag_dir, info["doc_ids"], records, retrieved["dense"], width, device, batch_size))
    return rows


def _retrieved(
    pool: Corpus, records, width: int, wanted: set[str], with_title: bool, dense_model
) -> dict[str, list[list[int]]]:
    """Each wanted retriever's (bm25, dense, hybrid of both) top-`width` rows of the pool per question."""
    retrieved: dict[str, list[list[int]]] = {}
    bm25 = dense = None
    if wanted & {"bm25", "hybrid"}:
        from korag.retrieval.bm25 import BM25Retriever

        bm25 = BM25Retriever("bigram-stem", with_title=with_title)
        bm25.index(pool)
        retrieved["bm25"] = retrieved_rows(bm25, pool, records, width)
    if wanted & {"dense", "hybrid"}:
        from korag.retrieval.dense import DenseRetriever

        dense = DenseRetriever(dense_model, with_title=with_title)
        dense.index(pool)
        retrieved["dense"] = retrieved_rows(dense, pool, records, width)
    if "hybrid" in wanted:
        from korag.retrieval.fusion import HybridRetriever

        hybrid = HybridRetriever([bm25, dense], method="rrf")  # type: ignore[list-item]
        hybrid.index(pool)
        retrieved["hybrid"] = retrieved_rows(hybrid, pool, records, width)
    return retrieved


def _clara_row(clara_dir, pool: Corpus, records, chosen, width: int, device: str, batch_size: int) -> SystemRow:
    """A CLaRa model reading the BM25 top-`width` of each question, compressed."""
    from korag.memory.clara.inference import ClaraReader
    from korag.memory.clara.store import load_clara

    clara, _ = load_clara(clara_dir, device=device)
    row = clara_row(ClaraReader(clara), pool, records, chosen, batch_size=batch_size)
    label = f"CLaRa (BM25 top-{width}, compressed)"
    return SystemRow(System.CLARA_RAG, label, row, {"retriever": "bm25", "k": width})


def _xrag_row(xrag_dir, doc_ids, records, chosen, width: int, device: str, batch_size: int) -> SystemRow:
    """An xRAG-style model (encoder memories, written from the same documents) reading the dense top-`width`."""
    xmodel, _, _, xinfo = load_pqa(xrag_dir, device=device)
    if xinfo["doc_ids"] != list(doc_ids):
        raise ConfigError(f"{xrag_dir} was written from other documents than the parametric-QA model")
    row = xrag_row(PQAReader(xmodel, None, None), records, chosen, batch_size=batch_size)
    label = f"xRAG (dense top-{width}, 1 token each)"
    return SystemRow(System.XRAG, label, row, {"retriever": "dense", "k": width})
