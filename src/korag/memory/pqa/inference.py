"""Answering with a trained parametric-QA model: select documents' memories for a question
(one hop, or iteratively: select → intermediate answer → re-select), then generate from them.
Selection and generation are timed apart."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal

import torch

from korag.memory.pqa.model import ParametricQA
from korag.memory.pqa.query import QueryEmbeddings, bridge_query
from korag.memory.pqa.selectors import Selector, exclude

Intermediate = Literal["answer", "document"]


class PQAReader:
    """A written and read-trained model with its selector and query embeddings."""

    def __init__(self, model: ParametricQA, selector: Selector | None, queries: QueryEmbeddings | None) -> None:
        self.model = model
        self.selector = selector
        self.queries = queries
        self.timings = {"select_seconds": 0.0, "generate_seconds": 0.0}
        model.lm.eval()

    @torch.no_grad()
    def scores(self, questions: Sequence[str], chosen: Sequence[Sequence[int]] | None = None) -> torch.Tensor:
        """Selector scores (questions × documents), already chosen documents at −inf."""
        if self.selector is None or self.queries is None:
            raise ValueError("this model has no selector: train its read phase first")
        t0 = time.perf_counter()
        s = self.selector.scores(self.queries.get(list(questions)), self.model.memory())
        if chosen is not None:
            s = exclude(s, chosen)
        self.timings["select_seconds"] += time.perf_counter() - t0
        return s

    def select(self, questions: Sequence[str], k: int) -> list[list[int]]:
        """Top-k pool rows per question."""
        s = self.scores(questions)
        return torch.topk(s, min(k, s.shape[1]), dim=-1).indices.tolist()

    def answer_from(self, questions: Sequence[str], rows: Sequence[Sequence[int]], *, kind="answer") -> list[str]:
        """Answers from the memories at `rows` (the same number per question)."""
        z = self.model.memory()
        t0 = time.perf_counter()
        out = self.model.answer(list(questions), torch.stack([z[list(r)] for r in rows]), kind=kind)
        self.timings["generate_seconds"] += time.perf_counter() - t0
        return out

    def answer(self, questions: Sequence[str], k: int) -> tuple[list[str], list[list[int]]]:
        """(answers, chosen rows): one-hop selection of k memories, then generation."""
        rows = self.select(questions, k)
        return self.answer_from(questions, rows), rows

    def answer_iterative(
        self, questions: Sequence[str], hops: int = 2, *, intermediate: Intermediate = "answer"
    ) -> tuple[list[str], list[list[int]], list[str]]:
        """(answers, chosen rows in hop order, last intermediate text): each hop selects one more
        memory with the question extended by what the previous hop produced — the LM's
        intermediate answer from the memories so far (``answer``), or the text the LM regenerates
        from the last memory (``document``) — and the final answer reads all of them."""
        chosen: list[list[int]] = [[] for _ in questions]
        current = list(questions)
        bridge = [""] * len(questions)
        for hop in range(hops):
            s = self.scores(current, chosen)
            for i, r in enumerate(s.argmax(-1).tolist()):
                chosen[i].append(r)
            if hop == hops - 1:
                break
            if intermediate == "document":
                t0 = time.perf_counter()
                bridge = self.model.regenerate(self.model.memory()[[c[-1] for c in chosen]])
                self.timings["generate_seconds"] += time.perf_counter() - t0
            else:
                bridge = self.answer_from(questions, chosen, kind="bridge")
            current = [bridge_query(q, b) for q, b in zip(questions, bridge, strict=True)]
        return self.answer_from(questions, chosen), chosen, bridge
