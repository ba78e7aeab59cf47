"""Prompts with embedding slots: a causal LM whose prompts carry placeholder tokens whose input
embeddings are overwritten by vectors (CLaRa's compressed documents, parametric QA's projected
z, xRAG's projected retrieval embedding).

One place for what every memory model needs around the LM: left-padded prompt batches whose
labels cover only the targets (and their EOS — labels are set by position, not by comparing with
the pad id, so a tokenizer whose pad is its EOS still learns to stop), position ids that follow
the left padding, slot replacement, a loss that projects only labelled positions onto the
vocabulary (Gemma's 262k-word head dominates memory and time otherwise), per-row NLL and token
accuracy, and greedy generation from slot-filled prompts.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class SlotLM(torch.nn.Module):
    """A causal LM, its tokenizer and the ids of the tokens that mark embedding slots."""

    def __init__(self, lm, tokenizer, slot_tokens: Sequence[str], *, extra_tokens: Sequence[str] = ()) -> None:
        super().__init__()
        tokenizer.add_special_tokens({"additional_special_tokens": [*slot_tokens, *extra_tokens]})
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"
        lm.resize_token_embeddings(len(tokenizer))
        self.lm = lm
        self.tokenizer = tokenizer
        self.slot_ids = torch.tensor(tokenizer.convert_tokens_to_ids(list(slot_tokens)), dtype=torch.long)
        self._ids: dict[str, list[int]] = {}
        self.added_ids = torch.tensor(tokenizer.convert_tokens_to_ids([*slot_tokens, *extra_tokens]), dtype=torch.long)

    @property
    def device(self) -> torch.device:
        """Where the model's weights are."""
        return self.lm.get_input_embeddings().weight.device

    @property
    def hidden_size(self) -> int:
        """Width of the LM's input embeddings (what a slot vector must have)."""
        return int(self.lm.get_input_embeddings().weight.shape[1])

    # -- batches ---------------------------------------------------------------------------
    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of `texts` (no special tokens), from a cache: training sees the same
        documents and prompts every epoch, and one tokenizer call per string cost as much as the
        tiny test LMs' forward pass (measured: 40 % of a write step)."""
        todo = list(dict.fromkeys(t for t in texts if t not in self._ids))
        if todo:
            if len(self._ids) > 200_000:
                self._ids.clear()
            for t, ids in zip(todo, self.tokenizer(todo, add_special_tokens=False)["input_ids"], strict=True):
                self._ids[t] = ids
        return [self._ids[t] for t in texts]

    def left_pad(self, rows: list[list[int]], width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, attention mask) of `rows` left-padded to `width` (default: the longest)."""
        width = width or max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            if r:
                ids[i, width - len(r) :] = torch.tensor(r)
                mask[i, width - len(r) :] = 1
        return ids.to(self.device), mask.to(self.device)

    @staticmethod
    def positions(mask: torch.Tensor) -> torch.Tensor:
        """Position ids counted from each row's first real token, not from its left padding."""
        return (mask.cumsum(-1) - 1).clamp(min=0)

    def decoder_batch(
        self, prompts: Sequence[str], targets: Sequence[str] | None = None, *, max_target_tokens: int | None = None
    ):
        """(ids, attention, labels or None): BOS + prompts (+ targets and EOS) left-padded; labels
        cover only the targets and their EOS. Targets are cut to `max_target_tokens`."""
        tok = self.tokenizer
        bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
        heads = self.encode(prompts)
        tails = self.encode(targets) if targets is not None else None
        rows, labels = [], []
        for i in range(len(prompts)):
            head = bos + heads[i]
            tail: list[int] = []
            if tails is not None:
                tail = tails[i] if max_target_tokens is None else tails[i][:max_target_tokens]
                tail = [*tail, tok.eos_token_id]
            rows.append(head + tail)
            labels.append([-100] * len(head) + tail)
        ids, mask = self.left_pad(rows)
        if targets is None:
            return ids, mask, None
        lab = torch.full_like(ids, -100)
        for i, r in enumerate(labels):
            lab[i, ids.shape[1] - len(r) :] = torch.tensor(r, device=ids.device)
        return ids, mask, lab

    def embed_with_memory(self, ids: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """Input embeddings of `ids` with the slot positions replaced, in order, by `memory`
        (rows × slots × hidden, or flattened to that)."""
        embeds = self.lm.get_input_embeddings()(ids)
        is_slot = torch.isin(ids, self.slot_ids.to(ids.device))
        per_row = is_slot.sum(1)
        expected = memory.reshape(ids.shape[0], -1, embeds.shape[-1]).shape[1]
        if not bool((per_row == expected).all()):
            raise ValueError(f"every row needs {expected} memory positions, found {per_row.tolist()}")
        return embeds.masked_scatter(is_slot.unsqueeze(-1), memory.to(embeds.dtype).reshape(-1, embeds.shape[-1]))

    # -- forward ---------------------------------------------------------------------------
    def hidden_states(self, **inputs) -> torch.Tensor:
        """Last hidden states (after the final norm) of the transformer without its LM head."""
        body = getattr(self.lm, self.lm.base_model_prefix)
        return body(**inputs).last_hidden_state

    def _target_logits(self, embeds: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor):
        hidden = self.hidden_states(inputs_embeds=embeds, attention_mask=mask, position_ids=self.positions(mask))
        target = labels[:, 1:]
        keep = target != -100
        logits = self.lm.get_output_embeddings()(hidden[:, :-1][keep])
        softcap = getattr(self.lm.config, "final_logit_softcapping", None)
        if softcap:  # Gemma caps its logits; the loss must see what generation sees
            logits = torch.tanh(logits / softcap) * softcap
        return logits.float(), target, keep

    def answer_loss(self, embeds: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the labelled tokens, projecting only the positions that predict
        them onto the vocabulary (HF's loss would project every position of the prompt too)."""
        logits, target, keep = self._target_logits(embeds, mask, labels)
        return torch.nn.functional.cross_entropy(logits, target[keep])

    def row_scores(self, embeds: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor):
        """(mean NLL per row, greedy token accuracy per row) over each row's labelled tokens."""
        logits, target, keep = self._target_logits(embeds, mask, labels)
        nll = torch.nn.functional.cross_entropy(logits, target[keep], reduction="none")
        right = (logits.argmax(-1) == target[keep]).float()
        row = keep.nonzero()[:, 0]
        counts = keep.sum(1).clamp(min=1).float()
        zeros = torch.zeros(keep.shape[0], device=logits.device)
        return zeros.index_add(0, row, nll) / counts, zeros.index_add(0, row, right) / counts

    @torch.no_grad()
    def generate_with_memory(
        self, prompts: Sequence[str], memory: torch.Tensor, max_new_tokens: int, **sampling
    ) -> list[str]:
        """Continuations (greedy unless `sampling` says otherwise) of prompts whose slots hold
        `memory`; special tokens are dropped and whitespace stripped."""
        ids, mask, _ = self.decoder_batch(prompts)
        out = self.lm.generate(
            inputs_embeds=self.embed_with_memory(ids, memory),
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            do_sample=bool(sampling),
            pad_token_id=self.tokenizer.pad_token_id,
            **sampling,
        )
        return [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]
