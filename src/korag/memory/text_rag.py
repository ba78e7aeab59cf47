"""The text baselines every memory model is measured against, from the same base LM with its
adapters switched off: closed-book (the question alone) and RAG with passages as plain text
(retrieved by BM25, a dense model or a hybrid, or the gold passage: the oracle)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from korag.memory.slots import SlotLM


def text_prompt(question: str, passages: Sequence[str] | None = None) -> str:
    """``Background:`` + passages (if any) + ``Question: … Answer:`` — the layout the memory
    models' prompts share, with text where they have slots."""
    background = "" if not passages else "Background:\n" + "\n\n".join(passages) + "\n\n"
    return f"{background}Question: {question}\nAnswer:"


def first_line(text: str) -> str:
    """A generated answer up to its first line break (base models keep writing otherwise)."""
    return text.strip().split("\n")[0].strip()


class TextReader:
    """Greedy answers of the base LM of `model`, adapters off, with passages as text."""

    def __init__(self, model: SlotLM, *, max_answer_tokens: int = 32, max_prompt_tokens: int | None = None) -> None:
        self.model = model
        self.max_answer_tokens = max_answer_tokens
        self.max_prompt_tokens = max_prompt_tokens
        self.generate_seconds = 0.0

    @torch.no_grad()
    def answer(self, questions: Sequence[str], passages: Sequence[Sequence[str]] | None = None) -> list[str]:
        """One answer per question; `passages[i]` are question i's passages (None: closed-book)."""
        prompts = [text_prompt(q, None if passages is None else passages[i]) for i, q in enumerate(questions)]
        t0 = time.perf_counter()
        ids, mask, _ = self.model.decoder_batch(prompts)
        if self.max_prompt_tokens is not None and ids.shape[1] > self.max_prompt_tokens:
            # keep the end: the question and "Answer:" must survive a long background
            ids, mask = ids[:, -self.max_prompt_tokens :], mask[:, -self.max_prompt_tokens :]
        lm = self.model.lm
        has_adapters = getattr(lm, "_hf_peft_config_loaded", False)  # transformers' PEFT integration
        if has_adapters:
            lm.disable_adapters()
        try:
            out = lm.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=self.max_answer_tokens,
                do_sample=False,
                pad_token_id=self.model.tokenizer.pad_token_id,
            )
        finally:
            if has_adapters:
                lm.enable_adapters()
        self.generate_seconds += time.perf_counter() - t0
        texts = self.model.tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)
        return [first_line(t) for t in texts]
