"""CLaRa: one causal LM that compresses documents into memory-token states, answers from them,
and encodes queries for retrieval, by switching LoRA adapters (after apple/ml-clara).

- Compression: ``[pad… <ENC> text <MEM0>…<MEMn-1>]`` through the LM under the ``encoder``
  adapter; the compressed document is the last layer's states at the n memory positions
  (n = doc_max_length / compression_rate). Only the memory tokens' embedding rows train, besides
  the adapters. An MSE term pulls the mean memory state towards the mean document state.
- Generation: ``Background:\\n`` + k slots of ``<MEM0>…<MEMn-1><SEP>`` + the question; the input
  embeddings at the memory positions are replaced by the compressed states (``decoder`` adapter).
- Retrieval (stage 3): the question is compressed like a document under the ``query_reasoner``
  adapter; documents are scored by cosine over the flattened states and chosen with a
  straight-through top-k, so the answer's loss alone trains the query side.

Differences from ml-clara, on purpose: nothing assumes CUDA (the device is the model's);
position ids follow the left padding (ml-clara feeds left-padded rows with positions counted
from the pad); prompts are plain text, so base models (no chat template) work.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from korag.errors import ConfigError
from korag.memory.clara.config import ClaraConfig
from korag.memory.clara.topk import differentiable_topk
from korag.memory.slots import SlotLM
from korag.models.lora import add_lora, set_lora_trainable

ADAPTERS = ("encoder", "decoder", "query_reasoner")
ENC, SEP = "<ENC>", "<SEP>"


# ml-clara draws one of 13 English instructions per record; one fixed line keeps prompts
# reproducible, and the compressor, not the instruction's wording, is what stage 1 trains
PARAPHRASE_INSTRUCTION = "Paraphrase the background:"


class ClaraModel(SlotLM):
    """A causal LM with memory tokens and the three CLaRa adapters."""

    def __init__(self, lm, tokenizer, config: ClaraConfig, *, adapters: Sequence[str] = ADAPTERS) -> None:
        unknown = [a for a in adapters if a not in ADAPTERS]
        if unknown:
            raise ConfigError(f"unknown adapter(s) {unknown}; choose from {', '.join(ADAPTERS)}")
        mem_tokens = [f"<MEM{i}>" for i in range(config.n_mem)]
        super().__init__(lm, tokenizer, mem_tokens, extra_tokens=[ENC, SEP])
        self.mem_tokens = mem_tokens
        self.config = config
        self.mem_ids = self.slot_ids
        self.enc_id = tokenizer.convert_tokens_to_ids(ENC)
        for name in adapters:
            add_lora(lm, name, config.lora)
        self.adapters = tuple(adapters)
        self.trainable: set[str] = set(adapters)
        emb = lm.get_input_embeddings().weight
        emb.requires_grad_(True)
        mask = torch.zeros(emb.shape[0], 1, dtype=emb.dtype)
        mask[self.mem_ids] = 1.0
        self.register_buffer("_row_mask", mask, persistent=False)
        # of the whole embedding matrix only the memory tokens' rows learn
        emb.register_hook(lambda g: g * self._row_mask.to(g.dtype))

    def use(self, adapter: str) -> None:
        """Make `adapter` the active one, keeping every adapter in `trainable` trainable."""
        self.lm.set_adapter(adapter)
        set_lora_trainable(self.lm, self.trainable)

    # -- inputs ----------------------------------------------------------------------------
    def encoder_inputs(self, texts: Sequence[str], max_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``[pad… <ENC> text <MEM…>]`` rows of equal length."""
        limit = max_length or self.config.doc_max_length
        body = self.tokenizer(list(texts), add_special_tokens=False, truncation=True, max_length=limit)["input_ids"]
        mem = self.mem_ids.tolist()
        rows = [[self.enc_id, *b, *mem] for b in body]
        return self.left_pad(rows, limit + 1 + len(mem))

    # -- compression -----------------------------------------------------------------------
    def _memory_states(self, texts: Sequence[str], adapter: str, max_length: int | None = None):
        self.use(adapter)
        ids, mask = self.encoder_inputs(texts, max_length)
        # the decoder stack alone: compression needs hidden states, and the vocabulary projection
        # of every position (262k logits per token for Gemma) would cost more than the layers
        hidden = self.hidden_states(input_ids=ids, attention_mask=mask, position_ids=self.positions(mask))
        is_mem = torch.isin(ids, self.mem_ids.to(ids.device))
        states = hidden[is_mem].reshape(len(texts), self.config.n_mem, hidden.shape[-1])
        doc = (mask.bool() & ~is_mem).unsqueeze(-1).to(hidden.dtype)
        doc_mean = (hidden * doc).sum(1) / doc.sum(1).clamp(min=1)
        mse = torch.nn.functional.mse_loss(states.mean(1), doc_mean)
        return states, mse

    def compress(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(documents × n_mem × hidden compressed states, MSE between mean memory and mean document states)."""
        return self._memory_states(texts, "encoder")

    def encode_queries(self, questions: Sequence[str]) -> torch.Tensor:
        """Questions compressed under the query reasoner, flattened to (questions × n_mem·hidden)."""
        states, _ = self._memory_states(questions, "query_reasoner", self.config.max_question_length)
        return states.flatten(1)

    # -- generation ------------------------------------------------------------------------
    def _slots(self, k: int) -> str:
        return ("".join(self.mem_tokens) + SEP) * k

    def paraphrase_prompt(self) -> str:
        """The generator's prompt for regenerating one compressed document."""
        return f"Background:\n{self._slots(1)}\n\n{PARAPHRASE_INSTRUCTION}\n"

    def qa_prompt(self, question: str, k: int) -> str:
        """The generator's prompt for a question over k compressed documents."""
        return f"Background:\n{self._slots(k)}\n\nQuestion: {question}\nAnswer:"

    def qa_loss(self, questions: Sequence[str], memory: torch.Tensor, answers: Sequence[str], k: int) -> torch.Tensor:
        """Cross-entropy of each answer given its question and k compressed documents
        (`memory`: questions·k × n_mem × hidden, grouped by question)."""
        self.use("decoder")
        ids, mask, labels = self.decoder_batch([self.qa_prompt(q, k) for q in questions], [" " + a for a in answers])
        return self.answer_loss(self.embed_with_memory(ids, memory), mask, labels)

    def _generate(self, prompts: Sequence[str], memory: torch.Tensor, max_new_tokens: int) -> list[str]:
        """Greedy continuations of decoder prompts whose memory slots hold `memory`."""
        self.use("decoder")
        return self.generate_with_memory(prompts, memory, max_new_tokens)

    def answer(self, questions: Sequence[str], memory: torch.Tensor, k: int, *, max_new_tokens: int | None = None):
        """Greedy answers from compressed documents, cut at the first line break."""
        texts = self._generate(
            [self.qa_prompt(q, k) for q in questions], memory, max_new_tokens or self.config.max_answer_tokens
        )
        return [t.split("\n")[0].strip() for t in texts]

    # -- the three training objectives -----------------------------------------------------
    def stage1_loss(
        self,
        documents: Sequence[str],
        questions: Sequence[Sequence[str]],
        answers: Sequence[Sequence[str]],
        kinds: Sequence[str] | None = None,
    ):
        """Compression pre-training: from each compressed document, all its QA lines (a ``qa``
        record) or its paraphrase (a ``paraphrase`` record: the first answer), plus
        mse_weight × MSE. Returns (total, parts)."""
        kinds = kinds or ["qa"] * len(documents)
        memory, mse = self.compress(documents)
        self.use("decoder")
        prompts, targets = [], []
        for qs, ans, kind in zip(questions, answers, kinds, strict=True):
            if kind == "paraphrase":
                prompts.append(self.paraphrase_prompt())
                targets.append(ans[0])
            else:
                prompts.append(f"Background:\n{self._slots(1)}\n\n")
                targets.append("\n".join(f"Question: {q}\nAnswer: {a}" for q, a in zip(qs, ans, strict=True)))
        ids, mask, labels = self.decoder_batch(prompts, targets)
        ce = self.answer_loss(self.embed_with_memory(ids, memory), mask, labels)
        return ce + self.config.mse_weight * mse, {"ce": ce.item(), "mse": mse.item()}

    def paraphrase(self, memory: torch.Tensor, *, max_new_tokens: int | None = None) -> list[str]:
        """Greedy text regenerated from each compressed document (memory: docs × n_mem × hidden)."""
        prompts = [self.paraphrase_prompt()] * memory.shape[0]
        return self._generate(prompts, memory, max_new_tokens or self.config.doc_max_length)

    def stage2_loss(self, questions: Sequence[str], documents: Sequence[Sequence[str]], answers: Sequence[str]):
        """Instruction tuning: the answer given the question and its k compressed documents."""
        k = len(documents[0])
        if any(len(d) != k for d in documents):
            raise ValueError("stage 2: every question needs the same number of documents")
        memory, mse = self.compress([d for docs in documents for d in docs])
        ce = self.qa_loss(questions, memory, answers, k)
        return ce + self.config.mse_weight * mse, {"ce": ce.item(), "mse": mse.item()}

    def stage3_loss(self, questions: Sequence[str], documents: Sequence[Sequence[str]], answers: Sequence[str], k: int):
        """End to end: documents compressed without gradient, the question encoded by the query
        reasoner, top-k by cosine with a straight-through selection, loss on the answer only.
        Returns (loss, chosen indices per question)."""
        n = len(documents[0])
        if any(len(d) != n for d in documents):
            raise ValueError("stage 3: every question needs the same number of candidate documents")
        with torch.no_grad():
            docs, _ = self.compress([d for ds in documents for d in ds])
        docs = docs.reshape(len(questions), n, -1)
        q = self.encode_queries(questions)
        scores = torch.nn.functional.normalize(q.float(), dim=-1).unsqueeze(1) @ torch.nn.functional.normalize(
            docs.float(), dim=-1
        ).transpose(1, 2)
        w, idx = differentiable_topk(scores.squeeze(1), k, self.config.temperature)
        chosen = torch.einsum("bkn,bnd->bkd", w.to(docs.dtype), docs)
        memory = chosen.reshape(len(questions) * k, self.config.n_mem, -1)
        return self.qa_loss(questions, memory, answers, k), idx

    def describe(self) -> dict[str, Any]:
        """Config and adapters (for run records)."""
        return {**self.config.model_dump(), "n_mem": self.config.n_mem, "adapters": list(self.adapters)}
