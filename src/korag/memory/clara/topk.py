"""Straight-through differentiable top-k, as CLaRa's end-to-end stage uses it.

The forward value is exactly the hard top-k selection (one-hot rows in score order), so the
generator sees the same documents at training and at inference. The backward pass goes through
soft slot distributions: slot j is a softmax of scores / τ with the documents already taken by
earlier slots masked out, so the language-modelling loss alone can move the query encoder.
"""

from __future__ import annotations

import torch


def differentiable_topk(scores: torch.Tensor, k: int, temperature: float = 0.02) -> tuple[torch.Tensor, torch.Tensor]:
    """(W, indices) for scores of shape (batch, n): W is (batch, k, n) with W's value equal to
    the one-hot hard top-k and its gradient that of the soft slot distributions."""
    if scores.dim() != 2:
        raise ValueError(f"scores must be (batch, documents), got shape {tuple(scores.shape)}")
    n = scores.shape[1]
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and the number of documents ({n}), got {k}")
    logits = scores / max(temperature, 1e-6)
    idx = torch.topk(scores, k, dim=-1).indices
    hard = torch.nn.functional.one_hot(idx, n).to(scores.dtype)  # (b, k, n)
    taken = torch.zeros_like(scores)
    soft_slots = []
    for j in range(k):
        # log(0) for taken documents removes them from this slot's distribution
        masked = logits + torch.log1p(-taken.detach()).clamp(min=-1e4)
        soft_slots.append(torch.softmax(masked, dim=-1))
        taken = taken + hard[:, j]
    soft = torch.stack(soft_slots, dim=1)
    return hard + (soft - soft.detach()), idx
