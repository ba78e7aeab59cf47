"""GPL (generative pseudo-labelling): adapting a dense retriever to a corpus without labels.

Wang et al. (NAACL 2022): generated queries (each with the passage it was written from) →
hard negatives mined by BM25 and the dense model itself → a cross-encoder *teacher* labels each
(query, positive, negative) with the margin ``score(q, pos) − score(q, neg)`` → the bi-encoder
student learns those margins with MarginMSE. Margins rather than hard labels are what make the
noise of generated data tolerable: a badly generated query, or a "negative" that actually
answers it, gets a small margin and teaches little, where a contrastive loss would push the
wrong way with full force.

Student score: ``similarity_scale × cos(q, p)``. The paper's student scores by unnormalised dot
product, on the scale of the teacher's logits; a normalised encoder such as E5 has cosines in
a narrow band (0.7–0.9), so its margins (at most a few tenths) are multiplied before they are
matched to logit margins of several units — otherwise the loss would mostly ask for the
impossible. The default 20 is InfoNCE's usual 1 / 0.05.

Everything around the loss is the machinery the other trainers share (`korag.training.fit`):
held-out generated queries selecting the best checkpoint, TensorBoard with gradient statistics,
checkpoints and resumption, ``training.json``; the output directory is a dense trainer's
(``model/``, ``adapter/`` with LoRA, ``checkpoints/``, ``tensorboard/``, ``training.json``) plus
``gpl-examples.jsonl``: every labelled example, reused by a rerun with the same data, miners
and teacher (labelling is the slow part on a CPU: one cross-encoder pass per pair).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import Field

from korag import atomic
from korag.data.schema import RetrievalSet
from korag.data.training import TrainingPair, split_queries
from korag.errors import ConfigError, DataError
from korag.training.config import TrainConfigBase

log = logging.getLogger(__name__)

EXAMPLES_FILE = "gpl-examples.jsonl"


class GPLTrainConfig(TrainConfigBase):
    """Settings of `train_gpl` (and of `korag synth gpl`)."""

    teacher: str = Field(description="cross-encoder directory (korag train reranker's output or its model/)")
    hard_negatives: int = Field(2, ge=1, description="mined negatives per generated query, each with its margin")
    negatives_from: Literal["bm25", "model", "both"] = Field(
        "both", description="mine with BM25, the base model as a bi-encoder, or both (interleaved rank by rank)"
    )
    negative_ranks: tuple[int, int] = Field((0, 30), description="rank window [start, end) of mined negatives")
    similarity_scale: float = Field(20.0, gt=0, description="student score = scale × cosine (matched to logit margins)")
    teacher_batch_size: int = Field(32, gt=0, description="pairs per cross-encoder batch when labelling")
    teacher_max_length: int | None = Field(None, gt=8, description="truncate (query, passage) for the teacher")
    query_prefix: str | None = None
    passage_prefix: str | None = None


class PairScorer(Protocol):
    """What labels margins: `korag.retrieval.rerank.CrossEncoderReranker`, or any scorer."""

    def score_pairs(self, pairs: Sequence[tuple[str, str]], *, show_progress: bool = False) -> np.ndarray:
        """One score per (query, passage) pair, higher is more relevant."""
        ...


@dataclass(frozen=True)
class GPLExample:
    """A generated query, its source passage, mined negatives and the teacher's margins."""

    query_id: str
    query: str
    positive_id: str
    positive: str
    negative_ids: tuple[str, ...]
    negatives: tuple[str, ...]
    margins: tuple[float, ...] = ()


def label_margins(
    rows: Sequence[tuple[str, str, Sequence[str]]], teacher: PairScorer, *, show_progress: bool = False
) -> np.ndarray:
    """``score(q, pos) − score(q, neg_j)`` for every (query, positive, negatives) row, shape
    (rows, negatives): all pairs scored in one call, so the teacher batches them."""
    if not rows:
        return np.empty((0, 0), dtype=np.float32)
    width = len(rows[0][2])
    if width < 1 or any(len(r[2]) != width for r in rows):
        raise ConfigError("every row needs the same number (≥ 1) of negatives to label margins")
    pairs = [(q, t) for q, pos, negs in rows for t in (pos, *negs)]
    scores = np.asarray(teacher.score_pairs(pairs, show_progress=show_progress), dtype=np.float64)
    if scores.shape != (len(pairs),):
        raise ConfigError(f"the teacher returned {scores.shape} scores for {len(pairs)} pairs")
    grid = scores.reshape(len(rows), width + 1)
    return (grid[:, :1] - grid[:, 1:]).astype(np.float32)


def _miners(config: GPLTrainConfig) -> list[Any]:
    miners: list[Any] = []
    if config.negatives_from in ("bm25", "both"):
        from korag.retrieval.bm25 import BM25Retriever

        miners.append(BM25Retriever(with_title=config.with_title))
    if config.negatives_from in ("model", "both"):
        from korag.retrieval.dense import DenseRetriever

        miners.append(
            DenseRetriever(
                config.base,
                query_prefix=config.query_prefix,
                passage_prefix=config.passage_prefix,
                max_seq_length=config.max_seq_length,
                with_title=config.with_title,
                device=config.device,
            )
        )
    return miners


def mine_examples(rs: RetrievalSet, config: GPLTrainConfig, *, show_progress: bool = False) -> list[GPLExample]:
    """One example per judged query with exactly `hard_negatives` mined negatives (unlabelled).

    The score-ratio guard of `mine_negatives` is off: a negative scoring close to the positive
    is exactly what the teacher's margin is for (a true false negative gets a margin near 0)."""
    from korag.retrieval.negatives import mine_negatives

    miners = _miners(config)
    for m in miners:
        m.index(rs.corpus, show_progress=show_progress)
    negatives, report = mine_negatives(
        rs, miners, num=config.hard_negatives, rank_range=config.negative_ranks, max_score_ratio=None
    )
    log.info("GPL negatives: %d mined (%d at random), %d queries short", report.mined, report.random, report.short)
    contents = dict(zip(rs.corpus.ids, rs.corpus.contents(config.with_title), strict=True))
    out = []
    for q in rs.judged_queries():
        negs = negatives.get(q.id, [])
        if len(negs) != config.hard_negatives:
            continue
        pos = next(iter(rs.qrels.relevant(q.id)))
        out.append(GPLExample(q.id, q.text, pos, contents[pos], tuple(negs), tuple(contents[n] for n in negs)))
    if not out:
        raise DataError(rs.name or None, f"no query kept {config.hard_negatives} hard negatives")
    return out


def label_examples(
    examples: Sequence[GPLExample], teacher: PairScorer, *, show_progress: bool = False
) -> list[GPLExample]:
    """`examples` with the teacher's margins."""
    margins = label_margins(
        [(e.query, e.positive, e.negatives) for e in examples], teacher, show_progress=show_progress
    )
    return [
        GPLExample(e.query_id, e.query, e.positive_id, e.positive, e.negative_ids, e.negatives, tuple(map(float, m)))
        for e, m in zip(examples, margins, strict=True)
    ]


def _fingerprint(rs: RetrievalSet, config: GPLTrainConfig) -> str:
    """Identity of what the labelled examples depend on: queries and positives, corpus, miners,
    teacher — not the student's training settings, so changing those reuses the labels."""
    h = hashlib.sha256()
    keys = ("base", "teacher", "hard_negatives", "negatives_from", "negative_ranks", "with_title")
    keys += ("teacher_max_length", "query_prefix", "passage_prefix", "max_seq_length", "seed", "eval_fraction")
    h.update(json.dumps({k: getattr(config, k) for k in keys}, sort_keys=True, default=str).encode())
    for q in rs.queries:
        h.update(f"{q.id}\x00{q.text}\x00{sorted(rs.qrels.relevant(q.id))}\n".encode())
    for doc_id, text in zip(rs.corpus.ids, rs.corpus.contents(config.with_title), strict=True):
        h.update(f"{doc_id}\x00{text}\n".encode())
    return h.hexdigest()[:32]


def write_examples(path: Path, examples: Sequence[GPLExample], fingerprint: str) -> None:
    """Labelled examples as JSON Lines, headed by what they were made from (atomic)."""
    lines = [json.dumps({"fingerprint": fingerprint}), *(json.dumps(asdict(e), ensure_ascii=False) for e in examples)]
    atomic.write_text(path, "\n".join(lines) + "\n")


def read_examples(path: Path, fingerprint: str) -> list[GPLExample] | None:
    """The examples `write_examples` wrote, or None when absent or made from something else."""
    if not path.is_file():
        return None
    with path.open(encoding="utf-8") as fh:
        try:
            if json.loads(fh.readline()).get("fingerprint") != fingerprint:
                return None
            rows = [json.loads(line) for line in fh if line.strip()]
        except (json.JSONDecodeError, AttributeError):
            return None
    return [
        GPLExample(
            r["query_id"],
            r["query"],
            r["positive_id"],
            r["positive"],
            tuple(r["negative_ids"]),
            tuple(r["negatives"]),
            tuple(r["margins"]),
        )
        for r in rows
    ]


def prepare_examples(
    rs: RetrievalSet,
    config: GPLTrainConfig,
    output: Path,
    *,
    teacher: PairScorer | None = None,
    show_progress: bool = False,
) -> tuple[list[GPLExample], bool]:
    """Mined and labelled examples for `rs` (reused from ``output/gpl-examples.jsonl`` when made
    from the same data and settings); the flag says whether they were reused."""
    fingerprint = _fingerprint(rs, config)
    path = output / EXAMPLES_FILE
    cached = read_examples(path, fingerprint)
    if cached is not None:
        log.info("GPL: reusing %d labelled examples from %s", len(cached), path)
        return cached, True
    examples = mine_examples(rs, config, show_progress=show_progress)
    if teacher is None:
        from korag.retrieval.rerank import CrossEncoderReranker

        teacher = CrossEncoderReranker(
            config.teacher,
            batch_size=config.teacher_batch_size,
            max_length=config.teacher_max_length,
            device=config.device,
        )
    labelled = label_examples(examples, teacher, show_progress=show_progress)
    output.mkdir(parents=True, exist_ok=True)
    write_examples(path, labelled, fingerprint)
    return labelled, False


class ScaledCosine:
    """``scale × cos(a, b)`` row by row — the student's score (a class, not a lambda, so the loss
    pickles)."""

    def __init__(self, scale: float) -> None:
        self.scale = scale

    def __call__(self, a, b):
        from sentence_transformers import util

        return self.scale * util.pairwise_cos_sim(a, b)


def student_margins(
    model, examples: Sequence[GPLExample], scale: float, query_prefix: str = "", passage_prefix: str = ""
):
    """The student's ``scale × (cos(q, pos) − cos(q, neg_j))`` per example, shape (examples, negatives)."""
    q = model.encode([query_prefix + e.query for e in examples], convert_to_numpy=True, normalize_embeddings=True)
    p = model.encode([passage_prefix + e.positive for e in examples], convert_to_numpy=True, normalize_embeddings=True)
    width = len(examples[0].negatives)
    flat = [passage_prefix + n for e in examples for n in e.negatives]
    n = model.encode(flat, convert_to_numpy=True, normalize_embeddings=True).reshape(len(examples), width, -1)
    pos = (q * p).sum(-1, keepdims=True)
    neg = np.einsum("ed,ewd->ew", q, n)
    return scale * (pos - neg)


def train_gpl(
    train: RetrievalSet,
    config: GPLTrainConfig,
    output: str | Path,
    *,
    dev: RetrievalSet | None = None,
    teacher: PairScorer | None = None,
    resume: bool = True,
    show_progress: bool = True,
):
    """Train `config.base` on `train`'s (generated) queries with MarginMSE against the teacher's
    margins; a share of the queries (`eval_fraction`) is held out to pick the best checkpoint
    unless `dev` is given. Returns the `korag.training.fit.TrainResult`."""
    from sentence_transformers.sentence_transformer import losses
    from transformers import set_seed

    from korag.training.dense import fit_bi_encoder, load_student
    from korag.training.fit import PreparedPairs, finish

    out = Path(output)
    set_seed(config.seed)
    if dev is None:
        train, dev = split_queries(train, config.eval_fraction, config.seed)
    if not len(train.judged_queries()):
        raise DataError(train.name or None, "no generated query has a source passage")
    examples, reused = prepare_examples(train, config, out, teacher=teacher, show_progress=show_progress)
    margins = np.array([e.margins for e in examples], dtype=np.float64)

    model, qp, pp = load_student(config)
    columns: dict[str, list[Any]] = {"anchor": [e.query for e in examples], "positive": [e.positive for e in examples]}
    for j in range(config.hard_negatives):
        columns[f"negative_{j + 1}"] = [e.negatives[j] for e in examples]
    # sentence-transformers takes a list per row as the margins to each negative
    columns["label"] = [list(e.margins) for e in examples]
    prompts = {name: (qp if name == "anchor" else pp) for name in columns if name != "label"} if (qp or pp) else None
    loss = losses.MarginMSELoss(model, similarity_fct=ScaledCosine(config.similarity_scale))
    trained, model_dir, adapter_dir = fit_bi_encoder(
        model, loss, columns, dev, config, out, prompts=prompts, resume=resume, show_progress=show_progress
    )
    pairs = [
        TrainingPair(e.query, e.positive, e.negatives, e.query_id, e.positive_id, e.negative_ids) for e in examples
    ]
    extra = {
        "examples": len(examples),
        "examples_reused": reused,
        "margin_mean": float(margins.mean()),
        "margin_std": float(margins.std()),
        "teacher": config.teacher,
    }
    return finish(trained, config, PreparedPairs(train, dev, pairs), out, model_dir, adapter_dir, extra=extra)
