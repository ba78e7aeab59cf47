"""Trainer callbacks: gradient norms and histograms per layer in TensorBoard.

Histograms of gradients are where training problems show first, but TensorBoard's
`add_histogram` raises on empty or non-finite tensors and a zero-variance tensor draws
nothing useful; such gradients are skipped (and counted) instead of crashing the run.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Sequence

from transformers import TrainerCallback

from korag.util.log import time_estimate

log = logging.getLogger(__name__)


class TimeEstimateCallback(TrainerCallback):
    """Log how long training will take once the first steps have run (the first step includes
    set-up, so the estimate counts from the second)."""

    def __init__(self, after: int = 3) -> None:
        self.after = after
        self.t0: float | None = None
        self.first: int | None = None

    def on_step_end(self, args, state, control, **kwargs):
        if self.t0 is None:
            self.t0, self.first = time.perf_counter(), state.global_step
        elif state.global_step - self.first == self.after:
            done = state.global_step - self.first
            total = state.max_steps - self.first
            log.info(
                "training: %s (plus held-out evaluation every %s steps)",
                time_estimate(done, total, time.perf_counter() - self.t0),
                args.eval_steps if args.eval_strategy != "no" else "–",
            )


def select_parameters(model, patterns: Sequence[str]) -> list[tuple[str, object]]:
    """Trainable parameters whose names match any regex in `patterns`."""
    compiled = [re.compile(p) for p in patterns]
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad and any(c.search(n) for c in compiled)]


class GradientStatsCallback(TrainerCallback):
    """Log the total and per-layer gradient norm, and histograms for chosen layers."""

    def __init__(
        self,
        writer,
        *,
        histogram_patterns: Sequence[str] = (r"encoder\.layer\.(0|5|11)\.",),
        every: int = 10,
        histogram_every: int = 50,
    ) -> None:
        self.writer = writer
        self.patterns = list(histogram_patterns)
        self.every = max(1, every)
        self.histogram_every = max(1, histogram_every)
        self.skipped = 0

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        import torch

        step = state.global_step + 1
        if model is None or step % self.every:
            return
        layer_sq: dict[str, float] = {}
        for name, p in model.named_parameters():
            if p.grad is None:
                continue
            layer = _layer_of(name)
            layer_sq[layer] = layer_sq.get(layer, 0.0) + float(p.grad.detach().float().pow(2).sum())
        for layer, sq in layer_sq.items():
            if math.isfinite(sq):
                self.writer.add_scalar(f"grad_norm/{layer}", math.sqrt(sq), step)
        if step % self.histogram_every:
            return
        for name, p in select_parameters(model, self.patterns):
            g = p.grad
            if g is None or g.numel() < 2:
                self.skipped += 1
                continue
            g = g.detach().float()
            if not bool(torch.isfinite(g).all()) or float(g.std()) == 0.0:
                self.skipped += 1
                continue
            self.writer.add_histogram(f"grad/{name}", g.cpu().numpy(), step)
        self.writer.add_scalar("grad_hist/skipped", self.skipped, step)
        self.writer.flush()


def _layer_of(name: str) -> str:
    m = re.search(r"(encoder\.layer\.\d+)", name)
    if m:
        return m.group(1)
    return "embeddings" if "embeddings" in name else name.rsplit(".", 1)[0]
