"""How close generated text is to a reference: ROUGE-L (longest common subsequence F-measure).

Written here rather than taken from `rouge-score`: that package's default tokenizer keeps only
[a-z0-9] and so drops every Hangul syllable — a Korean pair would score 0 or be undefined.
Units are whitespace words (as ROUGE-L is usually reported) or characters without spaces (the
fairer unit for Korean, whose words carry particles: 서울은 / 서울이).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

Unit = Literal["word", "char"]


def _units(text: str, unit: Unit) -> list[str]:
    return text.split() if unit == "word" else [c for c in text if not c.isspace()]


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token sequences."""
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(prediction: str, reference: str, unit: Unit = "word") -> float:
    """ROUGE-L F1 of `prediction` against `reference` (0 when either is empty)."""
    p, r = _units(prediction, unit), _units(reference, unit)
    if not p or not r:
        return 0.0
    lcs = lcs_length(p, r)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(p), lcs / len(r)
    return 2 * precision * recall / (precision + recall)
