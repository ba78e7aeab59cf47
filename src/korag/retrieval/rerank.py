"""Reranking with a cross-encoder: a first-stage retriever's top candidates, rescored jointly.

A cross-encoder reads the query and a passage together, so it sees what a bi-encoder's two
separate vectors or BM25's term counts miss — and costs one transformer pass per (query,
passage) pair. It therefore only reorders a short list: `RerankingRetriever` searches its base
retriever to depth `rerank_k`, scores those candidates, and returns them by the cross-encoder's
score; results past `rerank_k` (when more are asked for) keep the base's order below them.

`blend` mixes the base's own score back in: each head is ordered by ``(1 - blend) · ce + blend ·
base``, both min-max normalised over the head (a logit and a fused score share no scale).
Interpolating the first stage's score is the usual guard for a cross-encoder trained on little
data: where the first stage is already strong (KorQuAD's questions copy their paragraph's words,
BM25 0.95 MRR@10) a young reranker alone reorders good lists worse, while on paraphrased
questions it adds what the first stage missed; `tune_blend` picks the weight on judged
questions (`korag eval retrieval --rerank … --tune-split`).

Scores are the model's logits — ``CrossEncoder.predict(pairs, activation_fn=Identity())`` —
not probabilities: a sigmoid in float32 saturates at 1.0 above a logit of about 17, which would
tie the top of a confident model's list. Apply a sigmoid for a probability (BCE-trained models).

The model is any sentence-transformers `CrossEncoder` directory with one output (what
`korag train reranker` writes in ``model/``), or a training output directory itself. Reranking is
a query-time composition, not an index: `RerankingRetriever.save` refuses and points to saving
the base retriever (the CLI takes ``--rerank DIR`` at search time).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from korag.data.schema import Corpus, Qrels, Queries, Ranking, RetrievalSet
from korag.errors import ConfigError, ModelError
from korag.models.device import bf16_autocast
from korag.models.encoder import Precision, check_tokenizer, model_max_length, resolve_model_path
from korag.retrieval.base import Retriever, RetrieverBase, as_queries
from korag.retrieval.fusion import normalise_scores

log = logging.getLogger(__name__)

CROSS_ENCODER = "CrossEncoder"
# the modules a sequence-classification model adds on top of its encoder (BERT-likes; decoders)
HEAD_MODULES = ("classifier", "score")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def cross_encoder_kind(path: str | Path) -> str | None:
    """What a local model directory holds, as sentence-transformers records it: ``CrossEncoder``,
    ``SentenceTransformer``, … or, for a plain Hugging Face directory, its architecture
    (``BertForSequenceClassification``, ``BertModel``); None when neither says."""
    p = Path(path)
    st_config = p / "config_sentence_transformers.json"
    if (p / "modules.json").is_file():
        if st_config.is_file():
            return json.loads(st_config.read_text(encoding="utf-8")).get("model_type", "SentenceTransformer")
        return "SentenceTransformer"
    hf_config = p / "config.json"
    if hf_config.is_file():
        architectures = json.loads(hf_config.read_text(encoding="utf-8")).get("architectures") or []
        return architectures[0] if architectures else None
    return None


def is_trained_reranker(path: str | Path) -> bool:
    """Whether a local directory holds a model with a trained scoring head (a cross-encoder)."""
    kind = cross_encoder_kind(path)
    return kind is not None and (kind == CROSS_ENCODER or kind.endswith("ForSequenceClassification"))


def check_reranker(model: str | Path) -> str:
    """The loadable path of a reranker (a training output resolves to its ``model/``), refusing a
    directory that holds no cross-encoder — before any data is read or PyTorch imported."""
    path = resolve_model_path(model)
    if Path(path).is_dir() and not is_trained_reranker(path):
        raise ModelError(
            f"{model}: not a reranker (it holds a {cross_encoder_kind(path) or 'model of unknown type'}, "
            "without a trained scoring head); train one with `korag train reranker DATA --base MODEL -o DIR`"
        )
    return path


def load_cross_encoder(
    model: str | Path,
    *,
    device: str = "cpu",
    max_length: int | None = None,
    new_head: bool = False,
):
    """A one-output `CrossEncoder` from a local directory (or a hub id online).

    With `new_head`, any BERT-like directory is accepted — a sentence-transformers bi-encoder
    such as E5, whose root holds the transformer's weights — and a scoring head is initialised on
    top of it (training does this). Without it, the directory must hold a trained cross-encoder:
    reranking with a random head would silently shuffle the candidates.
    """
    from sentence_transformers import CrossEncoder

    path = resolve_model_path(model) if new_head else check_reranker(model)
    local = Path(path).is_dir()
    with quiet_new_head(path):
        try:
            ce = CrossEncoder(path, num_labels=1, device=device)
        except OSError as exc:
            where = "directory" if local else "hub id (is the machine online?)"
            raise ModelError(f"{model}: cannot load a cross-encoder from this {where}: {exc}") from None
    check_tokenizer(ce, model)
    if new_head:
        ensure_pair_template(ce)
    limit = model_max_length(ce)
    if max_length:
        ce.max_seq_length = min(max_length, limit or max_length)
    elif limit:
        ce.max_seq_length = limit
    return ce


def ensure_pair_template(ce) -> bool:
    """Give the tokenizer a template for (query, passage) pairs when it has none — a tokenizer
    built for single texts joins the two without a separator or a leading ``[CLS]``, and the head
    then reads a token of the query instead. Uses ``[CLS] A [SEP] B [SEP]`` with the tokenizer's
    own special tokens (B as segment 1 where the model has segment embeddings). Returns whether
    it changed the tokenizer (saved with the model, so inference tokenizes the same way)."""
    tok = ce.tokenizer
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is None or tok.num_special_tokens_to_add(pair=True) > tok.num_special_tokens_to_add(pair=False):
        return False
    cls, sep = tok.cls_token or tok.bos_token, tok.sep_token or tok.eos_token
    if cls is None or sep is None:
        return False
    from tokenizers import processors

    segment = 1 if getattr(ce[0].auto_model.config, "type_vocab_size", 1) > 1 else 0
    backend.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}",
        pair=f"{cls} $A {sep} $B:{segment} {sep}:{segment}",
        special_tokens=[(cls, tok.convert_tokens_to_ids(cls)), (sep, tok.convert_tokens_to_ids(sep))],
    )
    log.info("the tokenizer had no template for text pairs: using %s A %s B %s", cls, sep, sep)
    return True


@contextlib.contextmanager
def quiet_new_head(path: str | Path) -> Iterator[None]:
    """Inside the block, transformers' report of a newly initialised scoring head (and nothing
    else it may report) becomes one info line: loading a bi-encoder as a cross-encoder, or a
    LoRA checkpoint whose head is stored with the adapter, is expected to find the head missing."""
    capture = _HeadReport()
    loggers = [logging.getLogger(n) for n in ("transformers.modeling_utils", "sentence_transformers.base.model")]
    for lg in loggers:
        lg.addFilter(capture)
    try:
        yield
    finally:
        for lg in loggers:
            lg.removeFilter(capture)
        capture.report(str(path))


class _HeadReport(logging.Filter):
    """Holds back transformers' load report and sentence-transformers' conversion notice when a
    bi-encoder becomes a cross-encoder: a new head is the point of training one, not a fault.
    A report that lists anything else (missing encoder weights, say) still gets through."""

    def __init__(self) -> None:
        super().__init__()
        self.new_head: list[str] = []
        self.reported = False

    def filter(self, record: logging.LogRecord) -> bool:
        msg = _ANSI.sub("", record.getMessage())
        if msg.startswith("Converting ") and msg.rstrip(".").endswith(" to CrossEncoder"):
            return False
        if "LOAD REPORT" not in msg:
            return True
        rows = [[c.strip() for c in line.split("|")] for line in msg.splitlines() if "|" in line]
        keyed = [r for r in rows[1:] if len(r) >= 2 and r[0]]  # rows[0] is the table's header
        if keyed and all(r[1] == "MISSING" and r[0].split(".")[0] in HEAD_MODULES for r in keyed):
            self.new_head = [r[0] for r in keyed]
            return False
        return True

    def report(self, path: str) -> None:
        """Say in one line what was held back."""
        if self.new_head and not self.reported:
            self.reported = True
            log.info("%s: a new scoring head (%s) is initialised on the encoder", path, ", ".join(self.new_head))


class PassageWindows:
    """The part of a long passage a cross-encoder reads: the window of the passage's tokens that
    fits beside the query and shares the most of the query's character bigrams.

    A cross-encoder's input is truncated at `max_length` tokens (query and passage together). A
    KorQuAD paragraph is 273 tokens long in the median (E5's tokenizer; every one over 160), and
    with 160-token inputs only 58% of its questions' answers lie in what truncation keeps: a
    reranker trained or run that way cannot see the evidence for the other 42% and learns to guess
    (the "FirstP" of Dai & Callan, 2019). Choosing the window that overlaps the query ("BestP",
    with lexical instead of model scores so that it costs a tokenisation, not a transformer pass)
    keeps every pair at one pass and puts the evidence in front of the model in training and at
    query time alike. Windows step by half their length; ties go to the earliest (which holds
    the title). Passages that fit are returned whole.
    """

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self._special = tokenizer.num_special_tokens_to_add(pair=True)
        self._query_lengths: dict[str, int] = {}

    def __call__(self, query: str, passage: str) -> str:
        """`passage`, or its best window for `query`."""
        if query not in self._query_lengths:
            self._query_lengths[query] = len(self.tokenizer(query, add_special_tokens=False)["input_ids"])
        budget = self.max_length - self._query_lengths[query] - self._special
        if budget < 16:  # a query that fills the input: truncation decides, as without windows
            return passage
        offsets = self.tokenizer(passage, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        n = len(offsets)
        if n <= budget:
            return passage
        starts = [*range(0, n - budget, max(1, budget // 2)), n - budget]
        grams = query_grams(query)
        texts = [passage[offsets[s][0] : offsets[s + budget - 1][1]] for s in starts]
        return max(texts, key=lambda t: sum(g in t for g in grams))  # max keeps the first of ties


def query_grams(query: str) -> set[str]:
    """A query's character bigrams within words (a one-letter word as itself): Korean words
    change their endings, so shared bigrams find a passage's words where whole words would not."""
    grams: set[str] = set()
    for word in re.findall(r"\w+", query):
        grams.update({word} if len(word) == 1 else {word[i : i + 2] for i in range(len(word) - 1)})
    return grams


class CrossEncoderReranker:
    """Scores (query, passage) pairs with a cross-encoder, in bfloat16 where the hardware has it;
    a passage longer than the input reads as its best window for the query (`PassageWindows`;
    ``windows="first"``: truncated)."""

    def __init__(
        self,
        model_dir: str | Path,
        *,
        batch_size: int = 32,
        max_length: int | None = None,
        precision: Precision = "auto",
        device: str = "cpu",
        windows: Literal["best", "first"] = "best",
    ) -> None:
        from korag.models.device import resolve_device, wants_bf16

        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1 (got {batch_size})")
        self.device = resolve_device(device)
        self.model_name = str(model_dir)
        self.model = load_cross_encoder(model_dir, device=self.device, max_length=max_length)
        self.batch_size = batch_size
        self.precision = precision
        self.use_bf16 = wants_bf16(precision, self.device)
        self.windows = windows
        self._window = PassageWindows(self.model.tokenizer, self.model.max_seq_length) if windows == "best" else None

    @property
    def max_length(self) -> int | None:
        """The longest (query + passage) input in tokens; longer pairs are truncated."""
        return self.model.max_seq_length

    def score_pairs(self, pairs: Sequence[tuple[str, str]], *, show_progress: bool = False) -> np.ndarray:
        """Logits of (query, passage) pairs, higher is more relevant (float32, one per pair)."""
        import torch

        if not len(pairs):
            return np.empty(0, dtype=np.float32)
        if self._window is not None:
            pairs = [(q, self._window(q, p)) for q, p in pairs]
        with torch.inference_mode(), bf16_autocast(self.use_bf16, self.device):
            scores = self.model.predict(
                [list(p) for p in pairs],
                batch_size=self.batch_size,
                activation_fn=torch.nn.Identity(),
                show_progress_bar=show_progress,
                convert_to_numpy=True,
            )
        return np.asarray(scores, dtype=np.float32).reshape(len(pairs))

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """Logits of `query` against each of `texts`."""
        return self.score_pairs([(query, t) for t in texts])

    def config(self) -> dict[str, Any]:
        """Settings that rebuild this reranker."""
        return {
            "model": self.model_name,
            "batch_size": self.batch_size,
            "max_length": self.max_length,
            "precision": self.precision,
            "windows": self.windows,
        }


class RerankingRetriever(RetrieverBase):
    """A base retriever's top `rerank_k` candidates, reordered by a cross-encoder."""

    name = "rerank"

    def __init__(
        self,
        base: Retriever,
        reranker: CrossEncoderReranker | str | Path,
        *,
        rerank_k: int = 30,
        blend: float = 0.0,
        with_title: bool = True,
        corpus: Corpus | None = None,
    ) -> None:
        if rerank_k < 1:
            raise ConfigError(f"rerank_k must be at least 1 (got {rerank_k})")
        if not 0.0 <= blend <= 1.0:
            raise ConfigError(f"blend must be between 0 and 1 (got {blend})")
        super().__init__()
        self.base = base
        self.reranker = reranker if isinstance(reranker, CrossEncoderReranker) else CrossEncoderReranker(reranker)
        self.rerank_k = rerank_k
        self.blend = blend
        self.with_title = with_title
        self._corpus = corpus  # the passages, when the base does not keep them (an index saved without)

    def index(self, corpus: Corpus, *, show_progress: bool = False) -> None:
        """Index with the base retriever (the cross-encoder needs no index)."""
        self.base.index(corpus, show_progress=show_progress)
        self._corpus = None

    def corpus(self) -> Corpus | None:
        """The passages given to this retriever, else the base's."""
        return self._corpus if self._corpus is not None else self.base.corpus()

    def search(self, queries: Queries | Sequence[str], k: int = 10, *, show_progress: bool = False) -> Ranking:
        """Top-`k` per query: the base's first `rerank_k` by the cross-encoder's score (mixed with
        the base's own score when `blend` > 0), then (if `k` is larger) the base's next results in
        its own order, scored below every reranked one. A query the base finds fewer candidates
        for gets fewer results (the row is padded)."""
        return self.candidates(queries, k, show_progress=show_progress).ranking(k, self.blend)

    def candidates(self, queries: Queries | Sequence[str], k: int = 10, *, show_progress: bool = False) -> Candidates:
        """The base's top `max(k, rerank_k)` per query and the cross-encoder's scores of the first
        `rerank_k`: everything a ranking needs, for any `blend` (tuning reranks once)."""
        qs = as_queries(queries)
        corpus = self.corpus()
        if corpus is None:
            raise ConfigError(
                "reranking needs the passages' text, and this index was saved without them: give the data "
                "(korag search --data …) or index a corpus first"
            )
        t0 = time.perf_counter()
        first = self.base.search(qs, k=max(k, self.rerank_k), show_progress=show_progress)
        t1 = time.perf_counter()
        heads = [row[row >= 0][: self.rerank_k] for row in first.indices]
        pairs = [
            (q, self._text(corpus, first.doc_ids[j])) for q, head in zip(qs.texts, heads, strict=True) for j in head
        ]
        scores = self.reranker.score_pairs(pairs, show_progress=show_progress)
        t2 = time.perf_counter()
        self.timings = {**getattr(self.base, "timings", {})}
        self.timings.update(
            base_search_seconds=t1 - t0,
            rerank_seconds=t2 - t1,
            rerank_pairs=float(len(pairs)),
            rerank_ms_per_query=1000 * (t2 - t1) / max(1, len(qs)),
        )
        split = np.cumsum([len(h) for h in heads])[:-1]
        return Candidates(first, heads, np.split(scores, split))

    def tune_blend(self, tune_set: RetrievalSet, *, metric: str = "mrr@10", steps: int = 10) -> dict[str, Any]:
        """Choose `blend` on judged questions (other than the evaluation's; the corpus already
        indexed): the cross-encoder scores their candidates once, every blend of ``0, 1/steps, …,
        1`` is scored by `metric`, the best is set (ties: the smaller blend). Returns the trials."""
        queries = tune_set.judged_queries()
        depth = max(10, self.rerank_k)
        trials = self.candidates(queries, k=depth).blend_trials(tune_set.qrels, depth, metric=metric, steps=steps)
        self.blend = max(trials, key=lambda w: (trials[w], -w))
        log.info(
            "rerank blend %.2f chosen on %d questions (%s %.4f)", self.blend, len(queries), metric, trials[self.blend]
        )
        return {"blend": self.blend, metric: trials[self.blend], "trials": trials, "queries": len(queries)}

    def _text(self, corpus: Corpus, doc_id: str) -> str:
        i = corpus.index_of(doc_id)
        title, text = corpus.titles[i], corpus.texts[i]
        # what `Corpus.contents(with_title)` gives, for one document, without building the whole list
        return f"{title} {text}" if self.with_title and title else text

    def save(self, path: str | Path) -> None:
        """Refused: reranking is composed at query time, not saved (see the module docstring)."""
        raise ConfigError(
            "a reranking retriever is not saved: save its base retriever and rerank when searching "
            "(korag search INDEX QUERY --rerank MODEL)"
        )

    def label(self) -> str:
        """The base's name and the reranker's model."""
        return (
            f"{self.base.describe()['name']} → rerank {Path(self.reranker.model_name).name or self.reranker.model_name}"
        )

    def settings(self) -> dict[str, Any]:
        """Depth, the reranker's settings and the base's description."""
        return {
            "rerank_k": self.rerank_k,
            "blend": self.blend,
            "with_title": self.with_title,
            "reranker": self.reranker.config(),
            "base": self.base.describe(),
        }


class Candidates:
    """A base ranking and the cross-encoder's scores of each query's head (its first candidates)."""

    def __init__(self, first: Ranking, heads: list[np.ndarray], scores: list[np.ndarray]) -> None:
        self.first, self.heads, self.scores = first, heads, scores

    def blend_trials(self, qrels: Qrels, k: int, *, metric: str = "mrr@10", steps: int = 10) -> dict[float, float]:
        """`metric` of the top-`k` ranking for each blend ``0, 1/steps, …, 1``."""
        from korag.eval.ir import evaluate_ranking

        blends = [i / steps for i in range(steps + 1)]
        return {w: evaluate_ranking(self.ranking(k, w), qrels, [metric]).metrics[metric] for w in blends}

    def ranking(self, k: int, blend: float = 0.0) -> Ranking:
        """Top-`k` per query: each head by ``(1 - blend) · ce + blend · base`` (both min-max
        normalised over the head, so neither's scale matters), then the base's tail."""
        first = self.first
        indices = np.full((len(first.query_ids), k), -1, dtype=np.int64)
        out = np.full((len(first.query_ids), k), -np.inf, dtype=np.float32)
        for i, (head, s) in enumerate(zip(self.heads, self.scores, strict=True)):
            if blend > 0 and len(head):
                ce = normalise_scores(s.astype(np.float64), "minmax")
                own = normalise_scores(first.scores[i, : len(head)].astype(np.float64), "minmax")
                s = (1 - blend) * ce + blend * own
            row = first.indices[i]
            tail = row[row >= 0][len(head) : k]
            idx, sc = _merge(head, s, tail)
            indices[i, : min(k, len(idx))] = idx[:k]
            out[i, : min(k, len(sc))] = sc[:k]
        return Ranking(first.query_ids, indices, out, first.doc_ids)


def _merge(head: np.ndarray, scores: np.ndarray, tail: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reranked candidates (ties keep the base's order), then the unreranked tail in the base's
    order, scored in steps of 1 below the lowest reranked score (a `Ranking` row is sorted)."""
    order = np.argsort(-scores, kind="stable")
    floor = float(scores.min()) if len(scores) else 0.0
    tail_scores = floor - np.arange(1, len(tail) + 1, dtype=np.float32)
    return np.concatenate([head[order], tail]), np.concatenate([scores[order], tail_scores]).astype(np.float32)
