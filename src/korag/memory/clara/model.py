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

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from korag.errors import ConfigError
from korag.memory.clara.topk import differentiable_topk

ADAPTERS = ("encoder", "decoder", "query_reasoner")
ENC, SEP = "<ENC>", "<SEP>"


# ml-clara draws one of 13 English instructions per record; one fixed line keeps prompts
# reproducible, and the compressor, not the instruction's wording, is what stage 1 trains
PARAPHRASE_INSTRUCTION = "Paraphrase the background:"


class ClaraConfig(BaseModel):
    """Shapes and losses of a CLaRa model."""

    model_config = ConfigDict(extra="forbid")

    doc_max_length: int = Field(256, gt=0)
    compression_rate: int = Field(32, gt=0)
    top_k: int = Field(5, gt=0)
    lora_r: int = Field(16, gt=0)
    lora_alpha: int = Field(32, gt=0)
    lora_dropout: float = Field(0.1, ge=0, lt=1)
    lora_targets: str | list[str] = "all-linear"
    mse_weight: float = Field(0.1, ge=0)
    temperature: float = Field(0.02, gt=0)
    max_question_length: int = Field(64, gt=0)
    max_answer_tokens: int = Field(32, gt=0)

    @model_validator(mode="after")
    def _divisible(self) -> ClaraConfig:
        if self.doc_max_length % self.compression_rate:
            raise ValueError(
                f"doc_max_length ({self.doc_max_length}) must be a multiple of "
                f"compression_rate ({self.compression_rate})"
            )
        return self

    @property
    def n_mem(self) -> int:
        """Memory tokens per document."""
        return self.doc_max_length // self.compression_rate


class ClaraModel(torch.nn.Module):
    """A causal LM with memory tokens and the three CLaRa adapters."""

    def __init__(self, lm, tokenizer, config: ClaraConfig, *, adapters: Sequence[str] = ADAPTERS) -> None:
        super().__init__()
        from peft import LoraConfig

        unknown = [a for a in adapters if a not in ADAPTERS]
        if unknown:
            raise ConfigError(f"unknown adapter(s) {unknown}; choose from {', '.join(ADAPTERS)}")
        self.config = config
        self.tokenizer = tokenizer
        self.mem_tokens = [f"<MEM{i}>" for i in range(config.n_mem)]
        tokenizer.add_special_tokens({"additional_special_tokens": [*self.mem_tokens, ENC, SEP]})
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"
        lm.resize_token_embeddings(len(tokenizer))
        self.lm = lm
        self.mem_ids = torch.tensor(tokenizer.convert_tokens_to_ids(self.mem_tokens), dtype=torch.long)
        self.enc_id = tokenizer.convert_tokens_to_ids(ENC)
        self.added_ids = torch.tensor(tokenizer.convert_tokens_to_ids([*self.mem_tokens, ENC, SEP]), dtype=torch.long)
        for name in adapters:
            with warnings.catch_warnings():  # several adapters on one model is the point here
                warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                lm.add_adapter(
                    LoraConfig(
                        r=config.lora_r,
                        lora_alpha=config.lora_alpha,
                        lora_dropout=config.lora_dropout,
                        target_modules=config.lora_targets,
                        task_type="CAUSAL_LM",
                    ),
                    adapter_name=name,
                )
        self.adapters = tuple(adapters)
        self.trainable: set[str] = set(adapters)
        emb = lm.get_input_embeddings().weight
        emb.requires_grad_(True)
        mask = torch.zeros(emb.shape[0], 1, dtype=emb.dtype)
        mask[self.mem_ids] = 1.0
        self.register_buffer("_row_mask", mask, persistent=False)
        # of the whole embedding matrix only the memory tokens' rows learn
        emb.register_hook(lambda g: g * self._row_mask.to(g.dtype))

    @property
    def device(self) -> torch.device:
        """Where the model's weights are."""
        return self.lm.get_input_embeddings().weight.device

    def use(self, adapter: str) -> None:
        """Make `adapter` the active one, keeping every adapter in `trainable` trainable (PEFT
        freezes inactive adapters on a switch, which would cut the gradient of a two-adapter step)."""
        self.lm.set_adapter(adapter)
        for name, p in self.lm.named_parameters():
            if "lora_" in name:
                p.requires_grad_(any(f".{a}." in name for a in self.trainable))

    # -- inputs ----------------------------------------------------------------------------
    def _left_pad(self, rows: list[list[int]], width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        width = width or max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            if r:
                ids[i, width - len(r) :] = torch.tensor(r)
                mask[i, width - len(r) :] = 1
        return ids.to(self.device), mask.to(self.device)

    @staticmethod
    def _positions(mask: torch.Tensor) -> torch.Tensor:
        # positions count from each row's first real token, not from its left padding
        return (mask.cumsum(-1) - 1).clamp(min=0)

    def encoder_inputs(self, texts: Sequence[str], max_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``[pad… <ENC> text <MEM…>]`` rows of equal length."""
        limit = max_length or self.config.doc_max_length
        body = self.tokenizer(list(texts), add_special_tokens=False, truncation=True, max_length=limit)["input_ids"]
        mem = self.mem_ids.tolist()
        rows = [[self.enc_id, *b, *mem] for b in body]
        return self._left_pad(rows, limit + 1 + len(mem))

    def _decoder(self, **inputs) -> torch.Tensor:
        """Last hidden states (after the final norm) of the transformer without its LM head."""
        body = getattr(self.lm, self.lm.base_model_prefix)
        return body(**inputs).last_hidden_state

    def _answer_loss(self, embeds: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the labelled tokens, projecting only the positions that predict
        them onto the vocabulary (HF's loss would project every position of the prompt too)."""
        hidden = self._decoder(inputs_embeds=embeds, attention_mask=mask, position_ids=self._positions(mask))
        target = labels[:, 1:]
        keep = target != -100
        logits = self.lm.get_output_embeddings()(hidden[:, :-1][keep])
        softcap = getattr(self.lm.config, "final_logit_softcapping", None)
        if softcap:  # Gemma caps its logits; the loss must see what generation sees
            logits = torch.tanh(logits / softcap) * softcap
        return torch.nn.functional.cross_entropy(logits.float(), target[keep])

    # -- compression -----------------------------------------------------------------------
    def _memory_states(self, texts: Sequence[str], adapter: str, max_length: int | None = None):
        self.use(adapter)
        ids, mask = self.encoder_inputs(texts, max_length)
        # the decoder stack alone: compression needs hidden states, and the vocabulary projection
        # of every position (262k logits per token for Gemma) would cost more than the layers
        hidden = self._decoder(input_ids=ids, attention_mask=mask, position_ids=self._positions(mask))
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

    def decoder_batch(self, prompts: Sequence[str], targets: Sequence[str] | None = None):
        """(ids, attention, labels or None): prompts (+ targets and eos) left-padded; labels cover
        only the targets."""
        tok = self.tokenizer
        bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
        rows, labels = [], []
        for i, p in enumerate(prompts):
            head = bos + tok(p, add_special_tokens=False)["input_ids"]
            tail = (
                [] if targets is None else tok(targets[i], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            )
            rows.append(head + tail)
            labels.append([-100] * len(head) + tail)
        ids, mask = self._left_pad(rows)
        if targets is None:
            return ids, mask, None
        lab = torch.full_like(ids, -100)
        for i, r in enumerate(labels):
            lab[i, ids.shape[1] - len(r) :] = torch.tensor(r, device=ids.device)
        return ids, mask, lab

    def embed_with_memory(self, ids: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """Input embeddings of `ids` with the memory positions replaced, in order, by `memory`
        (rows × k·n_mem × hidden, or flattened to that)."""
        embeds = self.lm.get_input_embeddings()(ids)
        is_mem = torch.isin(ids, self.mem_ids.to(ids.device))
        per_row = is_mem.sum(1)
        expected = memory.reshape(ids.shape[0], -1, embeds.shape[-1]).shape[1]
        if not bool((per_row == expected).all()):
            raise ValueError(f"every row needs {expected} memory positions, found {per_row.tolist()}")
        return embeds.masked_scatter(is_mem.unsqueeze(-1), memory.to(embeds.dtype).reshape(-1, embeds.shape[-1]))

    def qa_loss(self, questions: Sequence[str], memory: torch.Tensor, answers: Sequence[str], k: int) -> torch.Tensor:
        """Cross-entropy of each answer given its question and k compressed documents
        (`memory`: questions·k × n_mem × hidden, grouped by question)."""
        self.use("decoder")
        ids, mask, labels = self.decoder_batch([self.qa_prompt(q, k) for q in questions], [" " + a for a in answers])
        return self._answer_loss(self.embed_with_memory(ids, memory), mask, labels)

    @torch.no_grad()
    def _generate(self, prompts: Sequence[str], memory: torch.Tensor, max_new_tokens: int) -> list[str]:
        """Greedy continuations of decoder prompts whose memory slots hold `memory`."""
        self.use("decoder")
        ids, mask, _ = self.decoder_batch(prompts)
        out = self.lm.generate(
            inputs_embeds=self.embed_with_memory(ids, memory),
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        return [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]

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
        ce = self._answer_loss(self.embed_with_memory(ids, memory), mask, labels)
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
