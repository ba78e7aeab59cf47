"""Korean few-shot prompts for query generation.

Written as completions, not chat: the offline default (Gemma 3 270M) is a base model and
follows a pattern far better than an instruction, and instruction models continue the same
pattern just as well. Each example is original text written for korag. The passage is cut to
`max_chars` at a sentence end: small models lose the thread in long prompts, and the question
only has to be answerable from the part they saw.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from korag.errors import ConfigError

_EXAMPLES = (
    (
        "남산서울타워",
        "남산서울타워는 서울특별시 용산구 남산 정상에 있는 전파 송출 및 관광용 탑이다. 1969년에 착공하여 "
        "1975년에 완공되었고, 1980년부터 일반인에게 공개되었다. 높이는 236.7미터이며 전망대에서는 서울 "
        "시내를 한눈에 내려다볼 수 있다.",
        "남산서울타워가 일반인에게 공개된 해는 언제인가?",
        "남산서울타워 높이",
    ),
    (
        "광합성",
        "광합성은 식물이 빛 에너지를 이용하여 이산화 탄소와 물로부터 포도당을 만드는 과정이다. 이 과정은 "
        "주로 잎의 엽록체에서 일어나며, 엽록소가 빛을 흡수한다. 부산물로 산소가 대기 중으로 방출된다.",
        "식물의 광합성에서 빛을 흡수하는 색소는 무엇인가?",
        "광합성 부산물 산소",
    ),
    (
        "장영실",
        "장영실은 조선 세종 때의 과학자이자 발명가이다. 동래현의 관노 출신이었으나 재능을 인정받아 궁중 "
        "기술자가 되었다. 그는 물시계인 자격루와 천체 관측 기구인 혼천의를 만드는 데 참여하였다.",
        "장영실이 만드는 데 참여한 물시계의 이름은?",
        "장영실 자격루 혼천의",
    ),
)

_STYLES = {
    "question": ("다음은 백과사전 문단과, 그 문단을 읽고 답할 수 있는 질문이다.", "질문"),
    "keyword": ("다음은 백과사전 문단과, 그 문단을 찾을 때 검색창에 입력할 검색어이다.", "검색어"),
}


def _cut(text: str, max_chars: int) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    end = max(head.rfind(". "), head.rfind("다. "), head.rfind("? "))
    return head[: end + 1] if end > max_chars // 2 else head


@dataclass(frozen=True)
class QueryPrompt:
    """A few-shot completion prompt for one query style (``question`` or ``keyword``)."""

    style: str = "question"
    shots: int = 3
    max_chars: int = 400

    def __post_init__(self) -> None:
        if self.style not in _STYLES:
            raise ConfigError(f"unknown prompt style {self.style!r}; choose from {', '.join(_STYLES)}")
        if not 0 <= self.shots <= len(_EXAMPLES):
            raise ConfigError(f"shots must be between 0 and {len(_EXAMPLES)} (got {self.shots})")

    @property
    def label(self) -> str:
        """The word that introduces a query (질문 / 검색어)."""
        return _STYLES[self.style][1]

    @property
    def stop(self) -> tuple[str, ...]:
        """A query ends at the line's end; the model would otherwise start the next example."""
        return ("\n",)

    def render(self, text: str, title: str = "") -> str:
        """The prompt for one passage, ending where the model writes the query."""
        intro, label = _STYLES[self.style]
        parts = [intro, ""]
        for ex_title, ex_text, question, keywords in _EXAMPLES[: self.shots]:
            parts += [
                f"제목: {ex_title}",
                f"문단: {ex_text}",
                f"{label}: {question if self.style == 'question' else keywords}",
                "",
            ]
        parts += [f"제목: {title}" if title else "제목:", f"문단: {_cut(text, self.max_chars)}", f"{label}:"]
        return "\n".join(parts)

    def template_hash(self) -> str:
        """Identity of the prompt text (part of a generation stage's key): changes whenever the
        wording, examples or truncation change."""
        probe = self.render("{passage}", "{title}") + f"|{self.max_chars}"
        return hashlib.sha256(probe.encode("utf-8")).hexdigest()[:16]

    def to_dict(self) -> dict[str, object]:
        """Settings plus the template hash."""
        return {"style": self.style, "shots": self.shots, "max_chars": self.max_chars, "template": self.template_hash()}
