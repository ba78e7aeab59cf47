"""The rest of the generation toolbox: pseudo-documents, paraphrases and written hard negatives.

Each tool is the same three steps, so each is resumable and counted the same way:

1. *generate* — one prompt per training query (few-shot completion for base models, chat
   messages asking for JSON for instruction models), raw outputs appended per query to an
   optional progress file (`ProgressLog`), so an interrupted run continues where it stopped;
2. *parse* — whatever the model wrote: JSON (also fenced or cut off by ``max_tokens``), a label
   (``문단:``), numbered lines, a base model running on into the next few-shot example;
3. *filter* — switchable checks in a fixed order, each drop counted (`ToolReport`).

- `generate_pseudo_documents` (HyDE): query → a passage that would answer it. Mainly to augment
  sparse training data with (query, pseudo-document) pairs.
- `generate_paraphrases`: N rewrites per training query; dropped when empty, identical to the
  query or to another rewrite, leaking a known answer, or (optionally) when a retriever no
  longer finds the query's gold passage (round trip).
- `generate_negatives`: a passage on the query's topic that does *not* answer it — dropped when it
  contains a known answer, copies the gold passage, ranks above the gold passage (it probably
  answers after all) or is not similar to the query (too easy to be a hard negative).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from korag.data.schema import Corpus, QASet, RetrievalSet
from korag.errors import ConfigError, DataError
from korag.eval.qa import contains_answer
from korag.retrieval.base import Retriever
from korag.synth.filters import copy_ratio, hangul_share
from korag.synth.generation import ChatMessage, GenerationConfig, Generator, Prompt
from korag.util.resume import drop_torn_tail, intact_records

log = logging.getLogger(__name__)

# -- training queries -------------------------------------------------------------------------


@dataclass(frozen=True)
class QueryItem:
    """A training query, with its known answers and gold passages (either may be empty)."""

    id: str
    text: str
    answers: tuple[str, ...] = ()
    doc_ids: tuple[str, ...] = ()


def query_items(data: QASet | RetrievalSet | Sequence[Any]) -> list[QueryItem]:
    """The queries of a QA set (with answers and gold passages), a retrieval set (gold passages
    from its judgements) or a list of `QAExample`s (a questions file: answers only)."""
    if isinstance(data, QASet):
        return [QueryItem(e.id, e.question, tuple(e.answers), tuple(e.doc_ids)) for e in data.examples]
    if isinstance(data, RetrievalSet):
        return [QueryItem(q.id, q.text, (), tuple(data.qrels.relevant(q.id))) for q in data.queries]
    return [QueryItem(e.id, e.question, tuple(e.answers), tuple(e.doc_ids)) for e in data]


# -- counting ---------------------------------------------------------------------------------


@dataclass
class ToolReport:
    """Outputs in, each filter's drops (in the order the filters ran) and outputs kept."""

    tool: str
    generated: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    kept: int = 0
    notes: dict[str, int] = field(default_factory=dict)

    def drop(self, name: str, n: int = 1) -> None:
        """Count `n` outputs dropped by filter `name`."""
        self.dropped[name] = self.dropped.get(name, 0) + n

    def declare(self, *names: str) -> None:
        """Fix the filters' order (and show filters that dropped nothing)."""
        for name in names:
            self.dropped.setdefault(name, 0)

    def rows(self) -> list[tuple[str, int]]:
        """(step, outputs left) from generated through each filter."""
        left = self.generated
        out = [("generated", left)]
        for name, n in self.dropped.items():
            left -= n
            out.append((f"after {name}", left))
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counts."""
        return {
            "tool": self.tool,
            "generated": self.generated,
            "dropped": dict(self.dropped),
            "kept": self.kept,
            "notes": dict(self.notes),
        }


# -- resumable generation ---------------------------------------------------------------------


class ProgressLog:
    """Append-only JSON Lines of finished items (``{"key", "outputs"}``), headed by the settings
    that produced them: continuing a file written under other settings (another prompt, model or
    sample count) is refused, since its outputs would silently mix with the new ones. A torn last
    line (a crash mid-write) is dropped."""

    def __init__(self, path: str | Path, settings: Mapping[str, Any]) -> None:
        self.path = Path(path)
        self.settings = json.loads(json.dumps(dict(settings), ensure_ascii=False, default=str))
        self.done: dict[str, list[str]] = {}
        if self.path.is_file() and self.path.stat().st_size:
            self._read()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._write_lines([{"settings": self.settings}])

    def _read(self) -> None:
        good = 0
        for n, (rec, end) in enumerate(intact_records(self.path)):
            if n == 0:
                if not isinstance(rec, dict) or rec.get("settings") != self.settings:
                    raise ConfigError(
                        f"{self.path}: this progress file was written with other settings; "
                        "remove it to start over, or give another progress file"
                    )
            elif isinstance(rec, dict) and isinstance(rec.get("key"), str) and isinstance(rec.get("outputs"), list):
                self.done[rec["key"]] = [str(o) for o in rec["outputs"]]
            else:
                break
            good = end
        if good == 0:  # not even the header survived
            self._write_lines([{"settings": self.settings}], mode="w")
        else:
            drop_torn_tail(self.path, good)

    def _write_lines(self, records: Sequence[dict[str, Any]], mode: str = "a") -> None:
        with self.path.open(mode, encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def append(self, outputs: Mapping[str, list[str]]) -> None:
        """Record finished items (durably, before the next batch starts)."""
        self._write_lines([{"key": k, "outputs": v} for k, v in outputs.items()])
        self.done.update(outputs)


def run_prompts(
    prompts: Mapping[str, Prompt],
    generator: Generator,
    config: GenerationConfig,
    *,
    samples: int = 1,
    progress: ProgressLog | None = None,
    batch: int = 16,
    desc: str = "generating",
    show_progress: bool = False,
) -> dict[str, list[str]]:
    """`samples` raw outputs per prompt key (seeds offset per sample, so sampling differs),
    skipping keys the progress log already holds and recording each batch as it finishes."""
    from tqdm.auto import tqdm

    if samples < 1:
        raise ConfigError(f"samples must be at least 1 (got {samples})")
    done: dict[str, list[str]] = dict(progress.done) if progress else {}
    todo = [k for k in prompts if k not in done]
    bar = tqdm(total=len(prompts), initial=len(prompts) - len(todo), desc=desc, unit="item", disable=not show_progress)
    for start in range(0, len(todo), batch):
        keys = todo[start : start + batch]
        outputs: dict[str, list[str]] = {k: [] for k in keys}
        for j in range(samples):
            cfg = replace(config, seed=None if config.seed is None else config.seed + 1000 * j)
            texts = generator.generate([prompts[k] for k in keys], cfg)
            if len(texts) != len(keys):
                raise ConfigError(f"the generator returned {len(texts)} answers for {len(keys)} prompts")
            for k, t in zip(keys, texts, strict=True):
                outputs[k].append(t)
        if progress:
            progress.append(outputs)
        done.update(outputs)
        bar.update(len(keys))
    bar.close()
    return {k: done[k] for k in prompts}


# -- parsing ----------------------------------------------------------------------------------

_FENCE = re.compile(r"```(?:json)?\s*(.*?)(?:```|\Z)", re.S)
# a base model continuing the few-shot pattern starts the next example with one of these
_NEXT_EXAMPLE = re.compile(r"\n\s*(?:질문|제목|답|정답 문단|헷갈리는 문단|바꾼 질문|한국어|영어)\s*[:：]")
_LEAD_LABEL = re.compile(
    r"^\s*(?:문단|문서|가상 문서|헷갈리는 문단|오답 문단|답변|passage|document|text)\s*[:：]\s*", re.I
)
_PASSAGE_KEYS = ("passage", "document", "pseudo_doc", "negative", "text", "문단", "문서")
_LIST_KEYS = ("paraphrases", "queries", "questions", "items", "바꾼 질문", "질문")


def _json_value(text: str) -> Any:
    """The first JSON value in `text`, or None."""
    from korag.synth.chat import extract_json

    try:
        return extract_json(text)
    except ValueError:
        return None


def _unclosed_string(text: str, keys: Sequence[str]) -> str | None:
    """The value of ``{"key": "…`` cut off before its closing quote (the model hit max_tokens)."""
    for key in keys:
        m = re.search(rf'"{re.escape(key)}"\s*:\s*"((?:[^"\\]|\\.)*)', text)
        if m:
            raw = m.group(1)
            try:
                return json.loads(f'"{raw}"')
            except json.JSONDecodeError:
                return raw.replace('\\"', '"').replace("\\n", "\n")
    return None


def parse_passage(raw: str) -> str:
    """A passage from an LLM's raw output ('' when there is none): the ``passage`` (or
    ``document``, ``text``, …) of a JSON answer, also fenced or truncated; otherwise the text
    after a leading label (``문단:``), cut where a base model starts the next few-shot example,
    whitespace collapsed."""
    text = (raw or "").strip()
    fenced = _FENCE.search(text)
    if fenced:
        text = fenced.group(1).strip()
    if text[:1] in "{[":
        value = _json_value(text)
        if isinstance(value, dict):
            found = next((value[k] for k in _PASSAGE_KEYS if isinstance(value.get(k), str)), None)
            if found is None:
                strings = [v for v in value.values() if isinstance(v, str)]
                found = max(strings, key=len) if strings else ""
            return " ".join(found.split())
        if isinstance(value, list):
            return " ".join(" ".join(v for v in value if isinstance(v, str)).split())
        cut = _unclosed_string(text, _PASSAGE_KEYS)
        if cut is not None:
            return " ".join(cut.split())
        return ""  # JSON that never got past its keys
    text = _NEXT_EXAMPLE.split(text, maxsplit=1)[0]
    text = _LEAD_LABEL.sub("", text.strip())
    return " ".join(text.strip().strip("\"'“”`").split())


def parse_list(raw: str, *, max_items: int | None = None, unique: bool = True) -> list[str]:
    """Short texts (paraphrases, queries) from an LLM's raw output, in order (without duplicates
    unless `unique` is off, for callers that count them):
    a JSON list or object holding one (``paraphrases``, ``queries``, …), truncated JSON, numbered
    or bulleted lines, or labelled lines."""
    from korag.synth.queries import parse_queries

    text = (raw or "").strip()
    fenced = _FENCE.search(text)
    body = fenced.group(1).strip() if fenced else text
    found: list[str] | None = None
    value = _json_value(body) if body[:1] in "{[" else None
    if isinstance(value, list):
        found = [v for v in value if isinstance(v, str)]
    elif isinstance(value, dict):
        for k in _LIST_KEYS:
            v = value.get(k)
            if isinstance(v, list):
                found = [s for s in v if isinstance(s, str)]
                break
            if isinstance(v, str):
                found = [v]
                break
    if found is None:
        # parse_queries handles lines, numbering, labels and JSON cut off mid-list; our own keys
        # are not query text
        found = [q for q in parse_queries(_NEXT_EXAMPLE.split(body, maxsplit=1)[0]) if q.lower() not in _LIST_KEYS]
    out: list[str] = []
    for item in found:
        q = " ".join(item.split()).strip("\"'“”`")
        q = re.sub(r"^\s*(?:바꾼 질문|질문|paraphrase)\s*\d*\s*[:：]\s*", "", q, flags=re.I).strip()
        if q and (q not in out or not unique):
            out.append(q)
    return out[:max_items] if max_items else out


# -- prompts ----------------------------------------------------------------------------------

# original examples written for korag (one topic each, reused across the tools)
_SHOTS = (
    {
        "question": "장영실이 만드는 데 참여한 물시계의 이름은?",
        "answer": "자격루",
        "passage": "장영실은 조선 세종 때의 과학자이자 발명가이다. 그는 물시계인 자격루와 천체 관측 기구인 "
        "혼천의를 만드는 데 참여하였다.",
        "paraphrase": "세종 때 장영실이 제작에 참여한 물시계는 무엇인가?",
        "negative": "장영실은 동래현의 관노 출신이었으나 재능을 인정받아 궁중 기술자가 되었다. 세종은 그를 "
        "명나라에 보내 천문 기구를 익히게 하였다.",
    },
    {
        "question": "식물의 광합성에서 빛을 흡수하는 색소는?",
        "answer": "엽록소",
        "passage": "광합성은 식물이 빛 에너지로 이산화 탄소와 물에서 포도당을 만드는 과정이다. 잎의 엽록체에 "
        "있는 엽록소가 빛을 흡수하며, 부산물로 산소가 나온다.",
        "paraphrase": "광합성 때 빛을 받아들이는 식물의 색소 이름은?",
        "negative": "광합성은 주로 잎에서 일어나며, 이 과정에서 만들어진 포도당은 식물의 성장에 쓰인다. "
        "광합성의 부산물인 산소는 대기 중으로 방출된다.",
    },
)

_SCHEMAS = {
    "hyde": {
        "type": "object",
        "properties": {"passage": {"type": "string", "minLength": 1}},
        "required": ["passage"],
    },
    "paraphrase": {
        "type": "object",
        "properties": {"paraphrases": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1}},
        "required": ["paraphrases"],
    },
    "negative": {
        "type": "object",
        "properties": {"passage": {"type": "string", "minLength": 1}},
        "required": ["passage"],
    },
}


def _cut(text: str, max_chars: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= max_chars else text[:max_chars].rsplit(" ", 1)[0]


@dataclass(frozen=True)
class ToolPrompt:
    """The prompt of one tool (``hyde``, ``paraphrase`` or ``negative``): a few-shot completion,
    or with `chat` chat messages whose answer is JSON (`json_schema`)."""

    tool: str
    chat: bool = False
    json_output: bool = True
    max_chars: int = 400
    paraphrases: int = 3  # chat prompts ask for this many at once

    def __post_init__(self) -> None:
        if self.tool not in _SCHEMAS:
            raise ConfigError(f"unknown tool {self.tool!r}; choose from {', '.join(_SCHEMAS)}")

    @property
    def stop(self) -> tuple[str, ...]:
        """Completions end with the line (the next line would start another example)."""
        return () if self.chat else ("\n",)

    @property
    def json_schema(self) -> dict[str, Any] | None:
        """What a chat answer must follow (None for completions)."""
        return _SCHEMAS[self.tool] if self.chat and self.json_output else None

    def build(self, item: QueryItem, gold: str = "") -> Prompt:
        """The prompt for one query (`gold`: its gold passage, for negatives)."""
        return self._messages(item, gold) if self.chat else self._completion(item, gold)

    def _completion(self, item: QueryItem, gold: str) -> str:
        if self.tool == "hyde":
            head = "다음은 질문과, 그 질문에 답하는 백과사전 문단이다."
            shots = [f"질문: {s['question']}\n문단: {s['passage']}" for s in _SHOTS]
            tail = f"질문: {item.text}\n문단:"
        elif self.tool == "paraphrase":
            head = "다음은 질문과, 뜻은 같지만 다른 말로 바꾼 질문이다."
            shots = [f"질문: {s['question']}\n바꾼 질문: {s['paraphrase']}" for s in _SHOTS]
            tail = f"질문: {item.text}\n바꾼 질문:"
        else:
            head = (
                "다음은 질문, 그 답이 있는 정답 문단, 그리고 같은 주제를 다루지만 질문의 답은 없는 헷갈리는 문단이다."
            )
            shots = [
                f"질문: {s['question']}\n답: {s['answer']}\n정답 문단: {s['passage']}\n헷갈리는 문단: {s['negative']}"
                for s in _SHOTS
            ]
            answer = ", ".join(item.answers) if item.answers else "(정답 문단 참고)"
            tail = f"질문: {item.text}\n답: {answer}\n정답 문단: {_cut(gold, self.max_chars)}\n헷갈리는 문단:"
        return "\n\n".join([head, *shots, tail])

    def _messages(self, item: QueryItem, gold: str) -> list[ChatMessage]:
        fmt = self.json_output
        if self.tool == "hyde":
            rule = "질문을 읽고, 그 질문에 답하는 백과사전 문단을 한국어로 하나 쓴다."
            rule += ' 답은 JSON 객체 하나로만 한다: {"passage": "..."}' if fmt else " 문단만 쓴다."
            user = f"질문: {item.text}"
        elif self.tool == "paraphrase":
            n = self.paraphrases
            rule = f"질문을 읽고, 뜻은 같지만 다른 말로 바꾼 한국어 질문을 {n}개 쓴다. 답을 질문에 넣지 않는다."
            rule += ' 답은 JSON 객체 하나로만 한다: {"paraphrases": ["..."]}' if fmt else " 한 줄에 하나씩 쓴다."
            user = f"질문: {item.text}"
        else:
            rule = (
                "질문과 정답 문단을 읽고, 같은 주제와 낱말을 쓰지만 질문의 답은 담지 않은 헷갈리는 문단을 "
                "한국어로 하나 쓴다. 답이 되는 말은 절대 쓰지 않는다."
            )
            rule += ' 답은 JSON 객체 하나로만 한다: {"passage": "..."}' if fmt else " 문단만 쓴다."
            answer = ", ".join(item.answers) if item.answers else "(정답 문단 참고)"
            user = f"질문: {item.text}\n답: {answer}\n정답 문단: {_cut(gold, self.max_chars)}"
        return [{"role": "system", "content": rule}, {"role": "user", "content": user}]

    def to_dict(self) -> dict[str, Any]:
        """Settings and the prompt text's identity (a progress file's header)."""
        probe = self.build(QueryItem("{id}", "{query}", ("{answer}",)), "{gold}")
        return {
            "tool": self.tool,
            "chat": self.chat,
            "json_output": self.json_output,
            "max_chars": self.max_chars,
            "paraphrases": self.paraphrases,
            "template": json.dumps(probe, ensure_ascii=False),
        }


def _config_for(prompt: ToolPrompt, config: GenerationConfig) -> GenerationConfig:
    return replace(
        config,
        stop=config.stop or prompt.stop,
        json_schema=config.json_schema if config.json_schema is not None else prompt.json_schema,
    )


def _progress(path: str | Path | None, prompt: ToolPrompt, generator: Generator, cfg: GenerationConfig, samples: int):
    if path is None:
        return None
    return ProgressLog(
        path, {"prompt": prompt.to_dict(), "model": generator.describe(), "config": cfg.to_dict(), "samples": samples}
    )


def _norm(text: str) -> str:
    return re.sub(r"[\W_]+", "", text.lower())


# -- HyDE pseudo-documents ----------------------------------------------------------------------


@dataclass
class FilterSettings:
    """Thresholds shared by the tools' filters."""

    min_chars: int = 4
    max_chars: int = 2000
    min_hangul: float = 0.3
    max_copy: float = 0.8
    roundtrip_k: int = 10

    def __post_init__(self) -> None:
        if self.min_chars < 1 or self.max_chars < self.min_chars:
            raise ConfigError(f"need 1 ≤ min_chars ≤ max_chars (got {self.min_chars}, {self.max_chars})")
        if not 0 <= self.min_hangul <= 1 or not 0 < self.max_copy <= 1:
            raise ConfigError("min_hangul must be in [0, 1] and max_copy in (0, 1]")
        if self.roundtrip_k < 1:
            raise ConfigError(f"roundtrip_k must be at least 1 (got {self.roundtrip_k})")


def generate_pseudo_documents(
    items: Sequence[QueryItem],
    generator: Generator,
    config: GenerationConfig,
    *,
    prompt: ToolPrompt | None = None,
    samples: int = 1,
    filters: FilterSettings | None = None,
    progress_file: str | Path | None = None,
    show_progress: bool = False,
) -> tuple[list[dict[str, Any]], ToolReport]:
    """HyDE: `samples` pseudo-documents per query, a passage the LLM imagines answering it.

    Filters, in order: ``empty`` (nothing parseable), ``length`` (outside [min_chars,
    max_chars]), ``echo`` (only repeats the query), ``language`` (too little Hangul),
    ``duplicate`` (same text twice for one query). Queries with known answers also count how
    many pseudo-documents contain one (``notes.with_answer``), a rough sign of the LLM's
    knowledge — never a filter: a passage of the right shape helps sparse training even when
    its facts are wrong. Records: ``{"query_id", "query", "pseudo_doc", "answers", "doc_ids"}``."""
    prompt = prompt or ToolPrompt("hyde")
    f = filters or FilterSettings(min_chars=20)
    cfg = _config_for(prompt, config)
    prompts = {it.id: prompt.build(it) for it in items}
    raw = run_prompts(
        prompts,
        generator,
        cfg,
        samples=samples,
        progress=_progress(progress_file, prompt, generator, cfg, samples),
        desc="pseudo-documents",
        show_progress=show_progress,
    )
    report = ToolReport("hyde")
    report.declare("empty", "length", "echo", "language", "duplicate")
    out: list[dict[str, Any]] = []
    with_answer = 0
    for it in items:
        seen: set[str] = set()
        for output in raw[it.id]:
            report.generated += 1
            doc = parse_passage(output)
            if not doc:
                report.drop("empty")
            elif not f.min_chars <= len(doc) <= f.max_chars:
                report.drop("length")
            elif _norm(doc) == _norm(it.text) or (len(_norm(doc)) and _norm(doc) in _norm(it.text)):
                report.drop("echo")
            elif hangul_share(doc) < f.min_hangul:
                report.drop("language")
            elif _norm(doc) in seen:
                report.drop("duplicate")
            else:
                seen.add(_norm(doc))
                with_answer += bool(it.answers and contains_answer(doc, it.answers))
                out.append(
                    {
                        "query_id": it.id,
                        "query": it.text,
                        "pseudo_doc": doc,
                        "answers": list(it.answers),
                        "doc_ids": list(it.doc_ids),
                    }
                )
    report.kept = len(out)
    if any(it.answers for it in items):
        report.notes["with_answer"] = with_answer
    return out, report


# -- paraphrases ---------------------------------------------------------------------------------


def generate_paraphrases(
    items: Sequence[QueryItem],
    generator: Generator,
    config: GenerationConfig,
    *,
    n: int = 3,
    prompt: ToolPrompt | None = None,
    filters: FilterSettings | None = None,
    retriever: Retriever | None = None,
    progress_file: str | Path | None = None,
    show_progress: bool = False,
) -> tuple[list[dict[str, Any]], ToolReport]:
    """Up to `n` paraphrases per query (a completion prompt is sampled `n` times — give a
    temperature above 0; a chat prompt asks for `n` at once).

    Filters, in order: ``empty``, ``length``, ``identical`` (the query itself, punctuation and
    case aside), ``duplicate`` (another paraphrase of the same query), ``language``, ``answer``
    (contains a known answer: a query that holds its answer teaches string matching), and with
    a `retriever` indexed on the corpus ``roundtrip`` (none of the query's gold passages in the
    top ``roundtrip_k``; queries without gold passages pass). Records: ``{"id", "question",
    "answers", "source_id", "doc_ids"}`` — a korag questions file when answers are known."""
    if n < 1:
        raise ConfigError(f"paraphrases per query must be at least 1 (got {n})")
    prompt = prompt or ToolPrompt("paraphrase", paraphrases=n)
    if prompt.chat and prompt.paraphrases != n:
        prompt = replace(prompt, paraphrases=n)
    f = filters or FilterSettings(max_chars=200)
    cfg = _config_for(prompt, config)
    samples = 1 if prompt.chat else n
    if samples > 1 and cfg.temperature == 0:
        log.warning("greedy decoding writes the same paraphrase %d times: give a temperature above 0", samples)
    raw = run_prompts(
        {it.id: prompt.build(it) for it in items},
        generator,
        cfg,
        samples=samples,
        progress=_progress(progress_file, prompt, generator, cfg, samples),
        desc="paraphrases",
        show_progress=show_progress,
    )
    report = ToolReport("paraphrase")
    names = ["empty", "length", "identical", "duplicate", "language", "answer"]
    report.declare(*(names + (["roundtrip"] if retriever is not None else [])))
    candidates: list[tuple[QueryItem, str]] = []
    for it in items:
        texts = [t for output in raw[it.id] for t in (parse_list(output, max_items=n, unique=False) or [""])][
            : max(n, samples)
        ]
        seen: set[str] = set()
        for t in texts:
            report.generated += 1
            problem = _paraphrase_problem(it, t, seen, f)
            if problem:
                report.drop(problem)
            else:
                seen.add(_norm(t))
                candidates.append((it, t))
    if retriever is not None and candidates:
        candidates = _roundtrip(candidates, retriever, f.roundtrip_k, report)
    out: list[dict[str, Any]] = []
    counter: dict[str, int] = {}
    for it, t in candidates:
        j = counter[it.id] = counter.get(it.id, 0) + 1
        out.append(
            {
                "id": f"{it.id}-p{j}",
                "question": t,
                "answers": list(it.answers),
                "source_id": it.id,
                "doc_ids": list(it.doc_ids),
            }
        )
    report.kept = len(out)
    return out, report


def _paraphrase_problem(it: QueryItem, t: str, seen: set[str], f: FilterSettings) -> str | None:
    """The first paraphrase filter `t` fails, or None."""
    key = _norm(t)
    if not t:
        return "empty"
    if not f.min_chars <= len(t) <= f.max_chars:
        return "length"
    if key == _norm(it.text):
        return "identical"
    if key in seen:
        return "duplicate"
    if hangul_share(t) < f.min_hangul:
        return "language"
    if it.answers and contains_answer(t, it.answers):
        return "answer"
    return None


def _roundtrip(
    candidates: list[tuple[QueryItem, str]], retriever: Retriever, k: int, report: ToolReport
) -> list[tuple[QueryItem, str]]:
    """Candidates whose query's gold passages include one of the retriever's top `k` for them
    (candidates of queries without gold passages pass)."""
    judged = [i for i, (it, _) in enumerate(candidates) if it.doc_ids]
    if not judged:
        return candidates
    ranking = retriever.search([candidates[i][1] for i in judged], k=k)
    found = [{d for d, _ in hits} for _, hits in ranking.items()]
    lost = {i for i, hits in zip(judged, found, strict=True) if not set(candidates[i][0].doc_ids) & hits}
    report.drop("roundtrip", len(lost))
    return [c for i, c in enumerate(candidates) if i not in lost]


# -- written hard negatives ----------------------------------------------------------------------

NEGATIVE_ID = "llm-negative:{query}:{n}"


def generate_negatives(
    items: Sequence[QueryItem],
    corpus: Corpus,
    generator: Generator,
    config: GenerationConfig,
    *,
    samples: int = 1,
    prompt: ToolPrompt | None = None,
    filters: FilterSettings | None = None,
    retriever: Retriever | Callable[[], Retriever] | None = None,
    with_title: bool = True,
    progress_file: str | Path | None = None,
    show_progress: bool = False,
) -> tuple[list[dict[str, Any]], ToolReport]:
    """`samples` LLM-written hard negatives per query that has a gold passage in `corpus`: a
    passage that looks relevant but does not answer.

    Filters, in order: ``empty``, ``length``, ``copy`` (mostly a verbatim copy of the gold
    passage: it would answer), ``answer`` (contains a known answer), and with a `retriever` (a
    fresh, unindexed one or a factory; it is indexed on the corpus plus every candidate
    negative) ``above_gold`` (ranks above the gold passage for the query: likely answers after
    all) and ``not_similar`` (not in the top ``roundtrip_k`` for the query: too easy to teach
    anything). Records: ``{"query_id", "query", "positive_id", "positive", "negatives",
    "negative_ids"}`` — one per query with at least one negative kept."""
    prompt = prompt or ToolPrompt("negative")
    f = filters or FilterSettings(min_chars=20)
    cfg = _config_for(prompt, config)
    usable = [it for it in items if any(d in corpus for d in it.doc_ids)]
    if not usable:
        raise DataError(None, "no query has a gold passage in the corpus: written negatives need one to imitate")
    gold_of = {it.id: next(d for d in it.doc_ids if d in corpus) for it in usable}
    gold_text = {it.id: corpus.get(gold_of[it.id]).text for it in usable}
    raw = run_prompts(
        {it.id: prompt.build(it, gold_text[it.id]) for it in usable},
        generator,
        cfg,
        samples=samples,
        progress=_progress(progress_file, prompt, generator, cfg, samples),
        desc="hard negatives",
        show_progress=show_progress,
    )
    report = ToolReport("negative")
    report.declare("empty", "length", "copy", "answer")
    if retriever is not None:
        report.declare("above_gold", "not_similar")
    report.notes["queries_without_gold"] = len(items) - len(usable)
    candidates: list[tuple[QueryItem, str]] = []
    for it in usable:
        seen: set[str] = set()
        for output in raw[it.id]:
            report.generated += 1
            neg = parse_passage(output)
            problem = _negative_problem(it, neg, gold_text[it.id], seen, f)
            if problem:
                report.drop(problem)
            else:
                seen.add(_norm(neg))
                candidates.append((it, neg))
    if retriever is not None and candidates:
        candidates = _rank_check(candidates, corpus, gold_of, retriever, f.roundtrip_k, with_title, report)
    out = _negative_records(usable, candidates, corpus, gold_of, with_title)
    report.kept = sum(len(r["negatives"]) for r in out)
    report.notes["queries_kept"] = len(out)
    return out, report


def _negative_records(
    usable: Sequence[QueryItem],
    candidates: Sequence[tuple[QueryItem, str]],
    corpus: Corpus,
    gold_of: dict[str, str],
    with_title: bool,
) -> list[dict[str, Any]]:
    """One training record per query with at least one kept negative, in the queries' order."""
    titles = dict(zip(corpus.ids, corpus.titles, strict=True))
    grouped: dict[str, list[str]] = {}
    for it, neg in candidates:
        grouped.setdefault(it.id, []).append(neg)
    out = []
    for it in usable:
        negs = grouped.get(it.id)
        if not negs:
            continue
        d = gold_of[it.id]
        title = titles[d]
        out.append(
            {
                "query_id": it.id,
                "query": it.text,
                "positive_id": d,
                "positive": corpus.get(d).content(with_title),
                # a written negative takes its gold passage's title: it imitates that article
                "negatives": [f"{title} {n}" if with_title and title else n for n in negs],
                "negative_ids": [NEGATIVE_ID.format(query=it.id, n=j + 1) for j in range(len(negs))],
            }
        )
    return out


def _negative_problem(it: QueryItem, neg: str, gold: str, seen: set[str], f: FilterSettings) -> str | None:
    """The first written-negative filter `neg` fails, or None (a repeat counts as empty)."""
    if not neg or _norm(neg) in seen:
        return "empty"
    if not f.min_chars <= len(neg) <= f.max_chars:
        return "length"
    # long stretches of the gold passage: a copy keeps the facts that answer
    if copy_ratio(neg, gold) >= f.max_copy and len(neg) >= 0.5 * len(gold):
        return "copy"
    if it.answers and contains_answer(neg, it.answers):
        return "answer"
    return None


def _rank_check(
    candidates: list[tuple[QueryItem, str]],
    corpus: Corpus,
    gold_of: Mapping[str, str],
    retriever: Retriever | Callable[[], Retriever],
    k: int,
    with_title: bool,
    report: ToolReport,
) -> list[tuple[QueryItem, str]]:
    """Keep negatives the retriever ranks below their gold passage but within its top `k`."""
    r = retriever if isinstance(retriever, Retriever) else retriever()
    ids = [f"\x00cand{i}" for i in range(len(candidates))]
    titles = dict(zip(corpus.ids, corpus.titles, strict=True))
    extra = Corpus(
        ids,
        [neg for _, neg in candidates],
        [titles[gold_of[it.id]] if with_title else "" for it, _ in candidates],
    )
    r.index(corpus.concat(extra))  # type: ignore[union-attr]
    queries = list(dict.fromkeys(it.id for it, _ in candidates))
    text_of = {it.id: it.text for it, _ in candidates}
    # deep enough to see the gold passage below a crowd of other candidates
    depth = k + len(candidates)
    ranking = r.search([text_of[q] for q in queries], k=depth)  # type: ignore[union-attr]
    rank_of = {
        q: {d: n for n, (d, _) in enumerate(hits)} for q, (_, hits) in zip(queries, ranking.items(), strict=True)
    }
    kept = []
    for cid, (it, neg) in zip(ids, candidates, strict=True):
        ranks = rank_of[it.id]
        gold_rank = ranks.get(gold_of[it.id], depth)
        own = ranks.get(cid)
        if own is not None and own < gold_rank:
            report.drop("above_gold")
        elif own is None or own >= k + 1:  # +1: the gold passage itself takes a place above it
            report.drop("not_similar")
        else:
            kept.append((it, neg))
    return kept


def write_jsonl(path: str | Path, records: Sequence[Mapping[str, Any]]) -> int:
    """Records as JSON Lines, atomically; returns how many."""
    from korag import atomic

    lines = [json.dumps(dict(r), ensure_ascii=False) for r in records]
    atomic.write_text(path, "\n".join(lines) + ("\n" if lines else ""))
    return len(lines)


def report_path(output: str | Path) -> Path:
    """Where a tool's counts go beside its output: ``X.jsonl`` → ``X.report.json``."""
    p = Path(output)
    return p.with_name(f"{p.stem}.report.json")
