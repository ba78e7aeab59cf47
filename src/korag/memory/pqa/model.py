"""Parametric QA: every document is a small learned memory z_i (m vectors of z_dim), turned into
m soft tokens of a frozen causal LM by a shared projection; the LM answers from the soft tokens of
the documents a selector picks (after heonyus/zRAG's parametric-qa design, read for its method).

- **Write phase** (`write_loss`): the LM is frozen; z_i (and the projection) learn so that the LM
  regenerates document i from ``[BOS <Z>×m]`` alone (teacher-forced cross-entropy on the
  document's tokens and its EOS).
- **Read phase** (`qa_loss`): ``Background:`` + k slot groups + ``Question: … Answer:``; the
  slots hold the projected z of the selected documents (`korag.memory.pqa.selectors`). The LM
  stays frozen or learns through a LoRA adapter (``reader``).
- **xRAG-style memory** (``memory="encoder"``): z_i is not learned but fixed to the frozen dense
  encoder's embedding of document i (m = 1); only the projection learns — the one-token
  projector baseline, trained by the same two phases (paraphrase, then QA).

The slot mechanics (prompt batches, replacement, losses that project only labelled positions,
generation) are the memory models' shared `SlotLM`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Literal

import torch

from korag.memory.pqa.config import PQAConfig
from korag.memory.slots import SlotLM
from korag.memory.text_rag import first_line
from korag.models.lora import LoraSettings, add_lora, freeze_base, set_lora_trainable

Z_TOKEN = "<Z>"
READER = "reader"
PromptKind = Literal["answer", "bridge"]


class ZProjection(torch.nn.Module):
    """z (z_dim) → 2·z_dim → GELU → LM hidden size, optionally layer-normalised or gated.

    The last layer starts scaled so that projected tokens have the RMS of the LM's own token
    embeddings: a soft token far louder or quieter than every real token is a poor start
    (Gemma, for one, multiplies its embeddings by √hidden).
    """

    def __init__(self, z_dim: int, hidden: int, *, kind: str, layer_norm: bool, target_rms: float) -> None:
        super().__init__()
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(z_dim, 2 * z_dim), torch.nn.GELU(), torch.nn.Linear(2 * z_dim, hidden)
        )
        self.norm = torch.nn.LayerNorm(hidden) if layer_norm else None
        self.register_buffer("target_rms", torch.tensor(float(target_rms)))
        self.gate = torch.nn.Parameter(torch.tensor(1.0)) if kind == "gate" else None
        with torch.no_grad():
            probe = self.mlp(torch.randn(256, z_dim) * 0.5)
            rms = probe.pow(2).mean().sqrt().clamp(min=1e-8)
            self.mlp[2].weight.mul_(target_rms / rms)
            self.mlp[2].bias.mul_(target_rms / rms)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Soft tokens for `z` (..., z_dim) → (..., hidden)."""
        out = self.mlp(z)
        if self.norm is not None:
            out = self.norm(out) * self.target_rms
        if self.gate is not None:
            out = out * self.gate
        return out


def embedding_rms(lm) -> float:
    """RMS of the LM's input embeddings as its embedding layer returns them (scaling included)."""
    emb = lm.get_input_embeddings()
    n = emb.weight.shape[0]
    ids = torch.arange(0, n, max(1, n // 2048), device=emb.weight.device)
    with torch.no_grad():
        return float(emb(ids).float().pow(2).mean().sqrt())


class ParametricQA(SlotLM):
    """A frozen causal LM, a memory pool Z (documents × m × z_dim) and the projection to soft tokens."""

    def __init__(self, lm, tokenizer, config: PQAConfig, n_docs: int, *, encoder_vectors=None) -> None:
        super().__init__(lm, tokenizer, [Z_TOKEN])
        self.config = config
        for p in lm.parameters():
            p.requires_grad_(False)
        width = config.m_tokens * config.z_dim
        if config.memory == "encoder":
            if encoder_vectors is None:
                raise ValueError("memory='encoder' needs the documents' dense embeddings")
            vec = torch.as_tensor(encoder_vectors, dtype=torch.float32)
            if config.m_tokens != 1 or tuple(vec.shape) != (n_docs, config.z_dim):
                raise ValueError(f"xRAG memory: m_tokens must be 1 and the vectors {n_docs} × {config.z_dim}")
            self.pool = torch.nn.Parameter(vec, requires_grad=False)
        else:
            # one flat row per document, so the write phase can look rows up sparsely (SparseAdam
            # then moves only the rows of the batch, as if each document had its own optimiser)
            self.pool = torch.nn.Parameter(torch.randn(n_docs, width) * config.z_init_std)
        self.projection = self.new_projection()
        self.pool.data = self.pool.data.to(self.device)
        self.lora: LoraSettings | None = None

    def new_projection(self) -> ZProjection:
        """A freshly initialised projection of this model's shape, on its device."""
        c = self.config
        return ZProjection(
            c.z_dim, self.hidden_size, kind=c.projection, layer_norm=c.layer_norm, target_rms=embedding_rms(self.lm)
        ).to(self.device)

    @property
    def n_docs(self) -> int:
        """Documents in the memory pool."""
        return int(self.pool.shape[0])

    def memory(self, rows: torch.Tensor | Sequence[int] | None = None, *, sparse: bool = False) -> torch.Tensor:
        """Memories (documents × m × z_dim) of `rows` (all documents when None); `sparse` makes
        the pool's gradient a sparse one (for SparseAdam)."""
        shape = (self.config.m_tokens, self.config.z_dim)
        if rows is None:
            return self.pool.view(-1, *shape)
        idx = torch.as_tensor(rows, dtype=torch.long, device=self.pool.device)
        return torch.nn.functional.embedding(idx, self.pool, sparse=sparse).view(*idx.shape, *shape)

    def append_memory(self, z: torch.Tensor) -> None:
        """Add documents' memories (documents × m × z_dim) at the end of the pool."""
        flat = z.detach().reshape(z.shape[0], -1).to(self.pool.device, self.pool.dtype)
        self.pool = torch.nn.Parameter(torch.cat([self.pool.data, flat]), requires_grad=self.pool.requires_grad)

    # -- LoRA ------------------------------------------------------------------------------
    def add_reader_lora(self, settings: LoraSettings) -> None:
        """Give the LM a trainable LoRA adapter for the read phase (the base stays frozen)."""
        add_lora(self.lm, READER, settings)
        self.lm.set_adapter(READER)
        freeze_base(self.lm)
        set_lora_trainable(self.lm, [READER])
        self.lora = settings

    @contextlib.contextmanager
    def adapters_off(self) -> Iterator[None]:
        """The LM as it was written against: the read phase's LoRA (if any) switched off."""
        if self.lora is None:
            yield
            return
        self.lm.disable_adapters()
        try:
            yield
        finally:
            self.lm.enable_adapters()
            set_lora_trainable(self.lm, [READER])

    # -- soft tokens -----------------------------------------------------------------------
    def soft_tokens(self, z: torch.Tensor) -> torch.Tensor:
        """Projected memory: (..., m, z_dim) → (..., m, hidden)."""
        return self.projection(z.to(self.device))

    def slots(self, k: int) -> str:
        """k slot groups of m ``<Z>`` tokens, one per line."""
        return (Z_TOKEN * self.config.m_tokens + "\n") * k

    def qa_prompt(self, question: str, k: int, kind: PromptKind = "answer") -> str:
        """The read phase's prompt for a question over k documents' memories; ``kind='bridge'``
        asks for the intermediate answer of a multi-hop question (what the next hop looks for)."""
        cue = "Bridge:" if kind == "bridge" else "Answer:"
        return f"Background:\n{self.slots(k)}\nQuestion: {question}\n{cue}"

    # -- write phase -----------------------------------------------------------------------
    def write_loss(
        self, docs: Sequence[str], z: torch.Tensor, *, token_dropout: float = 0.0
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Teacher-forced cross-entropy of each document (and its EOS) given only its memory `z`
        (docs × m × z_dim); returns (loss, {"nll", "token_acc"}). `token_dropout` zeroes that
        share of the document's own input embeddings, so the LM must lean on z rather than on
        the previous tokens."""
        with self.adapters_off():
            ids, mask, labels = self.decoder_batch(
                [self.slots(1)] * len(docs), list(docs), max_target_tokens=self.config.max_doc_tokens
            )
            embeds = self.embed_with_memory(ids, self.soft_tokens(z))
            if token_dropout > 0:
                drop = (labels != -100) & (torch.rand(labels.shape, device=labels.device) < token_dropout)
                embeds = embeds.masked_fill(drop.unsqueeze(-1), 0.0)
            nll, acc = self.row_scores(embeds, mask, labels)
        return nll.mean(), {"nll": nll.mean().item(), "token_acc": acc.mean().item()}

    @torch.no_grad()
    def document_scores(self, docs: Sequence[str], z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean NLL, token accuracy) of document i given memory z[i], for every row."""
        with self.adapters_off():
            ids, mask, labels = self.decoder_batch(
                [self.slots(1)] * len(docs), list(docs), max_target_tokens=self.config.max_doc_tokens
            )
            return self.row_scores(self.embed_with_memory(ids, self.soft_tokens(z)), mask, labels)

    @torch.no_grad()
    def regenerate(self, z: torch.Tensor, *, max_new_tokens: int | None = None) -> list[str]:
        """Greedy text generated from each memory alone (z: docs × m × z_dim)."""
        with self.adapters_off():
            return self.generate_with_memory(
                [self.slots(1)] * z.shape[0], self.soft_tokens(z), max_new_tokens or self.config.max_doc_tokens
            )

    # -- read phase ------------------------------------------------------------------------
    def qa_loss(
        self, questions: Sequence[str], z: torch.Tensor, answers: Sequence[str], *, kind: PromptKind = "answer"
    ) -> torch.Tensor:
        """Cross-entropy of each answer given its question and k documents' memories
        (z: questions × k × m × z_dim)."""
        k = z.shape[1]
        ids, mask, labels = self.decoder_batch(
            [self.qa_prompt(q, k, kind) for q in questions],
            [" " + a for a in answers],
            max_target_tokens=self.config.max_answer_tokens,
        )
        return self.answer_loss(self.embed_with_memory(ids, self.soft_tokens(z)), mask, labels)

    @torch.no_grad()
    def answer(
        self,
        questions: Sequence[str],
        z: torch.Tensor,
        *,
        kind: PromptKind = "answer",
        max_new_tokens: int | None = None,
    ) -> list[str]:
        """Greedy answers from k documents' memories (z: questions × k × m × z_dim), first line."""
        k = z.shape[1]
        texts = self.generate_with_memory(
            [self.qa_prompt(q, k, kind) for q in questions],
            self.soft_tokens(z),
            max_new_tokens or self.config.max_answer_tokens,
        )
        return [first_line(t) for t in texts]

    def storage_bytes_per_document(self) -> int:
        """Bytes one document's memory takes (float32)."""
        return self.config.m_tokens * self.config.z_dim * 4
