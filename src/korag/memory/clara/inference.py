"""Answering with a trained CLaRa model, its baselines, and the QA evaluation that compares them.

`ClaraReader` caches compressed documents (in memory, and on disk when given a directory: a
document is compressed once per model, whatever the questions), answers from given documents,
or chooses them itself among candidates with the query reasoner. The same base LM, with its
adapters switched off, gives the two baselines every CLaRa number needs beside it: closed-book
(the question alone) and full-text RAG (the same documents as plain text).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from korag.eval.comparison import System, SystemRow
from korag.eval.qa import evaluate_answers
from korag.memory.batches import collect_batches
from korag.memory.clara.data import ClaraExample
from korag.memory.clara.model import ClaraModel
from korag.memory.text_rag import TextReader, text_prompt


class ClaraReader:
    """Compress, retrieve among candidates and answer, timing each part."""

    def __init__(
        self, model: ClaraModel, *, identity: str = "", cache_dir: str | Path | None = None, batch_size: int = 8
    ):
        self.model = model
        self.identity = identity
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.batch_size = batch_size
        self._cache: dict[str, torch.Tensor] = {}
        self.timings = {"compress_seconds": 0.0, "retrieve_seconds": 0.0, "generate_seconds": 0.0}
        self.model.lm.eval()
        self._text = TextReader(model, max_answer_tokens=model.config.max_answer_tokens)

    def _key(self, text: str) -> str:
        cfg = self.model.config
        raw = f"{self.identity}|{cfg.doc_max_length}|{cfg.compression_rate}|{text}"
        return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:32]

    @torch.no_grad()
    def compress(self, texts: Sequence[str]) -> torch.Tensor:
        """Compressed states of `texts` (texts × n_mem × hidden), from the cache where possible."""
        t0 = time.perf_counter()
        keys = [self._key(t) for t in texts]
        todo = []
        for k in keys:
            if k in self._cache or k in todo:
                continue
            path = self.cache_dir / f"{k}.npy" if self.cache_dir else None
            if path is not None and path.is_file():
                self._cache[k] = torch.from_numpy(np.load(path))
            else:
                todo.append(k)
        by_key = dict(zip(keys, texts, strict=True))
        for i in range(0, len(todo), self.batch_size):
            chunk = todo[i : i + self.batch_size]
            states, _ = self.model.compress([by_key[k] for k in chunk])
            for k, s in zip(chunk, states.float().cpu(), strict=True):
                self._cache[k] = s
                if self.cache_dir is not None:
                    from korag import atomic

                    # a file object: np.save would append ".npy" to a temporary name
                    with atomic.atomic_path(self.cache_dir / f"{k}.npy") as tmp, tmp.open("wb") as fh:
                        np.save(fh, s.numpy())
        self.timings["compress_seconds"] += time.perf_counter() - t0
        return torch.stack([self._cache[k] for k in keys]).to(self.model.device)

    def answer(self, questions: Sequence[str], docs: Sequence[Sequence[str]]) -> list[str]:
        """Answers from each question's documents (every question the same number)."""
        k = len(docs[0])
        memory = self.compress([d for ds in docs for d in ds])
        t0 = time.perf_counter()
        out = self.model.answer(list(questions), memory, k)
        self.timings["generate_seconds"] += time.perf_counter() - t0
        return out

    @torch.no_grad()
    def choose(self, questions: Sequence[str], candidates: Sequence[Sequence[str]], k: int) -> list[list[int]]:
        """The query reasoner's top-k candidate indices per question (cosine over flattened states)."""
        n = len(candidates[0])
        docs = self.compress([d for ds in candidates for d in ds]).reshape(len(questions), n, -1)
        t0 = time.perf_counter()
        q = self.model.encode_queries(list(questions))
        scores = torch.nn.functional.normalize(q.float(), dim=-1).unsqueeze(1) @ torch.nn.functional.normalize(
            docs.float(), dim=-1
        ).transpose(1, 2)
        idx = torch.topk(scores.squeeze(1), min(k, n), dim=-1).indices
        self.timings["retrieve_seconds"] += time.perf_counter() - t0
        return idx.tolist()

    def retrieve_and_answer(self, questions: Sequence[str], candidates: Sequence[Sequence[str]], k: int):
        """(answers, chosen indices): the model picks k of each question's candidates and answers."""
        chosen = self.choose(questions, candidates, k)
        docs = [[cands[i] for i in idx] for cands, idx in zip(candidates, chosen, strict=True)]
        return self.answer(questions, docs), chosen

    def baseline(self, questions: Sequence[str], docs: Sequence[Sequence[str]] | None = None) -> list[str]:
        """The base LM without adapters: closed-book (no `docs`) or full-text RAG (`docs` as text)."""
        before = self._text.generate_seconds
        answers = self._text.answer(questions, docs)
        self.timings["generate_seconds"] += self._text.generate_seconds - before
        return answers

    def prompt_tokens(self, question: str, docs: Sequence[str]) -> dict[str, int]:
        """Prompt length with compressed documents vs with their text, and the documents' tokens."""
        tok = self.model.tokenizer
        cap = self.model.config.doc_max_length
        doc_tokens = [min(cap, len(tok(d, add_special_tokens=False)["input_ids"])) for d in docs]
        compressed = len(tok(self.model.qa_prompt(question, len(docs)), add_special_tokens=False)["input_ids"])
        text = text_prompt(question, docs)
        return {
            "clara": compressed,
            "full_text": len(tok(text, add_special_tokens=False)["input_ids"]),
            "document_tokens": sum(doc_tokens),
        }


def evaluate_clara(
    reader: ClaraReader,
    examples: Sequence[ClaraExample],
    *,
    k: int | None = None,
    baselines: Sequence[str] = ("closed-book", "full-text"),
    batch_size: int = 8,
    show_progress: bool = False,
) -> list[SystemRow]:
    """Rows for one table: CLaRa (given documents; with the query reasoner choosing k of the
    candidates when records carry `pos_index`) and the baselines, each with EM/F1/cover-EM,
    retrieval recall@1/3/5, compression (nominal and measured), prompt tokens and latency."""
    k = k or reader.model.config.top_k
    golds = {f"q{i}": list(e.answers) for i, e in enumerate(examples)}
    questions = [e.questions[0] for e in examples]
    given = [list(e.docs[:k]) for e in examples]
    rows: list[SystemRow] = []

    def run(system: System, name: str, fn) -> dict[str, Any]:
        before = dict(reader.timings)
        t0 = time.perf_counter()
        preds, chosen = collect_batches(
            len(examples), fn, batch_size=batch_size, desc=name, show_progress=show_progress
        )
        row = dict(evaluate_answers({f"q{i}": p for i, p in enumerate(preds)}, golds).metrics)
        row.update({t: reader.timings[t] - before[t] for t in reader.timings})
        row.update(seconds=time.perf_counter() - t0, predictions=preds)
        rows.append(SystemRow(system, name, row, {"k": k}))
        if chosen is not None and any(e.positives for e in examples):
            row.update(_recalls(chosen, examples, k))
        return row

    everything = [list(range(k))] * len(examples)
    run(System.CLARA, "clara (given documents)", lambda sl: (reader.answer(questions[sl], given[sl]), everything[sl]))
    if any(e.positives for e in examples) and len(examples[0].docs) >= k:
        run(
            System.CLARA_REASONER,
            "clara (query reasoner picks)",
            lambda sl: reader.retrieve_and_answer(questions[sl], [list(e.docs) for e in examples[sl]], k),
        )
    if "closed-book" in baselines:
        run(System.CLOSED_BOOK, "closed-book", lambda sl: (reader.baseline(questions[sl]), None))
    if "full-text" in baselines:
        run(System.FULL_TEXT, "full-text RAG", lambda sl: (reader.baseline(questions[sl], given[sl]), None))
    summary = _compression(reader, questions, given, k)
    for row in rows:
        row.metrics.update(summary)
    return rows


def _recalls(chosen: Sequence[Sequence[int]], examples: Sequence[ClaraExample], k: int) -> dict[str, float]:
    """recall@1/3/5 (up to k) of the documents read: a question none of whose candidates is gold
    counts as a miss."""
    out = {}
    for at in (1, 3, 5):
        if at <= k:
            hits = sum(bool(set(c[:at]) & set(e.positives)) for c, e in zip(chosen, examples, strict=True))
            out[f"recall@{at}"] = hits / len(examples)
    return out


def _compression(reader: ClaraReader, questions: Sequence[str], given: Sequence[Sequence[str]], k: int) -> dict:
    """Nominal and measured compression, and prompt tokens with and without compression."""
    cfg = reader.model.config
    sizes = [reader.prompt_tokens(q, d) for q, d in zip(questions, given, strict=True)]
    mean = {key: float(np.mean([s[key] for s in sizes])) for key in sizes[0]}
    return {
        "compression_nominal": cfg.compression_rate,
        "compression_measured": mean["document_tokens"] / (k * cfg.n_mem),
        "prompt_tokens_clara": mean["clara"],
        "prompt_tokens_full_text": mean["full_text"],
        "prompt_tokens_saved": 1 - mean["clara"] / mean["full_text"],
    }
