"""Trending terms: words whose document frequency jumped in recent documents, and IDF boosting.

Documents come as token lists from any korag `Tokenizer`, split into a *recent* (target) set
and a *background* (reference) set — by date (`split_by_date`, `split_by_window`) or as two
corpora. For each term with document frequencies ``r`` of ``R`` recent and ``b`` of ``B``
background documents:

- ``log_ratio = log2(p_r / p_b)`` with add-α smoothed proportions ``p = (df + α) / (N + 2α)``:
  how many times more common the term became (1.0 = twice). Smoothing keeps a term absent
  from the background finite and stops one or two chance documents from looking like a surge.
- ``z_score``: the pooled two-proportion z statistic of ``r/R`` against ``b/B``: how sure the
  jump is. A large ratio on few documents has a small z; an evenly spread word (a particle,
  a frequent noun) has both near 0.

A term is trending when it occurs in at least `min_count` recent documents and both
statistics pass their thresholds. Ranking is by z-score (ties: log ratio), because a ratio
alone ranks a term seen in 3 recent documents above one that doubled across thousands.

`boost_weights` multiplies the IDF of trending (or hand-listed) terms in a ``{term: weight}``
table such as `korag.text.idf.term_idf` returns, so a search engine favours them.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from korag.errors import ConfigError, DataError
from korag.text.idf import term_document_frequencies
from korag.text.tokenize import Tokenizer, make_tokenizer

DateLike = dt.date | dt.datetime | str


@dataclass(frozen=True)
class TrendingTerm:
    """A term whose share of documents rose from the background to the recent set."""

    term: str
    recent_df: int
    background_df: int
    log_ratio: float
    z_score: float


def _as_date(value: DateLike, *, record: int | None = None) -> dt.date:
    """A date from a `date`, a `datetime` (its date) or an ISO string (``2024-05-01``, with or without time)."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value.strip()).date()
        except ValueError:
            pass
    where = f"document {record + 1}" if record is not None else None
    raise DataError(None, f"not a date: {value!r} (use a date or an ISO string such as 2024-05-01)", record=where)


def split_by_date(
    dates: Sequence[DateLike], since: DateLike, *, until: DateLike | None = None
) -> tuple[list[int], list[int]]:
    """Indices of (recent, background) documents: recent are dated ``since ≤ date < until``
    (no upper bound without `until`), background are dated before `since`. Documents on or
    after `until` belong to neither, so a window in the past compares against what preceded it."""
    start = _as_date(since)
    end = _as_date(until) if until is not None else None
    if end is not None and end <= start:
        raise ConfigError(f"the window is empty: until ({end}) must be after since ({start})")
    recent, background = [], []
    for i, value in enumerate(dates):
        d = _as_date(value, record=i)
        if d < start:
            background.append(i)
        elif end is None or d < end:
            recent.append(i)
    return recent, background


def split_by_window(
    dates: Sequence[DateLike], days: int, *, end: DateLike | None = None
) -> tuple[list[int], list[int]]:
    """`split_by_date` with the recent set being the `days` days up to and including `end`
    (default: the latest date in `dates`)."""
    if days < 1:
        raise ConfigError(f"the window must be at least one day (got {days})")
    parsed = [_as_date(v, record=i) for i, v in enumerate(dates)]
    if not parsed:
        return [], []
    last = _as_date(end) if end is not None else max(parsed)
    return split_by_date(parsed, last - dt.timedelta(days=days - 1), until=last + dt.timedelta(days=1))


def _z_score(r: int, n_r: int, b: int, n_b: int) -> float:
    pooled = (r + b) / (n_r + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_r + 1 / n_b))
    # a term in every document (or none) has no variance: nothing changed
    return (r / n_r - b / n_b) / se if se > 0 else 0.0


def trending_terms(
    recent: Sequence[Sequence[str]],
    background: Sequence[Sequence[str]],
    *,
    min_count: int = 3,
    min_log_ratio: float = 1.0,
    min_z: float = 3.0,
    smoothing: float = 0.5,
    top_k: int | None = None,
    rank_by: Literal["z_score", "log_ratio"] = "z_score",
) -> list[TrendingTerm]:
    """Terms of `recent` token lists that became more common than in `background`, best first.

    `min_count` is in recent *documents*; `min_log_ratio` is log2 of the rise (1.0 = at
    least twice as common, after smoothing by `smoothing` pseudo-documents). `min_z` is 3, not
    the textbook 2: every term of the vocabulary is tested at once, and at z ≥ 2 roughly one
    term in forty would pass by chance."""
    if min_count < 1:
        raise ConfigError(f"min_count must be at least 1 (got {min_count})")
    if smoothing <= 0:
        raise ConfigError(f"smoothing must be positive (got {smoothing})")
    if rank_by not in ("z_score", "log_ratio"):
        raise ConfigError(f"rank_by must be 'z_score' or 'log_ratio' (got {rank_by!r})")
    if not recent:
        raise DataError(None, "no recent documents to find trends in")
    if not background:
        raise DataError(None, "no background documents to compare the recent ones with")
    df_r, n_r = term_document_frequencies(recent)
    df_b, n_b = term_document_frequencies(background)
    out = []
    for term, r in df_r.items():
        if r < min_count:
            continue
        b = df_b.get(term, 0)
        p_r = (r + smoothing) / (n_r + 2 * smoothing)
        p_b = (b + smoothing) / (n_b + 2 * smoothing)
        log_ratio = math.log2(p_r / p_b)
        z = _z_score(r, n_r, b, n_b)
        if log_ratio >= min_log_ratio and z >= min_z:
            out.append(TrendingTerm(term, r, b, log_ratio, z))
    if rank_by == "z_score":
        out.sort(key=lambda t: (-t.z_score, -t.log_ratio, t.term))
    else:
        out.sort(key=lambda t: (-t.log_ratio, -t.z_score, t.term))
    return out[:top_k] if top_k is not None else out


def trending_terms_by_date(
    token_lists: Sequence[Sequence[str]],
    dates: Sequence[DateLike],
    since: DateLike,
    *,
    until: DateLike | None = None,
    **options,
) -> list[TrendingTerm]:
    """`trending_terms` of documents dated from `since` (to `until`) against the earlier ones."""
    if len(token_lists) != len(dates):
        raise DataError(None, f"{len(token_lists)} documents but {len(dates)} dates")
    recent, background = split_by_date(dates, since, until=until)
    return trending_terms([token_lists[i] for i in recent], [token_lists[i] for i in background], **options)


def boost_weights(
    weights: Mapping[str, float],
    terms: Iterable[str | TrendingTerm],
    factor: float = 2.0,
    *,
    keywords: Iterable[str] = (),
    tokenizer: Tokenizer | str | None = None,
) -> dict[str, float]:
    """A copy of an IDF table with the weight of `terms` (and hand-picked `keywords`) × `factor`.

    `terms` are tokens as they appear in the table (e.g. `TrendingTerm`s from the same
    tokenizer). `keywords` are taken as tokens too, unless a `tokenizer` is given: then each
    keyword is tokenized and all its tokens are boosted (``"챗GPT"`` under bigram-stem boosts
    ``챗g``, ``gp``, ``pt`` and ``챗gpt``). A term missing from the table gets the table's
    largest weight × `factor`: in BM25 IDF an unseen term is the rarest, so it must not end up
    below seen ones; each term is boosted once, however often it is listed."""
    if not (factor > 0 and math.isfinite(factor)):
        raise ConfigError(f"the boost factor must be a positive number (got {factor})")
    out = dict(weights)
    wanted = {t.term if isinstance(t, TrendingTerm) else t for t in terms}
    keyword_list = list(keywords)
    if tokenizer is not None:
        tok = make_tokenizer(tokenizer)
        wanted.update(t for tokens in tok.tokenize_batch(keyword_list) for t in tokens)
    else:
        wanted.update(keyword_list)
    ceiling = max(weights.values(), default=1.0)
    for term in wanted:
        if term:
            out[term] = weights.get(term, ceiling) * factor
    return out
