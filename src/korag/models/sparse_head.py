"""The document side of a learned sparse encoder: transformer token states → one weight per vocabulary token.

Two heads, one sentence-transformers module (`SpladeHead`), so a korag sparse model saves,
loads and trains as a normal `SparseEncoder`:

* **expansion** (SPLADE): an MLM-style head — dense + GELU + LayerNorm, then a decoder whose rows
  start as the encoder's own input embeddings — gives logits over the vocabulary at every
  position; ``log(1 + ReLU(·))`` and max pooling over positions give the document vector, so a
  document can weigh tokens it does not contain. sentence-transformers' own path
  (`Transformer(transformer_task="fill-mask")` + `SpladePooling`) needs a model with a masked-LM
  head, which the offline E5 lacks, and always scores the full vocabulary: for E5's 250,002
  XLM-R pieces that is 96 M multiply-adds per token, twice the cost of the whole encoder. This
  head instead scores an *output vocabulary* — by default every piece that occurs in the training
  corpus and queries (≈15 k for KorQuAD) — and scatters the result into full-vocabulary
  positions, so vectors and exported models use the tokenizer's ids unchanged. The decoder rows
  are initialised from (not shared with) the input embeddings because only a subset is scored.
* **token weighting** (no expansion): a linear layer scores each input token; ``log(1 + ReLU(·))``
  and a max over repeated tokens give the vector. Cheaper, needs no MLM head or warm-up, and its
  vectors only contain the document's own tokens.

Special tokens (CLS, SEP, PAD …) never receive weight.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from sentence_transformers.base.modules.module import Module
from torch import nn


class SpladeHead(Module):
    """Sparse pooling head over `token_embeddings`, output dimension = the tokenizer's vocabulary."""

    config_keys: ClassVar[list[str]] = ["vocab_size", "hidden_size", "expansion", "special_ids", "output_size"]

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int,
        *,
        expansion: bool = True,
        special_ids: list[int] | None = None,
        output_ids: torch.Tensor | list[int] | None = None,
        output_size: int | None = None,
        embeddings: torch.Tensor | None = None,
        layer_norm_eps: float = 1e-12,
    ) -> None:
        super().__init__()
        self.vocab_size = int(vocab_size)
        self.hidden_size = int(hidden_size)
        self.expansion = bool(expansion)
        self.special_ids = sorted(int(i) for i in (special_ids or []))
        special = torch.zeros(self.vocab_size, dtype=torch.bool)
        if self.special_ids:
            special[torch.tensor(self.special_ids)] = True
        self.register_buffer("special_mask", special, persistent=False)
        if self.expansion:
            if output_ids is None and output_size is not None:
                ids = torch.zeros(output_size, dtype=torch.long)  # a saved head: the weights bring the ids
            else:
                ids = torch.arange(self.vocab_size) if output_ids is None else torch.as_tensor(output_ids).long()
                ids = ids[~special[ids]]
            self.output_size = int(ids.numel())
            self.register_buffer("output_ids", ids)
            self.transform = nn.Sequential(
                nn.Linear(hidden_size, hidden_size), nn.GELU(), nn.LayerNorm(hidden_size, eps=layer_norm_eps)
            )
            with torch.no_grad():
                # identity start: the last hidden state is scored against the input embeddings
                # directly, which already ranks a token's own and related pieces highest
                # (zero-shot MRR@10 0.66 on KorQuAD with E5, against ~0 for a random transform)
                self.transform[0].weight.copy_(torch.eye(hidden_size))
                self.transform[0].bias.zero_()
            self.decoder = nn.Parameter(torch.empty(self.output_size, hidden_size))
            self.bias = nn.Parameter(torch.zeros(self.output_size))
            if embeddings is not None:
                with torch.no_grad():
                    self.decoder.copy_(embeddings[ids].float())
            else:
                nn.init.normal_(self.decoder, std=0.02)
        else:
            self.output_size = self.vocab_size
            self.scorer = nn.Linear(hidden_size, 1)
            with torch.no_grad():
                # start every token at a similar positive weight, so ReLU passes gradient everywhere
                self.scorer.weight.normal_(std=0.02)
                self.scorer.bias.fill_(1.0)

    @torch.no_grad()
    def calibrate_(self, hidden: torch.Tensor, mask: torch.Tensor, active: float = 0.001) -> float:
        """Shift the bias so that about `active` of (position, token) logits are positive on
        these hidden states — a sparse start instead of every token active. Returns the shift."""
        if not self.expansion:
            return 0.0
        logits = self.logits(hidden)[mask.bool()].float().flatten()
        if logits.numel() > 4_000_000:
            logits = logits[torch.randperm(logits.numel(), generator=torch.Generator().manual_seed(0))[:4_000_000]]
        shift = float(torch.quantile(logits, 1.0 - active))
        self.bias.sub_(shift)
        return shift

    # -- forward ----------------------------------------------------------------------------
    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Expansion head: logits over the output vocabulary at every position (…, output_size)."""
        return self.transform(hidden) @ self.decoder.T + self.bias

    def forward(self, features: dict[str, torch.Tensor], **kwargs) -> dict[str, torch.Tensor]:
        """Add `sentence_embedding` (batch × vocab_size, non-negative) to `features`."""
        hidden = features["token_embeddings"]
        mask = features["attention_mask"].to(hidden.dtype)
        batch = hidden.shape[0]
        if self.expansion:
            # log(1 + ReLU(·)) is monotonic, so max-pooling the raw logits first gives the same
            # vector while the element-wise work shrinks from batch × length × vocab to batch × vocab
            logits = self.logits(hidden).masked_fill(~mask.bool().unsqueeze(-1), float("-inf"))
            pooled = torch.log1p(torch.relu(logits.max(dim=1).values))
            out = pooled.new_zeros(batch, self.vocab_size)
            out = out.index_copy(1, self.output_ids, pooled)
        else:
            ids = features["input_ids"]
            scores = torch.log1p(torch.relu(self.scorer(hidden).squeeze(-1))) * mask
            scores = scores.masked_fill(self.special_mask[ids], 0.0)
            out = scores.new_zeros(batch, self.vocab_size).scatter_reduce(1, ids, scores, reduce="amax")
        features["sentence_embedding"] = out.float()
        return features

    def get_sentence_embedding_dimension(self) -> int:
        """Output dimension: the full vocabulary."""
        return self.vocab_size

    get_embedding_dimension = get_sentence_embedding_dimension

    # -- persistence ----------------------------------------------------------------------------
    def save(self, output_path: str, *args, safe_serialization: bool = True, **kwargs) -> None:
        """Config and weights (including the output vocabulary) into `output_path`."""
        self.save_config(output_path)
        self.save_torch_weights(output_path, safe_serialization=safe_serialization)

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", **kwargs) -> SpladeHead:
        """Rebuild from a saved config, then load the weights."""
        hub = {k: kwargs[k] for k in ("token", "cache_folder", "revision", "local_files_only") if k in kwargs}
        config = cls.load_config(model_name_or_path, subfolder=subfolder, **hub)
        head = cls(**config)
        return cls.load_torch_weights(model_name_or_path, subfolder=subfolder, model=head, **hub)

    def __repr__(self) -> str:
        kind = f"expansion over {self.output_size:,} tokens" if self.expansion else "token weighting"
        return f"SpladeHead({kind}, vocab {self.vocab_size:,})"
