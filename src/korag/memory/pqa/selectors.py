"""Selectors: which documents' memories a question reads.

A question arrives as the frozen dense encoder's embedding q (korag's `DenseEncoder`); every
selector first projects it to z_dim and scores it against each document's key, the mean of its
m memory vectors z̄_i:

- ``cosine``: cos(W q, z̄_i) / τ (τ fixed) — a linear map, the baseline;
- ``router``: the cosine plus an MLP over the pair, on [q′; d′; q′⊙d′; |q′−d′|] with q′, d′ =
  LN(GELU(W·)) of the projected question and the key, all divided by a learned temperature.
  The MLP's last layer starts at zero, so the router starts as the cosine and learns what the
  cosine cannot express (a router from scratch, measured: recall@1 0.09–0.40 where the cosine
  reached 0.48, and sensitive to the learning rate). The product and difference features are
  there because a plain MLP over a concatenation has to learn multiplication to compare two
  vectors, which it does poorly;
- ``attention``: H heads, queries from the projected question, keys from LN(z̄_i), scores the
  mean over heads of cos(q_h, k_h) divided by a learned temperature (initially τ).

`retrieval_loss` is −log of the softmax probability mass on the gold documents: the chance of
drawing a gold document first, a lower bound of P(gold in top-k) that keeps a gradient when the
gold is not (yet) in the top k.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from korag.memory.pqa.config import SelectorConfig


class Selector(torch.nn.Module):
    """Scores (questions × documents) from question embeddings and the memory pool."""

    def __init__(self, query_dim: int, z_dim: int, config: SelectorConfig) -> None:
        super().__init__()
        self.config = config
        self.query_dim = query_dim
        self.z_dim = z_dim
        self.q_proj = torch.nn.Linear(query_dim, z_dim)

    @staticmethod
    def keys(z: torch.Tensor) -> torch.Tensor:
        """Each document's key: the mean of its memory vectors (N × m × z_dim → N × z_dim)."""
        return z.mean(1)

    def scores(self, q: torch.Tensor, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """(questions × documents) scores."""
        raise NotImplementedError


class CosineSelector(Selector):
    """cos(W q, z̄_i) / τ."""

    def scores(self, q: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        qn = torch.nn.functional.normalize(self.q_proj(q), dim=-1)
        kn = torch.nn.functional.normalize(self.keys(z), dim=-1)
        return qn @ kn.T / self.config.temperature


class RouterSelector(Selector):
    """An MLP over (question, key) pairs with a learned temperature."""

    def __init__(self, query_dim: int, z_dim: int, config: SelectorConfig) -> None:
        super().__init__(query_dim, z_dim, config)
        half = max(8, z_dim // 2)

        def side() -> torch.nn.Module:
            return torch.nn.Sequential(torch.nn.Linear(z_dim, half), torch.nn.GELU(), torch.nn.LayerNorm(half))

        self.q_net, self.d_net = side(), side()
        self.head = torch.nn.Sequential(torch.nn.Linear(4 * half, half), torch.nn.GELU(), torch.nn.Linear(half, 1))
        # scores start at zero (a uniform choice): a random head divided by a small temperature
        # saturates the softmax before anything is learned
        torch.nn.init.zeros_(self.head[2].weight)
        torch.nn.init.zeros_(self.head[2].bias)
        self.log_temperature = torch.nn.Parameter(torch.tensor(math.log(config.temperature)))

    def scores(self, q: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        projected, keys = self.q_proj(q), self.keys(z)
        base = torch.nn.functional.normalize(projected, dim=-1) @ torch.nn.functional.normalize(keys, dim=-1).T
        qp = self.q_net(projected).unsqueeze(1)  # B × 1 × h
        dp = self.d_net(keys).unsqueeze(0)  # 1 × N × h
        qp, dp = torch.broadcast_tensors(qp, dp)
        pair = torch.cat([qp, dp, qp * dp, (qp - dp).abs()], dim=-1)
        return (base + self.head(pair).squeeze(-1)) / self.log_temperature.exp()


class AttentionSelector(Selector):
    """Multi-head attention scores between the question and layer-normalised keys: per head, the
    cosine of the projected query and key (a head cannot win by norm alone), averaged over heads
    and divided by a learned temperature (initially τ)."""

    def __init__(self, query_dim: int, z_dim: int, config: SelectorConfig) -> None:
        super().__init__(query_dim, z_dim, config)
        self.heads = config.heads
        self.head_dim = max(4, z_dim // config.heads)
        self.wq = torch.nn.Linear(z_dim, self.heads * self.head_dim)
        self.key_norm = torch.nn.LayerNorm(z_dim)
        self.wk = torch.nn.Linear(z_dim, self.heads * self.head_dim)
        self.log_temperature = torch.nn.Parameter(torch.tensor(math.log(config.temperature)))

    def scores(self, q: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        qh = self.wq(self.q_proj(q)).view(q.shape[0], self.heads, self.head_dim)
        kh = self.wk(self.key_norm(self.keys(z))).view(z.shape[0], self.heads, self.head_dim)
        qh, kh = torch.nn.functional.normalize(qh, dim=-1), torch.nn.functional.normalize(kh, dim=-1)
        return torch.einsum("bhd,nhd->bn", qh, kh) / self.heads / self.log_temperature.exp()


SELECTORS: dict[str, type[Selector]] = {
    "cosine": CosineSelector,
    "router": RouterSelector,
    "attention": AttentionSelector,
}


def make_selector(config: SelectorConfig, query_dim: int, z_dim: int) -> Selector:
    """The selector `config.kind` for questions of `query_dim` and memories of `z_dim`."""
    return SELECTORS[config.kind](query_dim, z_dim, config)


def retrieval_loss(scores: torch.Tensor, gold: Sequence[Sequence[int]]) -> torch.Tensor:
    """Mean over questions of −log Σ_{g ∈ gold} softmax(scores)_g."""
    logp = torch.log_softmax(scores.float(), dim=-1)
    mask = torch.zeros_like(logp, dtype=torch.bool)
    for i, g in enumerate(gold):
        mask[i, list(g)] = True
    return -(logp.masked_fill(~mask, float("-inf")).logsumexp(-1)).mean()


def exclude(scores: torch.Tensor, chosen: Sequence[Sequence[int]]) -> torch.Tensor:
    """`scores` with each row's already chosen documents set to −inf (for the next hop)."""
    out = scores.clone()
    for i, c in enumerate(chosen):
        if c:
            out[i, list(c)] = float("-inf")
    return out
