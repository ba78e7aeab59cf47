"""Answering a question from retrieved passages, with the passages it used cited as ``[n]``.

A reader turns a question and its numbered passages into an answer:

- `LLMReader` wraps any korag LLM backend (Gemma 3 270M offline, a model directory or ``.gguf``,
  ``llamacpp:FILE``, an OpenAI-compatible URL such as vLLM) with a Korean prompt that asks for
  a short answer followed by the numbers of the passages it rests on. Two prompt styles:
  ``completion`` for base models — Gemma 3 270M ships as a base model without a chat template,
  so one worked example teaches the ``답: … [n]`` format and generation stops at the line's end;
  ``chat`` for instruction models (a system message with the rules, the passages and question
  as the user turn). ``auto`` chooses chat for servers and for models with a chat template.
- `ClaraAnswerReader` (``clara:DIR``) reads the passages compressed by a trained CLaRa model.
  Its answers cite nothing by themselves; every passage it was given is listed as a source.

Citations are parsed from the answer (``[2]``, ``[1, 3]``, ``[1][2]``); numbers that name no
passage are dropped and counted, so a small model's invented ``[7]`` cannot point nowhere. A
model's citations are its claim; `Answer.supported` is the check: the passages whose text
contains the answer (strict match), which a small reader's citations often miss.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from korag.collections.config import PromptStyle
from korag.errors import ConfigError
from korag.eval.qa import contains_answer
from korag.retrieval.hits import Hit

NO_ANSWER = "자료에서 답을 찾을 수 없습니다"

_RULES = (
    "아래 자료만 근거로 질문에 짧게 답한다. 답 끝에 근거가 된 자료의 번호를 [번호]로 적는다. "
    f'자료에 답이 없으면 "{NO_ANSWER}"라고 답한다.'
)
# Two worked examples for base models: the format (a short phrase, then [n]), and that the number
# is the passage holding the answer — with one example citing [2], Gemma 3 270M cited [2] whatever
# the passages; with these two it cited the right passage in 2 of 5 probes (it remains a 270M model).
_EXAMPLE = (
    "자료:\n[1] 한라산은 제주도 중앙에 있는 산으로, 높이는 1,947미터이다.\n"
    "[2] 설악산은 강원도 속초시와 인제군, 양양군에 걸쳐 있는 산이다.\n"
    "질문: 한라산의 높이는?\n답: 1,947미터 [1]\n\n"
    "자료:\n[1] 경주는 신라의 수도였다.\n[2] 백제의 마지막 수도는 사비, 지금의 부여이다.\n"
    "[3] 고구려는 평양으로 수도를 옮겼다.\n질문: 백제의 마지막 수도는?\n답: 사비 [2]\n\n"
)
_CLOSED_EXAMPLE = "질문: 한라산이 있는 섬은?\n답: 제주도\n\n"
_CITATION = re.compile(r"\[(\s*\d+(?:\s*[,，]\s*\d+)*\s*)\]")


def parse_citations(text: str, n_sources: int) -> tuple[str, list[int], int]:
    """(the answer without citation marks, the cited source numbers in order of first mention,
    how many cited numbers named no source)."""
    cited: list[int] = []
    invalid = 0
    for m in _CITATION.finditer(text):
        for part in re.split(r"[,，]", m.group(1)):
            n = int(part)
            if 1 <= n <= n_sources:
                if n not in cited:
                    cited.append(n)
            else:
                invalid += 1
    clean = re.sub(r"\s+", " ", _CITATION.sub("", text)).strip()
    return clean, cited, invalid


@dataclass
class Answer:
    """An answer, the passages it was given (numbered from 1) and those it cites."""

    question: str
    text: str
    sources: list[Hit]
    cited: list[int] = field(default_factory=list)
    invalid_citations: int = 0
    supported: list[int] = field(default_factory=list)  # sources whose text contains the answer
    raw: str = ""
    retriever: str = ""
    reader: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self, excerpt_chars: int = 300) -> dict[str, Any]:
        """JSON for scripts and the HTTP API."""
        return {
            "question": self.question,
            "answer": self.text,
            "raw": self.raw,
            "cited": self.cited,
            "invalid_citations": self.invalid_citations,
            "supported": self.supported,
            "sources": [
                {
                    "n": i,
                    **h.to_dict(),
                    "text": h.text[:excerpt_chars],
                    "cited": i in self.cited,
                    "supports": i in self.supported,
                }
                for i, h in enumerate(self.sources, start=1)
            ],
            "retriever": self.retriever,
            "reader": self.reader,
            "timings": self.timings,
        }


class Reader(Protocol):
    """Reads numbered passages and answers (streamed in pieces)."""

    def stream(self, question: str, passages: Sequence[Hit]) -> Iterator[str]:
        """The answer in pieces as it is generated (empty `passages`: closed-book)."""
        ...

    def describe(self) -> dict[str, Any]:
        """What answers (backend, model)."""
        ...


def _passage_line(n: int, hit: Hit, max_chars: int) -> str:
    text = " ".join(hit.text.split())
    if len(text) > max_chars:
        text = text[:max_chars] + "…"
    title = f"({hit.title}) " if hit.title else ""
    return f"[{n}] {title}{text}"


class LLMReader:
    """An LLM answering from numbered passages with citations (see the module docstring)."""

    def __init__(
        self,
        generator: Any,
        *,
        style: PromptStyle = "auto",
        max_tokens: int = 128,
        max_passage_chars: int = 1200,
    ) -> None:
        self.generator = generator
        from korag.synth.chat import resolve_prompt_style

        self.style = resolve_prompt_style(generator, style)
        self.max_tokens = max_tokens
        self.max_passage_chars = max_passage_chars

    def describe(self) -> dict[str, Any]:
        """The backend's description and the prompt style."""
        return {**self.generator.describe(), "style": self.style}

    def prompt(self, question: str, passages: Sequence[Hit]):
        """The prompt for `question` over `passages` (closed-book when there are none)."""
        q = " ".join(question.split())
        if self.style == "chat":
            if not passages:
                return [{"role": "user", "content": f"질문에 짧게 답하세요.\n\n질문: {q}"}]
            context = "\n".join(_passage_line(i, h, self.max_passage_chars) for i, h in enumerate(passages, 1))
            return [
                {"role": "system", "content": _RULES},
                {"role": "user", "content": f"자료:\n{context}\n\n질문: {q}"},
            ]
        if not passages:
            return f"질문에 짧게 답한다.\n\n{_CLOSED_EXAMPLE}질문: {q}\n답:"
        context = "\n".join(_passage_line(i, h, self.max_passage_chars) for i, h in enumerate(passages, 1))
        return f"{_RULES}\n\n{_EXAMPLE}자료:\n{context}\n질문: {q}\n답:"

    def config(self):
        """Generation settings: greedy, and a completion ends with its line."""
        from korag.synth.generation import GenerationConfig

        stop = ("\n",) if self.style == "completion" else ()
        return GenerationConfig(max_tokens=self.max_tokens, temperature=0.0, stop=stop)

    def stream(self, question: str, passages: Sequence[Hit]) -> Iterator[str]:
        """The answer in pieces (leading spaces of a completion dropped)."""
        started = False
        for piece in self.generator.stream(self.prompt(question, passages), self.config()):
            if not started:
                piece = piece.lstrip()
                started = bool(piece)
            if piece:
                yield piece


class ClaraAnswerReader:
    """A trained CLaRa model answering from the compressed passages."""

    def __init__(self, directory: str | Path, *, device: str = "auto") -> None:
        from korag.memory.clara.inference import ClaraReader
        from korag.memory.clara.store import load_clara, model_identity
        from korag.models.device import resolve_device

        self.directory = Path(directory)
        model, self.info = load_clara(self.directory, device=resolve_device(device))
        self.reader = ClaraReader(model, identity=model_identity(self.directory))

    def describe(self) -> dict[str, Any]:
        """The CLaRa model directory and its base LM."""
        return {"backend": "clara", "model": str(self.directory), "base": self.info.get("base")}

    def stream(self, question: str, passages: Sequence[Hit]) -> Iterator[str]:
        """The whole answer at once (CLaRa decodes without a streamer)."""
        if passages:
            yield self.reader.answer([question], [[h.text for h in passages]])[0].strip()
        else:
            yield self.reader.baseline([question])[0].strip()


def make_reader(
    spec: str = "gemma3-270m",
    *,
    style: PromptStyle = "auto",
    max_tokens: int = 128,
    device: str = "auto",
    model_name: str | None = None,
    api_key: str | None = None,
) -> Reader:
    """A reader from a spec: ``clara:DIR``, or any LLM spec `make_generator` takes
    (``gemma3-270m``, a directory, a ``.gguf`` file, ``llamacpp:FILE``, an ``http(s)://`` URL).
    A server's key comes from `api_key` or the ``OPENAI_API_KEY`` environment variable."""
    if spec.startswith("clara:"):
        return ClaraAnswerReader(spec.removeprefix("clara:"), device=device)
    from korag.synth.llm import make_generator

    options: dict[str, Any] = {}
    if spec.startswith(("http://", "https://")):
        import os

        options = {"model": model_name or "default", "api_key": api_key or os.environ.get("OPENAI_API_KEY")}
    elif not spec.startswith("llamacpp:"):
        from korag.models.device import resolve_device

        options = {"device": resolve_device(device), "show_progress": False}
    try:
        generator = make_generator(spec, **options)
    except ConfigError as exc:
        raise ConfigError(f"{exc}; or clara:DIR for a trained CLaRa model") from None
    return LLMReader(generator, style=style, max_tokens=max_tokens)


class AskStream:
    """An answer being generated: `sources` at once, then the answer's pieces by iterating;
    `answer` holds the whole `Answer` when the iteration ends."""

    def __init__(self, question: str, sources: list[Hit], reader: Reader, retriever: str, timings: dict[str, float]):
        self.question = question
        self.sources = sources
        self.reader = reader
        self.retriever = retriever
        self.timings = dict(timings)
        self.answer: Answer | None = None

    def __iter__(self) -> Iterator[str]:
        t0 = time.perf_counter()
        pieces: list[str] = []
        for piece in self.reader.stream(self.question, self.sources):
            pieces.append(piece)
            yield piece
        raw = "".join(pieces).strip()
        text, cited, invalid = parse_citations(raw, len(self.sources))
        if isinstance(self.reader, ClaraAnswerReader):
            cited = list(range(1, len(self.sources) + 1))  # it read them all and names none
        self.timings["answer_seconds"] = time.perf_counter() - t0
        self.answer = Answer(
            self.question,
            text,
            self.sources,
            cited,
            invalid,
            [i for i, h in enumerate(self.sources, 1) if text and contains_answer(h.text, [text])],
            raw,
            self.retriever,
            self.reader.describe(),
            self.timings,
        )

    def result(self) -> Answer:
        """Run to the end (if not yet) and return the `Answer`."""
        if self.answer is None:
            for _ in self:
                pass
        assert self.answer is not None
        return self.answer
