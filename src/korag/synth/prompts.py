"""Korean few-shot prompts for query generation.

Two forms of the same examples. Completion (the default): the offline Gemma 3 270M is a base
model and follows a pattern far better than an instruction. Chat (``chat=True``, for instruction
models; chosen by ``prompt_style``, see `korag.synth.chat.resolve_prompt_style`): a system
instruction, the examples as user/assistant turns, and answers as JSON ``{"queries": [...]}``
that backends constrain or validate (`QUERY_SCHEMA`). Each example is original text written for
korag. The passage is cut to `max_chars` at a sentence end: small models lose the thread in long
prompts, and the question only has to be answerable from the part they saw.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from korag.errors import ConfigError
from korag.synth.generation import ChatMessage, Prompt

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


_CHAT_RULES = {
    "question": "백과사전 문단을 읽고, 그 문단만 보고 답할 수 있는 한국어 질문을 하나 쓴다.",
    "keyword": "백과사전 문단을 읽고, 그 문단을 찾을 때 검색창에 입력할 한국어 검색어를 하나 쓴다.",
}
_CHAT_FORMAT = '답은 JSON 객체 하나로만 한다: {"queries": ["..."]}'

#: what a chat answer must be: one to three non-empty queries
QUERY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "queries": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1, "maxItems": 3}
    },
    "required": ["queries"],
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
    """A few-shot prompt for one query style (``question`` or ``keyword``): a completion, or
    with `chat` chat messages whose answer is JSON (checked against `QUERY_SCHEMA` unless
    `json_output` is off)."""

    style: str = "question"
    shots: int = 3
    max_chars: int = 400
    chat: bool = False
    json_output: bool = True

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
        """A completed query ends at the line's end (the model would otherwise start the next
        example); a chat answer ends with the model's turn."""
        return () if self.chat else ("\n",)

    @property
    def json_schema(self) -> dict[str, Any] | None:
        """The schema chat answers must follow (None for completions or with `json_output` off)."""
        return QUERY_SCHEMA if self.chat and self.json_output else None

    def build(self, text: str, title: str = "") -> Prompt:
        """The prompt for one passage in this prompt's form (`messages` or `render`)."""
        return self.messages(text, title) if self.chat else self.render(text, title)

    def messages(self, text: str, title: str = "") -> list[ChatMessage]:
        """Chat messages for one passage: the instruction, the examples as finished turns, the
        passage as the last user turn."""
        label = self.label
        system = _CHAT_RULES[self.style] + (" " + _CHAT_FORMAT if self.json_output else f" {label}만 쓴다.")
        out: list[ChatMessage] = [{"role": "system", "content": system}]
        for ex_title, ex_text, question, keywords in _EXAMPLES[: self.shots]:
            query = question if self.style == "question" else keywords
            answer = json.dumps({"queries": [query]}, ensure_ascii=False) if self.json_output else query
            out += [
                {"role": "user", "content": f"제목: {ex_title}\n문단: {ex_text}"},
                {"role": "assistant", "content": answer},
            ]
        heading = f"제목: {title}" if title else "제목:"
        out.append({"role": "user", "content": f"{heading}\n문단: {_cut(text, self.max_chars)}"})
        return out

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
        if self.chat:
            probe = json.dumps(self.messages("{passage}", "{title}"), ensure_ascii=False) + f"|{self.max_chars}"
        else:
            probe = self.render("{passage}", "{title}") + f"|{self.max_chars}"
        return hashlib.sha256(probe.encode("utf-8")).hexdigest()[:16]

    def to_dict(self) -> dict[str, object]:
        """Settings plus the template hash (the chat settings only for chat prompts, so keys of
        completion generations made before they existed stay the same)."""
        d: dict[str, object] = {"style": self.style, "shots": self.shots, "max_chars": self.max_chars}
        if self.chat:
            d.update(chat=True, json_output=self.json_output)
        return {**d, "template": self.template_hash()}
