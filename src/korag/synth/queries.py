"""Document → queries: an LLM with few-shot prompts, and two generators that need no LLM.

- LLM queries (question or keyword style, `synth/prompts.py`), parsed from whatever the model
  wrote: JSON (a list, an object holding a list, truncated JSON), numbered or bulleted lines,
  or one line with a label. Generation appends one JSON line per document to a progress file,
  so an interrupted run continues with the next unfinished document.
- Inverse cloze (ICT): one sentence of the passage is the query; the positive is the passage
  without it, so the pair cannot be solved by string matching alone.
- Keyphrases: the passage's most distinctive nouns by Kiwi (tf × idf over the corpus), joined as
  a keyword query — what users type into a search box.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from korag.data.chunk import split_sentences
from korag.data.schema import Corpus
from korag.data.synthetic import SyntheticQuery, SyntheticSet
from korag.errors import ConfigError, DataError
from korag.synth.generation import GenerationConfig, Generator
from korag.synth.prompts import QueryPrompt
from korag.util.resume import drop_torn_tail, intact_records

_FENCE = re.compile(r"```(?:json)?\s*(.*?)(?:```|$)", re.S)
_LIST_MARK = re.compile(r"^\s*(?:[-*•·]+|\(?\d{1,2}[.)\]]|[Qq]\d*[.:)]|\d{1,2}\s*[:：])\s*")
_LABEL = re.compile(r"^\s*(?:질문|검색어|쿼리|query|question|keywords?)\s*\d*\s*[:：]\s*", re.I)
_QUOTED = re.compile(r'"((?:[^"\\]|\\.){2,})"')
_JSON_KEYS = ("queries", "questions", "query", "question", "검색어", "질문")


def _from_json(obj: Any) -> list[str] | None:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, list):
        out: list[str] = []
        for item in obj:
            got = _from_json(item)
            if got:
                out += got
        return out
    if isinstance(obj, dict):
        for k in _JSON_KEYS:
            if k in obj:
                return _from_json(obj[k])
    return None


def _clean(line: str) -> str:
    line = _LABEL.sub("", _LIST_MARK.sub("", line.strip()))
    line = _LABEL.sub("", line)  # "1. 질문: ..." has both
    return line.strip().strip("\"'“”‘’`").strip().rstrip(",").strip()


def parse_queries(raw: str, *, max_queries: int | None = None) -> list[str]:
    """Queries from an LLM's raw output, in order, without duplicates or empty lines."""
    text = raw.strip()
    fenced = _FENCE.search(text)
    if fenced:
        text = fenced.group(1).strip()
    found: list[str] | None = None
    if text[:1] in "[{":
        try:
            found = _from_json(json.loads(text))
        except json.JSONDecodeError:
            # truncated JSON (the model hit max_tokens): keep the strings that did close
            found = [json.loads(f'"{m}"') for m in _QUOTED.findall(text)]
            found = [s for s in found if s.lower() not in _JSON_KEYS]
    if not found:
        found = text.splitlines()
    out: list[str] = []
    for item in found:
        q = _clean(item)
        if q and q not in out:
            out.append(q)
    return out[:max_queries] if max_queries else out


class _ProgressFile:
    """Append-only JSONL of finished documents; a torn last line (a crash mid-write) is dropped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[str, dict[str, Any]] = {}
        if path.is_file():
            records = intact_records(path)
            for rec, _ in records:
                self.done[rec["doc_id"]] = rec
            drop_torn_tail(path, records[-1][1] if records else 0)

    def append(self, records: Sequence[dict[str, Any]]) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
                self.done[rec["doc_id"]] = rec
            fh.flush()
            os.fsync(fh.fileno())


def generate_llm_queries(
    corpus: Corpus,
    generator: Generator,
    prompt: QueryPrompt,
    config: GenerationConfig,
    *,
    per_doc: int = 1,
    doc_ids: Sequence[str] | None = None,
    progress_file: str | Path | None = None,
    docs_per_call: int = 16,
    show_progress: bool = True,
) -> tuple[SyntheticSet, dict[str, int]]:
    """`per_doc` generations per document (sampled with different seeds when temperature > 0),
    each parsed into queries. Returns the queries and counts (generations, parsed, empty)."""
    if per_doc < 1:
        raise ConfigError(f"per_doc must be at least 1 (got {per_doc})")
    ids = list(doc_ids) if doc_ids is not None else list(corpus.ids)
    unknown = [d for d in ids if d not in corpus]
    if unknown:
        raise DataError(
            None, f"{len(unknown)} document id(s) to generate for are not in the corpus, e.g. {unknown[0]!r}"
        )
    progress = _ProgressFile(Path(progress_file)) if progress_file else None
    done: dict[str, dict[str, Any]] = dict(progress.done) if progress else {}
    todo = [d for d in ids if d not in done]
    bar = tqdm(
        total=len(ids),
        initial=len(ids) - len(todo),
        desc=f"queries ({prompt.style})",
        unit="doc",
        disable=not show_progress,
    )
    for start in range(0, len(todo), docs_per_call):
        chunk = todo[start : start + docs_per_call]
        records = _generate_chunk(corpus, chunk, generator, prompt, config, per_doc)
        if progress:
            progress.append(records)
        done.update((rec["doc_id"], rec) for rec in records)
        bar.update(len(chunk))
    bar.close()
    return _parse_generations(corpus, ids, done, f"llm-{prompt.style}")


def _generate_chunk(
    corpus: Corpus,
    chunk: Sequence[str],
    generator: Generator,
    prompt: QueryPrompt,
    config: GenerationConfig,
    per_doc: int,
) -> list[dict[str, Any]]:
    """One progress record per document of `chunk`: its `per_doc` raw generations and scores
    (chat prompts ask for JSON answers unless the config already names a schema)."""
    prompts = [prompt.build(corpus.get(d).text, corpus.get(d).title) for d in chunk]
    outputs: list[list[tuple[str, float | None]]] = [[] for _ in chunk]
    for j in range(per_doc):
        cfg = replace(
            config,
            stop=config.stop or prompt.stop,
            seed=None if config.seed is None else config.seed + 1000 * j,
            json_schema=config.json_schema if config.json_schema is not None else prompt.json_schema,
        )
        for k, r in enumerate(generator.generate_scored(prompts, cfg)):
            outputs[k].append(r)
    return [
        {"doc_id": d, "outputs": [{"raw": t, "logprob": lp} for t, lp in outs]}
        for d, outs in zip(chunk, outputs, strict=True)
    ]


def _parse_generations(
    corpus: Corpus, ids: Sequence[str], done: dict[str, dict[str, Any]], method: str
) -> tuple[SyntheticSet, dict[str, int]]:
    """Queries parsed from every document's generations (duplicates within a document dropped)."""
    queries: list[SyntheticQuery] = []
    counts = {"generations": 0, "parsed": 0, "empty": 0}
    for d in ids:
        seen: set[str] = set()
        for j, out in enumerate(done[d]["outputs"]):
            counts["generations"] += 1
            parsed = parse_queries(out["raw"], max_queries=3)
            if not parsed:
                counts["empty"] += 1
            for m, q in enumerate(parsed):
                if q in seen:
                    continue
                seen.add(q)
                meta = {"raw": out["raw"]}
                queries.append(SyntheticQuery(f"{method}-{d}-{j}-{m}", q, d, method, logprob=out["logprob"], meta=meta))
                counts["parsed"] += 1
    return SyntheticSet(corpus, queries), counts


def ict_queries(
    corpus: Corpus,
    doc_ids: Sequence[str] | None = None,
    *,
    min_chars: int = 15,
    max_chars: int = 200,
    seed: int = 0,
    splitter: str = "kiwi",
) -> SyntheticSet:
    """One inverse-cloze query per document that has at least two sentences (not counting the
    title): a random sentence of suitable length, the positive being the rest of the passage."""
    rng = random.Random(seed)
    out = []
    for d in doc_ids if doc_ids is not None else corpus.ids:
        text = corpus.get(d).text
        spans = split_sentences(text, splitter)
        if len(spans) < 2:
            continue
        ok = [s for s in spans if min_chars <= len(text[s.start : s.end].strip()) <= max_chars]
        if not ok:
            continue
        s = rng.choice(ok)
        rest = (text[: s.start] + text[s.end :]).strip()
        out.append(SyntheticQuery(f"ict-{d}", text[s.start : s.end].strip(), d, "ict", positive=rest))
    return SyntheticSet(corpus, out)


_NOUN_TAGS = ("NNG", "NNP", "SL", "SH")


def keyphrase_queries(
    corpus: Corpus,
    doc_ids: Sequence[str] | None = None,
    *,
    terms: int = 3,
    seed: int = 0,
) -> SyntheticSet:
    """One keyword query per document: its `terms` highest tf × idf nouns (Kiwi), in text order
    (a multi-word keyword query reads naturally that way)."""
    from kiwipiepy import Kiwi

    if terms < 1:
        raise ConfigError(f"terms must be at least 1 (got {terms})")
    kiwi = Kiwi()
    nouns_per_doc: list[list[str]] = []
    for tokens in kiwi.tokenize(corpus.texts):
        nouns_per_doc.append([t.form for t in tokens if t.tag in _NOUN_TAGS and len(t.form) > 1])
    df = Counter(n for nouns in nouns_per_doc for n in set(nouns))
    n_docs = len(corpus)
    wanted = set(doc_ids) if doc_ids is not None else None
    rng = random.Random(seed)
    out = []
    for d, nouns in zip(corpus.ids, nouns_per_doc, strict=True):
        if (wanted is not None and d not in wanted) or not nouns:
            continue
        tf = Counter(nouns)
        score = {n: c * math.log(1 + n_docs / df[n]) for n, c in tf.items()}
        # ties broken randomly but reproducibly, not by Python's dict order
        best = sorted(score, key=lambda n: (-score[n], rng.random()))[:terms]
        first = {n: nouns.index(n) for n in best}
        out.append(SyntheticQuery(f"keyphrase-{d}", " ".join(sorted(best, key=first.get)), d, "keyphrase"))
    return SyntheticSet(corpus, out)
