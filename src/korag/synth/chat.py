"""Instruction models: which prompt style a model takes, its chat-template switches, reasoning
removed from what it wrote, and JSON answers checked.

- Prompt style: ``auto`` is chat when the model has a chat template (a server is assumed to have
  one), completion otherwise (base models such as Gemma 3 270M continue a few-shot pattern).
- Families differ in how thinking is switched: Qwen3's template takes ``enable_thinking``
  (``False`` writes an empty ``<think></think>`` into the prompt), gpt-oss' harmony template takes
  ``reasoning_effort`` and always answers in two channels (``analysis``, then ``final``).
- Reasoning is never kept: ``<think>…</think>`` blocks (also when the opening tag was part of the
  prompt, as Qwen3's template does), a think block cut off by ``max_tokens`` (nothing is kept),
  harmony's analysis channel (also in the flattened form servers print when they drop special
  tokens: ``analysis…assistantfinal…``).
- JSON: the answer is taken from a fenced block or the first balanced object/array, and validated
  with ``jsonschema`` when it is installed (a type/required-keys check otherwise).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

log = logging.getLogger(__name__)

PromptStyle = Literal["auto", "chat", "completion"]
Family = Literal["thinking", "harmony", "plain"]

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.S)
_HARMONY_MESSAGE = re.compile(
    r"<\|channel\|>\s*(\w+)[^<]*?<\|message\|>(.*?)(?=<\|end\|>|<\|return\|>|<\|call\|>|<\|start\|>|\Z)", re.S
)
# what a server prints for harmony output when it skips special tokens
_HARMONY_FLAT = re.compile(r"^analysis(.*?)assistantfinal(.*)$", re.S)
_HARMONY_TOKENS = re.compile(r"<\|(?:start|end|return|call|message|channel|constrain)\|>")
REASONING_MARKERS = ("<think>", "</think>", "<|channel|>")


@dataclass(frozen=True)
class Reasoned:
    """A raw output split into the answer kept and the reasoning removed."""

    answer: str
    reasoning: str = ""
    unterminated: bool = False


def split_reasoning(text: str) -> Reasoned:
    """`text` without its reasoning (think blocks, harmony analysis channel), and that reasoning.

    >>> split_reasoning("<think>음…</think>서울").answer
    '서울'
    """
    if "<|channel|>" in text or "<|message|>" in text:
        return _split_harmony(text)
    if flat := _HARMONY_FLAT.match(text):
        return Reasoned(flat.group(2).strip(), flat.group(1).strip())
    if "<think>" not in text and "</think>" not in text:
        return Reasoned(text)
    thoughts = [m.group(0)[7:-8] for m in _THINK_BLOCK.finditer(text)]
    rest = _THINK_BLOCK.sub("", text)
    if "</think>" in rest:  # the opening tag was in the prompt (Qwen3's template, DeepSeek-R1)
        head, _, rest = rest.rpartition("</think>")
        thoughts.insert(0, head.replace("<think>", ""))
    unterminated = False
    if "<think>" in rest:  # opened and never closed: the model ran out of tokens while thinking
        rest, _, tail = rest.partition("<think>")
        thoughts.append(tail)
        unterminated = True
    reasoning = "\n".join(t.strip() for t in thoughts if t.strip())
    return Reasoned(rest.strip(), reasoning, unterminated)


def _split_harmony(text: str) -> Reasoned:
    finals, thoughts = [], []
    for m in _HARMONY_MESSAGE.finditer(text):
        (finals if m.group(1) == "final" else thoughts).append(m.group(2).strip())
    if not finals and not thoughts:  # a final answer without channel headers
        return Reasoned(_HARMONY_TOKENS.sub("", text).strip())
    return Reasoned("\n".join(finals).strip(), "\n".join(thoughts), unterminated=not finals)


def template_family(template: str | None) -> Family:
    """How a chat template switches reasoning: ``thinking`` (Qwen3's ``enable_thinking``),
    ``harmony`` (gpt-oss channels and ``reasoning_effort``) or ``plain``."""
    if not template:
        return "plain"
    if "<|channel|>" in template:
        return "harmony"
    if "enable_thinking" in template:
        return "thinking"
    return "plain"


def template_kwargs(family: Family, thinking: bool | None, reasoning_effort: str | None) -> dict[str, Any]:
    """The extra variables a chat template of `family` takes for these settings (None: the
    template's own default). Thinking cannot be switched off in harmony: it becomes low effort."""
    if family == "thinking" and thinking is not None:
        return {"enable_thinking": thinking}
    if family == "harmony":
        effort = reasoning_effort or ("low" if thinking is False else None)
        return {"reasoning_effort": effort} if effort else {}
    return {}


def resolve_prompt_style(generator: Any, style: PromptStyle) -> Literal["chat", "completion"]:
    """``chat`` or ``completion`` for `generator`: `style` unless it is ``auto``, which is chat for
    servers (they apply their model's template) and for models whose tokenizer has a chat
    template, completion for base models."""
    if style not in ("auto", "chat", "completion"):
        from korag.errors import ConfigError

        raise ConfigError(f"prompt_style must be auto, chat or completion (got {style!r})")
    if style != "auto":
        return style
    has_chat = getattr(generator, "has_chat_template", None)
    if has_chat is not None:
        return "chat" if has_chat else "completion"
    if generator.describe().get("backend") == "http":
        return "chat"
    tokenizer = getattr(generator, "tokenizer", None)
    return "chat" if getattr(tokenizer, "chat_template", None) else "completion"


# -- JSON answers ------------------------------------------------------------------------------
_FENCE = re.compile(r"```(?:json)?\s*(.*?)(?:```|\Z)", re.S)


def extract_json(text: str) -> Any:
    """The first JSON value in `text` (a fenced block, or the first balanced object or array);
    raises ValueError when there is none."""
    if fenced := _FENCE.search(text):
        text = fenced.group(1)
    decoder = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch in "[{":
            try:
                return decoder.raw_decode(text, i)[0]
            except json.JSONDecodeError:
                continue
    raise ValueError("no JSON object in the answer")


def validate_json(value: Any, schema: Mapping[str, Any]) -> str | None:
    """None when `value` follows `schema` (``{}``: any JSON object), else what is wrong."""
    if not schema:
        return None if isinstance(value, dict) else f"expected a JSON object, got {type(value).__name__}"
    try:
        import jsonschema
    except ImportError:  # the essentials by hand: top-level type and required keys
        want = schema.get("type")
        if want == "object" and not isinstance(value, dict):
            return f"expected a JSON object, got {type(value).__name__}"
        if want == "array" and not isinstance(value, list):
            return f"expected a JSON array, got {type(value).__name__}"
        missing = [k for k in schema.get("required", ()) if not isinstance(value, dict) or k not in value]
        return f"missing key(s) {', '.join(missing)}" if missing else None
    try:
        jsonschema.validate(value, dict(schema))
    except jsonschema.ValidationError as exc:
        return exc.message
    return None


def check_json(text: str, schema: Mapping[str, Any]) -> tuple[str, str | None]:
    """(the answer's JSON as compact text, None) when `text` holds valid JSON for `schema`, else
    (`text` unchanged, what is wrong) — callers keep the raw text so lenient parsers still can."""
    try:
        value = extract_json(text)
    except ValueError as exc:
        log.debug("answer is not JSON: %s (%r)", exc, text[:80])
        return text, str(exc)
    problem = validate_json(value, schema)
    if problem:
        log.debug("answer does not follow the JSON schema: %s", problem)
        return text, problem
    return json.dumps(value, ensure_ascii=False), None


def response_format(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The OpenAI ``response_format`` for `schema` (``{}``: ``json_object``)."""
    if not schema:
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": dict(schema), "strict": True}}


def schema_from_response_format(fmt: Any) -> Mapping[str, Any] | None:
    """The JSON schema an OpenAI ``response_format`` asks for (``{}`` for ``json_object``, None
    for text); raises ValueError for anything else."""
    if fmt is None:
        return None
    if not isinstance(fmt, Mapping):
        raise ValueError("'response_format' must be an object")
    kind = fmt.get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return fmt.get("schema") or {}  # llama.cpp's server lets json_object carry a schema
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, Mapping) or not isinstance(spec.get("schema", {}), Mapping):
            raise ValueError("'response_format.json_schema' must be an object with a 'schema' object")
        return spec.get("schema") or {}
    raise ValueError(f"unknown response_format type {kind!r} (text, json_object or json_schema)")


def message_text(content: Any) -> str:
    """A chat message's content as text: a string, or OpenAI's list of parts (text parts joined)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, Mapping) and part.get("type") in ("text", "input_text"):
                parts.append(str(part.get("text", "")))
            elif isinstance(part, str):
                parts.append(part)
            else:
                raise ValueError("only text content parts are supported")
        return "".join(parts)
    if content is None:
        return ""
    raise ValueError(f"message content must be text or a list of text parts, got {type(content).__name__}")


class ThinkFilter:
    """Streamed text with ``<think>…</think>`` blocks held back: pieces inside a block (or that
    could begin a tag) are not emitted. `thinking` starts inside a block (the prompt opened it)."""

    _OPEN, _CLOSE = "<think>", "</think>"

    def __init__(self, thinking: bool = False) -> None:
        self.thinking = thinking
        self.reasoning = ""
        self.unterminated = False
        self._held = ""
        self._after_block = thinking

    def feed(self, piece: str) -> str:
        """The part of `piece` (with what was held) that is certainly answer text."""
        text, out = self._held + piece, []
        self._held = ""
        while text:
            tag = self._CLOSE if self.thinking else self._OPEN
            i = text.find(tag)
            if i >= 0:
                (self._think if self.thinking else out.append)(text[:i])
                text = text[i + len(tag) :]
                self._after_block = self.thinking  # a block just closed
                self.thinking = not self.thinking
                continue
            hold = max((n for n in range(1, len(tag)) if text.endswith(tag[:n])), default=0)
            body, self._held = text[: len(text) - hold], text[len(text) - hold :]
            (self._think if self.thinking else out.append)(body)
            break
        emitted = "".join(out)
        if self._after_block and emitted:  # the answer after a think block starts with blank lines
            emitted = emitted.lstrip()
            self._after_block = not emitted
        return emitted

    def _think(self, text: str) -> None:
        self.reasoning += text

    def finish(self) -> str:
        """What was held back when the stream ended (nothing, if it ended inside a block)."""
        rest, self._held = self._held, ""
        if self.thinking:
            self.unterminated = True
            self.reasoning += rest
            return ""
        return rest
