"""Answer metrics: exact match and F1 under SQuAD v1.1 or KorQuAD 1.0 rules.

- ``squad``: lowercase, drop ASCII punctuation and the articles a/an/the, collapse spaces;
  F1 over whitespace tokens (the official SQuAD v1.1 script).
- ``korquad``: replace quotes and brackets (' " 《 》 < > 〈 〉 ( ) ‘ ’) by spaces, lowercase,
  drop ASCII punctuation, collapse spaces; F1 over *characters* (spaces excluded), since
  Korean words carry particles (the official KorQuAD 1.0 script).

Every score is the best over all gold answers. Cover-EM (does the normalised gold answer
occur inside the normalised prediction) suits generative readers that answer in sentences.

Whether a *passage* holds an answer (answer recall of a retriever over documents without gold
passages) is decided strictly instead: Unicode NFC and whitespace runs collapsed to one space,
nothing else — so "9,309" does not match "9309" in a reference list, and an answer broken by a
PDF line end ("경\n량화" read as "경 량화") is not found, which is what such a break costs a
user.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from korag.errors import ConfigError

AnswerNormalization = Literal["squad", "korquad"]
_PUNCT = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_KORQUAD_SPACES = str.maketrans(dict.fromkeys("'\"《》<>〈〉()‘’", " "))


def normalize_answer(text: str, normalization: AnswerNormalization = "squad") -> str:
    """`text` normalised as the chosen official script does before comparing."""
    if normalization == "squad":
        text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
        return " ".join(_ARTICLES.sub(" ", text).split())
    if normalization == "korquad":
        text = text.translate(_KORQUAD_SPACES).lower()
        return " ".join("".join(ch for ch in text if ch not in _PUNCT).split())
    raise ConfigError(f"unknown answer normalisation {normalization!r}; use 'squad' or 'korquad'")


def _units(text: str, normalization: AnswerNormalization) -> list[str]:
    norm = normalize_answer(text, normalization)
    if normalization == "korquad":
        return [ch for ch in norm if ch != " "]
    return norm.split()


_WS = re.compile(r"\s+")


def strict_normalize(text: str) -> str:
    """Unicode NFC with whitespace runs collapsed to one space and the ends stripped."""
    return _WS.sub(" ", unicodedata.normalize("NFC", text)).strip()


def contains_answer(passage: str, answers: Sequence[str]) -> bool:
    """Whether `passage` holds any of `answers` under `strict_normalize`."""
    p = strict_normalize(passage)
    return any((a := strict_normalize(g)) and a in p for g in answers)


def exact_match(prediction: str, golds: Sequence[str], normalization: AnswerNormalization = "squad") -> float:
    """1.0 if the normalised prediction equals any normalised gold answer."""
    p = normalize_answer(prediction, normalization)
    return float(any(p == normalize_answer(g, normalization) for g in golds))


def f1(prediction: str, golds: Sequence[str], normalization: AnswerNormalization = "squad") -> float:
    """Best token (SQuAD) or character (KorQuAD) F1 over the gold answers."""
    pred = _units(prediction, normalization)
    best = 0.0
    for g in golds:
        gold = _units(g, normalization)
        common = sum((Counter(pred) & Counter(gold)).values())
        if common == 0:
            continue
        precision, recall = common / len(pred), common / len(gold)
        best = max(best, 2 * precision * recall / (precision + recall))
    return best


def cover_em(prediction: str, golds: Sequence[str], normalization: AnswerNormalization = "squad") -> float:
    """1.0 if any normalised gold answer occurs inside the normalised prediction."""
    p = normalize_answer(prediction, normalization)
    return float(any(normalize_answer(g, normalization) and normalize_answer(g, normalization) in p for g in golds))


@dataclass
class QAResult:
    """Mean scores (0–100, like the official scripts) and how many questions were scored."""

    metrics: dict[str, float]
    answered: int
    total: int


def evaluate_answers(
    predictions: Mapping[str, str],
    golds: Mapping[str, Sequence[str]],
    normalizations: Sequence[AnswerNormalization] = ("squad", "korquad"),
) -> QAResult:
    """EM, F1 and cover-EM under each normalisation; unanswered questions score 0."""
    metrics: dict[str, float] = {}
    answerable = {q: g for q, g in golds.items() if g}
    if not answerable:
        raise ConfigError("no question has a gold answer: nothing to evaluate")
    for norm in normalizations:
        em = f = cem = 0.0
        for qid, gold in answerable.items():
            pred = predictions.get(qid)
            if pred is None:
                continue
            em += exact_match(pred, gold, norm)
            f += f1(pred, gold, norm)
            cem += cover_em(pred, gold, norm)
        n = len(answerable)
        metrics[f"em_{norm}"] = 100 * em / n
        metrics[f"f1_{norm}"] = 100 * f / n
        metrics[f"cover_em_{norm}"] = 100 * cem / n
    answered = sum(1 for q in answerable if q in predictions)
    return QAResult(metrics, answered, len(answerable))
