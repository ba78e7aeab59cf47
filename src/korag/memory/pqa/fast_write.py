"""Fast write: a new document's memory in a few optimisation steps from a learned initialisation,
instead of a full write phase.

The initialiser is amortised inference: a ridge regression, fitted on the written pool, from a
document's features — the frozen LM's mean last-layer state over its tokens, which needs no
model beyond the LM itself — to its written memory. A new document starts from that prediction
and takes `steps` Adam steps on its own reconstruction loss (LM and projection frozen). Closed-form
ridge is enough here and has no training loop of its own; the fit is a d×d solve.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from korag.memory.pqa.model import ParametricQA


@torch.no_grad()
def document_features(model: ParametricQA, docs: Sequence[str], *, batch_size: int = 8) -> torch.Tensor:
    """Mean last-layer state of the frozen LM over each document's tokens (docs × hidden)."""
    out = []
    width = model.config.max_doc_tokens
    with model.adapters_off():
        for s in range(0, len(docs), batch_size):
            rows = [r[:width] for r in model.encode(docs[s : s + batch_size])]
            ids, mask = model.left_pad([r or [model.tokenizer.eos_token_id] for r in rows])
            hidden = model.hidden_states(input_ids=ids, attention_mask=mask, position_ids=model.positions(mask))
            m = mask.unsqueeze(-1).to(hidden.dtype)
            out.append(((hidden * m).sum(1) / m.sum(1).clamp(min=1)).float().cpu())
    return torch.cat(out)


class FastWriteInit:
    """Ridge regression from document features to flattened memories."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> None:
        self.weight, self.bias, self.mean, self.scale = weight, bias, mean, scale

    @classmethod
    def fit(cls, features: torch.Tensor, memory: torch.Tensor, *, ridge: float = 1.0) -> FastWriteInit:
        """Fit on `features` (N × d) and the written `memory` (N × m × z_dim)."""
        x = features.float()
        mean, scale = x.mean(0), x.std(0).clamp(min=1e-6)
        x = (x - mean) / scale
        y = memory.detach().float().cpu().reshape(len(x), -1)
        bias = y.mean(0)
        eye = torch.eye(x.shape[1])
        weight = torch.linalg.solve(x.T @ x + ridge * len(x) * eye, x.T @ (y - bias))
        return cls(weight, bias, mean, scale)

    def predict(self, features: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
        """Initial memories (N × m × z_dim) for documents with `features`."""
        x = (features.float() - self.mean) / self.scale
        return (x @ self.weight + self.bias).reshape(len(x), *shape)

    def state_dict(self) -> dict[str, Any]:
        """Tensors to save."""
        return {"weight": self.weight, "bias": self.bias, "mean": self.mean, "scale": self.scale}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> FastWriteInit:
        """Rebuild from `state_dict`."""
        return cls(state["weight"], state["bias"], state["mean"], state["scale"])


def fast_write(
    model: ParametricQA,
    docs: Sequence[str],
    *,
    init: FastWriteInit | None = None,
    steps: int = 20,
    lr: float = 5e-2,
    seed: int = 0,
) -> tuple[torch.Tensor, dict[str, list[float]]]:
    """Memories for new `docs` after `steps` Adam steps from `init`'s prediction (random when
    None). Returns (memories, {"nll": per-step mean NLL}); the pool is not changed (see
    `ParametricQA.append_memory`)."""
    shape = (model.config.m_tokens, model.config.z_dim)
    if init is not None:
        z0 = init.predict(document_features(model, docs), shape)
    else:
        g = torch.Generator().manual_seed(seed)
        z0 = torch.randn(len(docs), *shape, generator=g) * model.config.z_init_std
    z = torch.nn.Parameter(z0.to(model.device))
    opt = torch.optim.Adam([z], lr=lr)
    history = []
    frozen = [p for p in model.projection.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        for _ in range(steps):
            loss, parts = model.write_loss(docs, z)
            opt.zero_grad()
            loss.backward()
            opt.step()
            history.append(parts["nll"])
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return z.detach(), {"nll": history}
