"""What every LLM backend shares: the sampling settings and the `Generator` protocol.

A prompt is either plain text (completion; what base models such as Gemma 3 270M need) or a list
of chat messages ``{"role": ..., "content": ...}`` (instruction models; rendered with the model's
chat template, or sent as-is to an OpenAI-compatible server).

Every backend finishes a raw continuation the same way (`GeneratorBase.finish`): reasoning
(``<think>…</think>``, gpt-oss' analysis channel, a think block cut off by ``max_tokens``) is
removed from what is kept and counted in `GenerationStats`, stop strings are cut, and when the
config asks for JSON the answer is parsed and validated (counted when it is not valid).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from korag.errors import ConfigError

ChatMessage = dict[str, str]
Prompt = str | list[ChatMessage]


@dataclass(frozen=True)
class GenerationConfig:
    """Sampling settings. ``temperature == 0`` means greedy decoding.

    ``json_schema``: the answer must be JSON (``{}``: any JSON object; otherwise a JSON schema
    it must follow) — constrained by the backend where it can be, parsed and validated always.
    ``thinking`` / ``reasoning_effort`` override the generator's own defaults for chat prompts
    (Qwen3's ``enable_thinking``; gpt-oss' effort); None leaves them to the generator.
    """

    max_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = 0
    json_schema: Mapping[str, Any] | None = None
    thinking: bool | None = None
    reasoning_effort: str | None = None

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ConfigError(f"max_tokens must be at least 1 (got {self.max_tokens})")
        if self.temperature < 0:
            raise ConfigError(f"temperature must be ≥ 0 (got {self.temperature})")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1] (got {self.top_p})")
        if self.json_schema is not None and not isinstance(self.json_schema, Mapping):
            raise ConfigError(f"json_schema must be a JSON schema object (got {type(self.json_schema).__name__})")
        if self.reasoning_effort not in (None, "low", "medium", "high"):
            raise ConfigError(f"reasoning_effort must be low, medium or high (got {self.reasoning_effort!r})")
        object.__setattr__(self, "stop", tuple(self.stop))

    def to_dict(self) -> dict[str, Any]:
        """Plain settings (part of a generation stage's key; the newer settings only when set,
        so keys of generations made before they existed stay the same)."""
        d = asdict(self)
        d["stop"] = list(self.stop)
        for key in ("json_schema", "thinking", "reasoning_effort"):
            if d[key] is None:
                del d[key]
        if "json_schema" in d:
            d["json_schema"] = dict(self.json_schema or {})
        return d


@dataclass
class GenerationStats:
    """Counters a backend keeps across calls (shown in reports)."""

    prompts: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0
    retries: int = 0
    #: outputs that held reasoning (removed from the kept text), its characters, and outputs
    #: whose reasoning never ended (the model hit max_tokens while thinking: nothing is kept)
    reasoning_outputs: int = 0
    reasoning_chars: int = 0
    reasoning_unterminated: int = 0
    #: outputs asked to be JSON that were not (or did not follow the schema)
    json_invalid: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens per wall-clock second."""
        return self.generated_tokens / self.seconds if self.seconds > 0 else 0.0


@runtime_checkable
class Generator(Protocol):
    """Prompts in, generated texts out (one per prompt, in order)."""

    stats: GenerationStats

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[str]:
        """The continuation of every prompt, with stop strings cut off."""
        ...

    def generate_scored(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[tuple[str, float | None]]:
        """Each continuation with its mean token log-probability (None where the backend has none)."""
        ...

    def describe(self) -> dict[str, Any]:
        """What identifies the model (backend, path or name, file hash) for stage keys and reports."""
        ...


class GeneratorBase:
    """The half every backend shares: counters across calls and, for backends without token
    log-probabilities, `generate_scored` with None scores.

    Adding a backend: subclass this, implement ``generate`` (updating `stats`) and ``describe``,
    and, if the backend exposes log-probabilities, override `generate_scored`.
    """

    def __init__(self) -> None:
        self.stats = GenerationStats()
        self._stats_lock = threading.Lock()  # backends finish outputs from several threads

    def finish(self, raw: str, config: GenerationConfig, reasoning: str = "") -> str:
        """What is kept of a raw continuation: reasoning removed and counted (`reasoning` is what
        a server already separated, e.g. vLLM's ``reasoning_content``), stop strings cut, JSON
        extracted and validated when `config` asks for it."""
        from korag.synth.chat import check_json, split_reasoning

        split = split_reasoning(raw)
        text = cut_at_stop(split.answer, config.stop)
        thought = (reasoning or "") + split.reasoning
        problem = None
        if config.json_schema is not None:
            text, problem = check_json(text, config.json_schema)
        with self._stats_lock:
            if thought or split.unterminated:
                self.stats.reasoning_outputs += 1
                self.stats.reasoning_chars += len(thought)
            self.stats.reasoning_unterminated += int(split.unterminated)
            self.stats.json_invalid += int(problem is not None)
        return text

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[str]:  # pragma: no cover
        """The continuation of every prompt, with stop strings cut off."""
        raise NotImplementedError

    def generate_scored(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[tuple[str, float | None]]:
        """Each continuation with no score (this backend reports no log-probabilities)."""
        return [(text, None) for text in self.generate(prompts, config)]

    def stream(self, prompt: Prompt, config: GenerationConfig) -> Iterator[str]:
        """The continuation of one prompt in pieces as they are generated (joined, equal to
        `generate`'s); backends that cannot stream yield it whole."""
        yield self.generate([prompt], config)[0]


class StopCutter:
    """Cut streamed text at the first stop string without emitting any part of it: a piece is
    held back while its end could still begin a stop string."""

    def __init__(self, stop: Sequence[str]) -> None:
        self.stop = [s for s in stop if s]
        self.done = False
        self._held = ""

    def feed(self, piece: str) -> str:
        """The text that is now certain to come before any stop string."""
        if self.done:
            return ""
        text = self._held + piece
        cut = min((i for s in self.stop if (i := text.find(s)) >= 0), default=-1)
        if cut >= 0:
            self.done, self._held = True, ""
            return text[:cut]
        hold = max((n for s in self.stop for n in range(1, len(s)) if text.endswith(s[:n])), default=0)
        self._held = text[len(text) - hold :] if hold else ""
        return text[: len(text) - hold]

    def finish(self) -> str:
        """What was held back when the stream ended without a stop string."""
        rest, self._held = ("" if self.done else self._held), ""
        return rest


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """`text` up to the first occurrence of any stop string."""
    cut = len(text)
    for s in stop:
        if s:
            i = text.find(s)
            if 0 <= i < cut:
                cut = i
    return text[:cut]


def check_prompts(prompts: Sequence[Prompt]) -> None:
    """Reject malformed prompts with a message naming the prompt, before any model runs."""
    for i, p in enumerate(prompts):
        if isinstance(p, str):
            continue
        if not isinstance(p, list) or not p:
            raise ConfigError(
                f"prompt {i + 1}: expected text or a non-empty list of chat messages, got {type(p).__name__}"
            )
        for j, m in enumerate(p):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
                raise ConfigError(f"prompt {i + 1}, message {j + 1}: needs string 'role' and 'content'")
