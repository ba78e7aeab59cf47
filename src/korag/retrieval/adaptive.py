"""Query-adaptive fusion: a small listwise model over the members' normalised scores and ranks,
fitted on questions with judgements, with a guard that keeps it from falling below its best member.

Fixed fusion weights are right only where they were tuned. Weights tuned on KorQuAD, whose
questions copy their paragraph's words, lean on BM25; on questions asked in other words
(`korag.data.paraphrase`) BM25 is the weaker member and the same hybrid falls below dense alone.
What tells the two situations apart is visible per query in the rankings themselves: a member
that is sure of its answer puts a clear gap between its first and second score, one that is
guessing does not, and when the members agree on the first document either can be trusted.

So each candidate document (the union of the members' top lists) is described, per member, by
whether the member returned it, its min-max normalised score, its reciprocal rank, its RRF term,
and the score and rank again multiplied by the member's confidence on this query (the top-1/top-2
gap over the spread of its list) — the products are what let the weights move from query to
query. A linear scorer over these features is fitted with a softmax over each query's candidates
(the relevant ones as targets, L2-regularised, L-BFGS from scipy: 12 weights for two members,
fitted in a second on a few thousand questions).

The guard (`fit_adaptive`): on k folds of the training questions, the learned model competes with
each member alone, with RRF and with grid-tuned weighted fusion, and the best by cross-validated
MRR@10 is kept (a fusion has to beat the best member strictly, ties go to the member). What is
chosen and every candidate's score is saved with the hybrid (JSON, no pickles).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import Any

import numpy as np

from korag.data.schema import Qrels, Ranking
from korag.errors import ConfigError

log = logging.getLogger(__name__)

PER_MEMBER = ("present", "score", "rr", "rrf", "score_x_conf", "rr_x_conf")
RRF_K = 60


def feature_names(members: int) -> list[str]:
    """Names of the features, member by member (``m0.score`` …)."""
    return [f"m{i}.{f}" for i in range(members) for f in PER_MEMBER]


def _confidence(scores: np.ndarray) -> float:
    """How sure a member is on one query: its top-1/top-2 gap over the spread of its list
    (0 when it returned fewer than two documents or all scores tie; 1 when nothing comes close)."""
    if len(scores) < 2:
        return 1.0 if len(scores) == 1 else 0.0
    span = float(scores[0] - scores[-1])
    return float((scores[0] - scores[1]) / span) if span > 0 else 0.0


def candidate_features(rankings: Sequence[Ranking], query_index: int) -> tuple[list[str], np.ndarray]:
    """The candidate documents of one query (the union of the members' lists, in first-seen
    order) and their feature rows (`feature_names`)."""
    docs: dict[str, int] = {}
    per_member = []
    for r in rankings:
        idx, sc = r.indices[query_index], r.scores[query_index]
        keep = idx >= 0
        idx, sc = idx[keep], sc[keep].astype(np.float64)
        per_member.append((r, idx, sc))
        for j in idx:
            docs.setdefault(r.doc_ids[j], len(docs))
    x = np.zeros((len(docs), len(PER_MEMBER) * len(rankings)))
    for m, (r, idx, sc) in enumerate(per_member):
        if not len(idx):
            continue
        span = sc.max() - sc.min()
        norm = (sc - sc.min()) / span if span > 0 else np.ones_like(sc)
        ranks = np.arange(1, len(idx) + 1, dtype=np.float64)
        conf = _confidence(sc)
        rows = np.array([docs[r.doc_ids[j]] for j in idx])
        base = m * len(PER_MEMBER)
        x[rows, base + 0] = 1.0
        x[rows, base + 1] = norm
        x[rows, base + 2] = 1.0 / ranks
        x[rows, base + 3] = RRF_K / (RRF_K + ranks)  # scaled to (0, 1) like the others
        x[rows, base + 4] = norm * conf
        x[rows, base + 5] = conf / ranks
    return list(docs), x


class _Groups:
    """Every query's candidates and features, stacked (rows of query i at offsets[i]:offsets[i+1])."""

    def __init__(self, rankings: Sequence[Ranking], qids: Sequence[str]) -> None:
        row_of = [{q: i for i, q in enumerate(r.query_ids)} for r in rankings]
        self.qids = list(qids)
        self.docs: list[list[str]] = []
        blocks = []
        for q in self.qids:
            rows = [ro.get(q) for ro in row_of]
            if any(r is None for r in rows):
                raise ConfigError(f"query {q!r} is missing from a member's ranking")
            sub = [_one_row(r, i) for r, i in zip(rankings, rows, strict=True)]
            docs, x = candidate_features(sub, 0)
            self.docs.append(docs)
            blocks.append(x)
        self.offsets = np.cumsum([0, *[len(d) for d in self.docs]])
        self.x = np.vstack(blocks) if blocks else np.zeros((0, len(PER_MEMBER) * len(rankings)))

    def ranking(self, theta: np.ndarray, k: int | None = None) -> Ranking:
        """Each query's candidates ordered by the linear score."""
        s = self.x @ theta
        out = {}
        for i, q in enumerate(self.qids):
            a, b = self.offsets[i], self.offsets[i + 1]
            order = np.argsort(-s[a:b], kind="stable")[:k]
            out[q] = [(self.docs[i][j], float(s[a + j])) for j in order]
        return Ranking.from_dict(out)


def _one_row(r: Ranking, i: int) -> Ranking:
    return Ranking([r.query_ids[i]], r.indices[i : i + 1], r.scores[i : i + 1], r.doc_ids)


def _fit_theta(groups: _Groups, label: np.ndarray, l2: float) -> np.ndarray:
    """Listwise softmax regression: maximise the probability mass on each query's relevant
    candidates; queries none of whose relevant documents is a candidate carry no signal."""
    from scipy.optimize import minimize

    has = np.add.reduceat(label.astype(np.int64), groups.offsets[:-1]) > 0 if len(label) else np.zeros(0, bool)
    keep = np.flatnonzero(has)
    if not len(keep):
        raise ConfigError("no training question has a relevant document among the members' results")
    starts = groups.offsets[:-1][keep]
    ends = groups.offsets[1:][keep]
    rows = np.concatenate([np.arange(a, b) for a, b in zip(starts, ends, strict=True)])
    x, y = groups.x[rows], label[rows]
    lengths = ends - starts
    seg = np.repeat(np.arange(len(keep)), lengths)
    bounds = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    n = len(keep)

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        s = x @ theta
        top = np.maximum.reduceat(s, bounds)
        top_pos = np.maximum.reduceat(np.where(y, s, -np.inf), bounds)  # log-sum-exp of each part
        e = np.exp(s - top[seg])
        e_pos = np.where(y, np.exp(s - top_pos[seg]), 0.0)
        z_all = np.add.reduceat(e, bounds)
        z_pos = np.add.reduceat(e_pos, bounds)
        value = float(np.sum(top + np.log(z_all) - top_pos - np.log(z_pos))) / n + l2 * float(theta @ theta)
        p_all = e / z_all[seg]
        p_pos = e_pos / z_pos[seg]
        grad = x.T @ (p_all - p_pos) / n + 2 * l2 * theta
        return value, grad

    start = np.zeros(x.shape[1])
    start[1 :: len(PER_MEMBER)] = 1.0  # begin from equal-weight score fusion
    result = minimize(loss, start, jac=True, method="L-BFGS-B", options={"maxiter": 500})
    return np.asarray(result.x)


def _labels(groups: _Groups, qrels: Qrels) -> np.ndarray:
    """Whether each stacked candidate is relevant to its query."""
    label = np.zeros(len(groups.x), dtype=bool)
    for i, q in enumerate(groups.qids):
        relevant = qrels.relevant(q)
        a = groups.offsets[i]
        label[[a + j for j, d in enumerate(groups.docs[i]) if d in relevant]] = True
    return label


def _mrr10(groups: _Groups, label: np.ndarray, theta: np.ndarray) -> float:
    """MRR@10 of the linear scorer `theta` over every query of `groups` (a query none of whose
    relevant documents is a candidate scores 0), computed without sorting: the rank of the best
    relevant candidate is one plus the candidates scored above it."""
    if not len(groups.qids):
        return 0.0
    s = groups.x @ theta
    bounds = groups.offsets[:-1]
    seg = np.repeat(np.arange(len(groups.qids)), np.diff(groups.offsets))
    best = np.maximum.reduceat(np.where(label, s, -np.inf), bounds)
    above = np.add.reduceat((s > best[seg]).astype(np.int64), bounds)
    rr = np.where(np.isfinite(best) & (above < 10), 1.0 / (above + 1), 0.0)
    return float(rr.mean())


def _fixed_thetas(members: int, grid: Sequence[float]) -> dict[str, np.ndarray]:
    """The classic fusions as linear scorers over the same features: a member alone (its
    normalised score), RRF (the rrf terms) and weighted fusion at each grid point — the same
    orders `fuse` gives, without fusing again for every point."""
    import itertools

    f = len(PER_MEMBER)
    out: dict[str, np.ndarray] = {}
    for i in range(members):
        t = np.zeros(f * members)
        t[i * f + 1] = 1.0
        out[f"member:{i}"] = t
    t = np.zeros(f * members)
    t[3::f] = 1.0
    out["rrf"] = t
    points = [(g, 1.0 - g) for g in grid] if members == 2 else list(itertools.product(grid, repeat=members))
    for c in points:
        if any(c):
            t = np.zeros(f * members)
            t[1::f] = c
            out["weighted:" + ",".join(f"{w:g}" for w in c)] = t
    return out


GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def fit_adaptive(
    rankings: Sequence[Ranking],
    qrels: Qrels,
    *,
    folds: int = 5,
    l2: float = 1e-5,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit the learned fusion on judged questions and choose, by `folds`-fold cross-validated
    MRR@10, between it, each member alone, RRF and grid-tuned weighted fusion (see the module
    docstring). Returns the `combiner` a `HybridRetriever(method="adaptive")` takes."""
    qids = [q for q in rankings[0].query_ids if qrels.relevant(q)]
    if len(qids) < 2 * folds:
        raise ConfigError(f"adaptive fusion needs at least {2 * folds} judged questions (got {len(qids)})")
    members = len(rankings)
    groups = _Groups(rankings, qids)
    label = _labels(groups, qrels)
    order = list(range(len(qids)))
    random.Random(seed).shuffle(order)
    parts = [order[i::folds] for i in range(folds)]
    fixed = _fixed_thetas(members, GRID)
    names = [*(f"member:{i}" for i in range(members)), "rrf", "weighted", "learned"]
    cv: dict[str, list[float]] = {n: [] for n in names}
    for f, held_rows in enumerate(parts):
        train_rows = [r for g, p in enumerate(parts) if g != f for r in p]
        train, held = _take(groups, train_rows), _take(groups, held_rows)
        train_label, held_label = _take_labels(groups, label, train_rows), _take_labels(groups, label, held_rows)
        for n in (*(f"member:{i}" for i in range(members)), "rrf"):
            cv[n].append(_mrr10(held, held_label, fixed[n]))
        point = _best_weighted(train, train_label, fixed)
        cv["weighted"].append(_mrr10(held, held_label, fixed[point]))
        theta = _fit_theta(train, train_label, l2)
        cv["learned"].append(_mrr10(held, held_label, theta))
    means = {n: float(np.mean(v)) for n, v in cv.items()}
    best_member = max(range(members), key=lambda i: means[f"member:{i}"])
    chosen = f"member:{best_member}"
    for n in ("rrf", "weighted", "learned"):  # a fusion must beat the best so far strictly
        if means[n] > means[chosen]:
            chosen = n
    combiner: dict[str, Any] = {"chosen": chosen, "cv_mrr@10": means, "folds": folds, "questions": len(qids)}
    if chosen == "learned":
        combiner["features"] = feature_names(members)
        combiner["theta"] = [float(t) for t in _fit_theta(groups, label, l2)]
    elif chosen == "weighted":
        point = _best_weighted(groups, label, fixed)
        combiner["weights"] = [float(w) for w in point.split(":", 1)[1].split(",")]
    elif chosen.startswith("member:"):
        combiner["weights"] = [1.0 if i == best_member else 0.0 for i in range(members)]
    log.info(
        "adaptive fusion on %d questions (%d-fold MRR@10): %s → %s",
        len(qids),
        folds,
        ", ".join(f"{n} {v:.4f}" for n, v in means.items()),
        chosen,
    )
    return combiner


def _best_weighted(groups: _Groups, label: np.ndarray, fixed: dict[str, np.ndarray]) -> str:
    """The weighted-fusion grid point with the best MRR@10 on `groups` (first of equals)."""
    points = [n for n in fixed if n.startswith("weighted:")]
    return max(points, key=lambda n: _mrr10(groups, label, fixed[n]))


def _take(groups: _Groups, rows: Sequence[int]) -> _Groups:
    """The queries `rows` of `groups` (features shared, not recomputed)."""
    out = _Groups.__new__(_Groups)
    out.qids = [groups.qids[i] for i in rows]
    out.docs = [groups.docs[i] for i in rows]
    blocks = [groups.x[groups.offsets[i] : groups.offsets[i + 1]] for i in rows]
    out.offsets = np.cumsum([0, *[len(d) for d in out.docs]])
    out.x = np.vstack(blocks) if blocks else groups.x[:0]
    return out


def _take_labels(groups: _Groups, label: np.ndarray, rows: Sequence[int]) -> np.ndarray:
    parts = [label[groups.offsets[i] : groups.offsets[i + 1]] for i in rows]
    return np.concatenate(parts) if parts else label[:0]


def apply_adaptive(rankings: Sequence[Ranking], combiner: dict[str, Any], k: int | None = None) -> Ranking:
    """Fuse the members' rankings with a fitted `combiner` (`fit_adaptive`'s result)."""
    from korag.retrieval.fusion import fuse

    chosen = combiner.get("chosen")
    if chosen == "learned":
        theta = np.asarray(combiner["theta"], dtype=np.float64)
        if len(theta) != len(PER_MEMBER) * len(rankings):
            raise ConfigError(f"the adaptive fusion was fitted for {len(theta) // len(PER_MEMBER)} members")
        return _Groups(rankings, rankings[0].query_ids).ranking(theta, k)
    if chosen == "rrf":
        return fuse(rankings, method="rrf", k=k)
    if chosen == "weighted" or (isinstance(chosen, str) and chosen.startswith("member:")):
        return fuse(rankings, method="weighted", weights=combiner["weights"], k=k)
    raise ConfigError(f"adaptive fusion is not fitted (combiner {chosen!r}); fit it on judged questions first")
