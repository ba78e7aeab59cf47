"""korag's default Korean tokenizer: character bigrams plus light-stemmed words.

Why not a morphological analyser by default: Kiwi tokenises ~50k characters/s per core here
and MeCab ~200k, while BM25 over plain character bigrams already beats both on KorQuAD
paragraph retrieval (MRR@10 0.945 vs 0.934 Kiwi, 0.938 MeCab). Bigrams miss one thing
morphemes give — whole-word matches — so this tokenizer adds, for every word, the word with
its trailing particle or common ending removed by longest-suffix match against a fixed list
(가, 에서는, 으로써, 하였다, …). The two token kinds are complementary: bigrams survive
spelling and segmentation variants, stems reward exact word matches. Pure Python, no model,
~3M characters/s; figures are in `bench/bm25_korquad.py`.

The stemmer is deliberately crude (it will cut 고양이 to 고양): a wrong cut only loses one of
many tokens of the text, because the bigrams still carry the word.
"""

from __future__ import annotations

import re
from typing import Any

from korag.text.tokenize import BaseTokenizer

# Particles (조사), copula and light-verb endings that attach to nouns, with common compounds.
_SUFFIXES = """
이 가 을 를 은 는 의 에 에서 에게 께 께서 한테 한테서 로 으로 와 과 랑 이랑 도 만 뿐 까지 부터 보다
처럼 같이 마다 조차 마저 밖에 만큼 이나 나 이란 란 이라 라 이라는 라는 이라고 라고 라도 이라도 든지 이든지
으로서 로서 으로써 로써 에는 에서는 으로는 로는 와는 과는 에도 에서도 으로도 로도 에게는 에게도 에게서
까지는 까지도 부터는 부터도 만은 만을 만이 만의 에서부터 으로부터 로부터
에의 와의 과의 으로의 로의 에서의 의해
이다 였다 이었다 인 였던 이었던 이며 이고 입니다 이었으며 였으며 이었고 였고 였다가
하다 했다 하였다 한다 하는 하고 하여 해서 하며 하면 했던 한 하기 하게 하지 했으며 하였으며
된 되는 되었다 됐다 되어 되며 될 되었으며 되었고 되고 된다 시킨 시켰다 시켜 시키는
들 들이 들을 들은 들의 들에게 들과 들도 들로 들에
""".split()
_SUFFIX_SET = frozenset(_SUFFIXES)
_MAX_SUFFIX = max(map(len, _SUFFIXES))
_WORD = re.compile(r"\w+")
_CACHE_LIMIT = 1 << 20


def strip_suffix(word: str, min_stem: int = 1) -> str:
    """`word` without its longest listed trailing particle/ending, keeping ≥ `min_stem` characters."""
    n = len(word)
    for length in range(min(_MAX_SUFFIX, n - min_stem), 0, -1):
        if word[n - length :] in _SUFFIX_SET:
            return word[: n - length]
    return word


class BigramStemTokenizer(BaseTokenizer):
    """Character bigrams of the text's word characters, plus each word stripped of its particle.

    >>> BigramStemTokenizer().tokenize("서울에서 Python을")
    ['서울', '울에', '에서', '서p', 'py', 'yt', 'th', 'ho', 'on', 'n을', '서울', 'python']
    """

    name = "bigram-stem"

    def __init__(self, stems: bool = True, bigrams: bool = True, min_stem: int = 1) -> None:
        if not (stems or bigrams):
            raise ValueError("at least one of stems and bigrams must be enabled")
        self.stems = stems
        self.bigrams = bigrams
        self.min_stem = min_stem
        self._cache: dict[str, str] = {}

    def tokenize(self, text: str) -> list[str]:
        """Bigrams first, then stems (BM25 is order-free; the order only aids reading)."""
        words = _WORD.findall(text.lower())
        out: list[str] = []
        if self.bigrams:
            s = "".join(words)
            if len(s) < 2:
                out.extend([s] if s else [])
            else:
                out.extend([s[i : i + 2] for i in range(len(s) - 1)])
        if self.stems:
            # Words repeat (Zipf), so a memo of word → stem roughly doubles the stemming speed.
            cache = self._cache
            if len(cache) > _CACHE_LIMIT:
                cache.clear()
            for w in words:
                stem = cache.get(w)
                if stem is None:
                    stem = cache[w] = strip_suffix(w, self.min_stem)
                out.append(stem)
        return out

    def config(self) -> dict[str, Any]:
        """Settings that rebuild this tokenizer."""
        return {"name": self.name, "stems": self.stems, "bigrams": self.bigrams, "min_stem": self.min_stem}
