"""One training loop for every memory model (CLaRa's three stages, parametric QA's write and read
phases, the xRAG projector): shuffled batches of record indices, one or several optimizers with
cosine schedules, gradient clipping, TensorBoard, checkpoints and resumption.

A plain PyTorch loop rather than the transformers `Trainer`: every step calls a different model
method on structured records (documents, question lists, candidate sets, memory rows), which a
`Trainer` would need a custom collator, a custom `compute_loss` and a custom save for; what it
would add (checkpoints, schedules, logging) is a few lines here.
"""

from __future__ import annotations

import logging
import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel
from tqdm.auto import tqdm

from korag import atomic
from korag.errors import ConfigError
from korag.memory.config import LoopSettings
from korag.models.tensors import load_state as load_tensors
from korag.models.tensors import save_state as save_tensors
from korag.util.log import time_estimate
from korag.util.resume import check_resumable

log = logging.getLogger(__name__)


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The batches of record indices of one epoch (a fixed shuffle per seed and epoch, so a
    resumed run sees the same batches)."""
    order = list(range(n))
    random.Random(seed + epoch).shuffle(order)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def latest_checkpoint(output: Path) -> Path | None:
    """The newest ``checkpoints/step-N`` under `output`."""
    ckpts = sorted((output / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    return ckpts[-1] if ckpts else None


@dataclass
class LoopResult:
    """What a finished loop did."""

    steps: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def first_loss(self) -> float | None:
        """Loss of the first step this run executed."""
        return self.history[0]["loss"] if self.history else None

    @property
    def last_loss(self) -> float | None:
        """Loss of the last step."""
        return self.history[-1]["loss"] if self.history else None


def run_loop(
    n_records: int,
    step_loss: Callable[[list[int]], tuple[torch.Tensor, dict[str, float]]],
    optimizers: Sequence[torch.optim.Optimizer],
    settings: LoopSettings,
    output: Path,
    *,
    save_state: Callable[[], dict[str, torch.Tensor]],
    load_state: Callable[[dict[str, torch.Tensor]], None],
    config: BaseModel,
    resume: bool = True,
    desc: str = "training",
    show_progress: bool = True,
    clip: Sequence[torch.nn.Parameter] = (),
    on_step: Callable[[int, Any], None] | None = None,
) -> LoopResult:
    """Train: `step_loss(batch indices)` → (loss, logged parts), backward, clip `clip`, step every
    optimizer and its cosine schedule. Checkpoints every `save_steps` (model state from
    `save_state`, optimizers, schedules, step and RNG) under ``output/checkpoints``; a rerun
    continues from the newest one, refusing when `config` changed (see `check_resumable`).
    TensorBoard logs go to ``output/tensorboard``; `on_step(step, writer)` may log more."""
    from torch.utils.tensorboard import SummaryWriter
    from transformers import get_cosine_schedule_with_warmup

    if n_records < 1:
        raise ConfigError("no training records")
    output.mkdir(parents=True, exist_ok=True)
    last = latest_checkpoint(output) if resume else None
    check_resumable(output, config, last.name if last else None)  # type: ignore[arg-type]
    per_epoch = math.ceil(n_records / settings.batch_size)
    total = settings.max_steps if settings.max_steps > 0 else math.ceil(per_epoch * settings.epochs)
    schedulers = [get_cosine_schedule_with_warmup(o, int(settings.warmup_ratio * total), total) for o in optimizers]
    step = _restore(last, load_state, optimizers, schedulers) if last is not None else 0
    first, t1 = step, 0.0
    writer = SummaryWriter(str(output / "tensorboard"))
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    bar = tqdm(total=total, initial=step, desc=desc, unit="step", disable=not show_progress)
    while step < total:
        epoch, pos = divmod(step, per_epoch)
        batch = epoch_batches(n_records, settings.batch_size, settings.seed, epoch)[pos]
        loss, parts = _step(step_loss, batch, optimizers, schedulers, clip, settings.max_grad_norm)
        step += 1
        if step - first == 1:
            t1 = time.perf_counter()  # the first step includes set-up: the estimate counts from the second
        elif step - first == 4:
            log.info("%s: %s", desc, time_estimate(3, total - first, time.perf_counter() - t1))
        record = {"step": step, "loss": loss.item(), "lr": schedulers[0].get_last_lr()[0], **parts}
        history.append(record)
        for k, v in record.items():
            if k != "step":
                writer.add_scalar(f"train/{k}", v, step)
        if on_step is not None:
            on_step(step, writer)
        bar.update(1)
        if step % settings.logging_steps == 0:
            bar.set_postfix(loss=f"{record['loss']:.3f}")
        if step % settings.save_steps == 0 and step < total:
            _checkpoint(save_state(), optimizers, schedulers, step, output)
    bar.close()
    writer.close()
    shutil.rmtree(output / "checkpoints", ignore_errors=True)
    return LoopResult(step, time.perf_counter() - t0, history)


def _step(step_loss, batch, optimizers, schedulers, clip, max_grad_norm: float):
    """One optimisation step: loss, backward, clipping (dense gradients of `clip`), every optimizer
    and its schedule."""
    loss, parts = step_loss(batch)
    for o in optimizers:
        o.zero_grad(set_to_none=True)
    loss.backward()
    if clip:
        torch.nn.utils.clip_grad_norm_([p for p in clip if p.grad is not None and not p.grad.is_sparse], max_grad_norm)
    for o, sch in zip(optimizers, schedulers, strict=True):
        o.step()
        sch.step()
    return loss, parts


def _restore(last: Path, load_state, optimizers, schedulers) -> int:
    """Load a checkpoint's model state, optimizers, schedules and RNG; return its step."""
    # optimizer and schedule state stay in torch's format, read as data only (weights_only)
    ck = torch.load(last / "trainer.pt", map_location="cpu", weights_only=True)
    load_state(load_tensors(last / "state.safetensors"))
    for o, s in zip(optimizers, ck["optimizers"], strict=True):
        o.load_state_dict(s)
    for sch, s in zip(schedulers, ck["schedulers"], strict=True):
        sch.load_state_dict(s)
    torch.set_rng_state(ck["rng"])
    return int(ck["step"])


def _checkpoint(state, optimizers, schedulers, step: int, out: Path) -> None:
    with atomic.atomic_directory(out / "checkpoints" / f"step-{step}", overwrite=True) as tmp:
        save_tensors(state, tmp / "state.safetensors")
        torch.save(
            {
                "optimizers": [o.state_dict() for o in optimizers],
                "schedulers": [s.state_dict() for s in schedulers],
                "step": step,
                "rng": torch.get_rng_state(),
            },
            tmp / "trainer.pt",
        )
    for old in sorted((out / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))[:-2]:
        shutil.rmtree(old, ignore_errors=True)
