"""One training loop for every memory model (CLaRa's three stages, parametric QA's write and read
phases, the xRAG projector): shuffled batches of record indices, one or several optimizers with
cosine schedules, gradient clipping, TensorBoard, checkpoints and resumption — on one device or
many, through `accelerate`.

A plain PyTorch loop rather than the transformers `Trainer`: every step calls a different model
method on structured records (documents, question lists, candidate sets, memory rows), which a
`Trainer` would need a custom collator, a custom `compute_loss` and a custom save for; what it
would add (checkpoints, schedules, logging) is a few lines here.

Distribution. The same code runs alone, under ``accelerate launch`` and under ``torchrun``:

- ``batch_size`` is the *global* batch: every process takes a contiguous share of each batch
  (the batches themselves are a fixed shuffle per seed and epoch, so they do not depend on the
  process count), and splits its share into ``gradient_accumulation_steps`` passes.
- The parameters the optimizers train are gathered in a small module (`_Trained`) that
  `Accelerator.prepare` wraps in DistributedDataParallel; its forward is the step function, so
  DDP's gradient averaging covers whatever model methods the step calls. Parameters that a
  ``SparseAdam`` trains (parametric QA's memory pool) sit in an ``Embedding`` shell so DDP
  reduces their sparse gradients as sparse ones.
- Each pass's loss is weighted by its share of the global batch, so the update equals the
  one-process update for losses that are means over records (up to summation order); the
  logged loss is the global batch's.
- Checkpoints are `Accelerator.save_state` directories (optimizers, schedules, RNG per rank)
  with the model's trained tensors as ``state.safetensors`` (only what training changes, not
  the frozen base) and the step in ``loop.json``. They carry nothing that depends on the
  process count, so a run may resume on a different number of processes (ranks without a saved
  RNG state keep their seeded one).
- Only the main process writes TensorBoard, checkpoints' shared files and run outputs.
- Mixed precision is chosen at run time: bf16 autocast where the hardware has it, else none.
"""

from __future__ import annotations

import json
import logging
import math
import os
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
from korag.models.device import mixed_precision
from korag.models.tensors import load_state as load_tensors
from korag.models.tensors import save_state as save_tensors
from korag.util.log import time_estimate
from korag.util.resume import check_resumable

log = logging.getLogger(__name__)

STATE_FILE = "state.safetensors"
STEP_FILE = "loop.json"


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The batches of record indices of one epoch (a fixed shuffle per seed and epoch, so a
    resumed run sees the same batches)."""
    order = list(range(n))
    random.Random(seed + epoch).shuffle(order)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def share_of(batch: Sequence[int], rank: int, world: int) -> list[int]:
    """Process `rank`'s contiguous share of a global batch (sizes differ by at most one)."""
    n = len(batch)
    return list(batch[rank * n // world : (rank + 1) * n // world])


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
    processes: int = 1

    @property
    def first_loss(self) -> float | None:
        """Loss of the first step this run executed."""
        return self.history[0]["loss"] if self.history else None

    @property
    def last_loss(self) -> float | None:
        """Loss of the last step."""
        return self.history[-1]["loss"] if self.history else None


class _Trained(torch.nn.Module):
    """The trained parameters as one module whose forward is the step function, so that
    `Accelerator.prepare` can wrap it in DDP whatever model methods the step calls."""

    def __init__(
        self,
        dense: Sequence[torch.nn.Parameter],
        sparse: Sequence[torch.nn.Parameter],
        step_loss: Callable[[list[int]], tuple[torch.Tensor, dict[str, float]]],
    ) -> None:
        super().__init__()
        self.dense = torch.nn.ParameterList(dense)
        self.sparse = torch.nn.ModuleList()
        for p in sparse:
            # DDP decides per parameter whether its gradient is sparse by looking for a sparse
            # Embedding that owns it; the shell holds the very same Parameter (no copy)
            shell = torch.nn.Embedding(1, 1, sparse=True)
            del shell.weight
            shell.weight = p
            self.sparse.append(shell)
        self._step_loss = [step_loss]  # a list: not a submodule, not part of the state

    def forward(self, batch: list[int]) -> tuple[torch.Tensor, dict[str, float]]:
        return self._step_loss[0](batch)


def _trained_parameters(optimizers: Sequence[torch.optim.Optimizer]) -> tuple[list, list]:
    """(dense, sparse) parameters of the optimizers, each once; a SparseAdam's are the sparse ones."""
    seen: set[int] = set()
    dense, sparse = [], []
    for o in optimizers:
        for group in o.param_groups:
            for p in group["params"]:
                if id(p) in seen or not p.requires_grad:
                    continue
                seen.add(id(p))
                (sparse if isinstance(o, torch.optim.SparseAdam) else dense).append(p)
    return dense, sparse


def make_accelerator(settings: LoopSettings, device: str):
    """An `Accelerator` for this loop: DDP that tolerates parameters a step leaves unused (a
    stage trains some adapters, a batch may hold no two-hop record), schedules stepped once per
    optimiser step, mixed precision chosen for `device`.

    Within one process several loops may ask for different precisions (tests, a warm-up then a
    main phase); accelerate keeps one global state, so a single process resets it — a launched
    group cannot change it and says so."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import DistributedDataParallelKwargs

    kwargs: dict[str, Any] = {
        "cpu": device == "cpu",
        "mixed_precision": mixed_precision(settings.precision, device),
        "gradient_accumulation_steps": settings.gradient_accumulation_steps,
        "step_scheduler_with_optimizer": False,
        "kwargs_handlers": [DistributedDataParallelKwargs(find_unused_parameters=True)],
    }
    try:
        return Accelerator(**kwargs)
    except ValueError as exc:
        if "already been initialized" not in str(exc) or int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ConfigError(f"cannot set up this training loop: {exc}") from exc
        AcceleratorState._reset_state()
        return Accelerator(**kwargs)


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
    device: str | None = None,
) -> LoopResult:
    """Train: `step_loss(record indices)` → (loss, logged parts), backward, clip `clip`, step every
    optimizer and its cosine schedule. Checkpoints every `save_steps` under ``output/checkpoints``;
    a rerun continues from the newest one (on any number of processes), refusing when `config`
    changed (see `check_resumable`). TensorBoard logs go to ``output/tensorboard`` from the main
    process, where `on_step(step, writer)` may log more.

    `step_loss` must be a mean over its records for the distributed update to equal the
    one-process one. `device` is where the trained parameters live (by default that of the first
    one); it selects CPU-only set-up and the mixed precision."""
    if n_records < 1:
        raise ConfigError("no training records")
    dense, sparse = _trained_parameters(optimizers)
    if not dense and not sparse:
        raise ConfigError("nothing to train: every optimised parameter is frozen")
    accelerator = make_accelerator(settings, device or str((dense or sparse)[0].device))
    world, main = accelerator.num_processes, accelerator.is_main_process
    last = _agree_on_start(accelerator, output, config, resume)
    per_epoch = math.ceil(n_records / settings.batch_size)
    total = settings.max_steps if settings.max_steps > 0 else math.ceil(per_epoch * settings.epochs)
    trained = _Trained(dense, sparse, step_loss)
    module, optimizers, schedulers = _prepare(accelerator, trained, optimizers, settings, total)
    progress = {"step": 0}
    _register_state_hooks(accelerator, save_state, load_state, progress)
    if last is not None:
        accelerator.load_state(str(last))
        log.info("%s: continuing from %s (step %d) on %d process(es)", desc, last.name, progress["step"], world)
    if world > 1:
        log.info(
            "%s: %d processes, global batch %d, %d pass(es) each",
            desc, world, settings.batch_size, settings.gradient_accumulation_steps,
        )  # fmt: skip
    step = first = progress["step"]
    writer = _writer(output) if main else None
    t0, t1 = time.perf_counter(), 0.0
    history: list[dict[str, float]] = []
    bar = tqdm(total=total, initial=step, desc=desc, unit="step", disable=not (show_progress and main))
    for o in optimizers:
        o.zero_grad(set_to_none=True)
    while step < total:
        epoch, pos = divmod(step, per_epoch)
        batch = epoch_batches(n_records, settings.batch_size, settings.seed, epoch)[pos]
        mine = share_of(batch, accelerator.process_index, world)
        loss, parts = _step(accelerator, module, batch, mine, settings.gradient_accumulation_steps)
        _optimise(accelerator, optimizers, schedulers, clip, settings.max_grad_norm)
        step += 1
        if step - first == 1:
            t1 = time.perf_counter()  # the first step includes set-up: the estimate counts from the second
        elif step - first == 4 and main:
            log.info("%s: %s", desc, time_estimate(3, total - first, time.perf_counter() - t1))
        record = {"step": step, "loss": loss, "lr": schedulers[0].get_last_lr()[0], **parts}
        history.append(record)
        _log(record, writer, on_step, bar, settings.logging_steps)
        if step % settings.save_steps == 0 and step < total:
            progress["step"] = step
            _checkpoint(accelerator, output, step)
    bar.close()
    _finish(accelerator, writer, output)
    return LoopResult(step, time.perf_counter() - t0, history, world)


def _prepare(
    accelerator: Any,
    module: torch.nn.Module,
    optimizers: Sequence[torch.optim.Optimizer],
    settings: LoopSettings,
    total: int,
) -> tuple[Any, list, list]:
    """The trained module, the optimizers and their cosine schedules (warm-up a share of `total`)
    handed to `accelerator`; parameters stay where the caller put them."""
    from transformers import get_cosine_schedule_with_warmup

    schedulers = [get_cosine_schedule_with_warmup(o, int(settings.warmup_ratio * total), total) for o in optimizers]
    prepared = accelerator.prepare_model(module, device_placement=False)
    opts = [accelerator.prepare_optimizer(o, device_placement=False) for o in optimizers]
    return prepared, opts, [accelerator.prepare_scheduler(s) for s in schedulers]


def _finish(accelerator: Any, writer: Any, output: Path) -> None:
    """Close the TensorBoard writer; once every process is done, the main one removes the
    checkpoints (a finished run has nothing to resume) while the others wait."""
    if writer is not None:
        writer.close()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(output / "checkpoints", ignore_errors=True)
    accelerator.wait_for_everyone()


def _writer(output: Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(output / "tensorboard"))


def _optimise(accelerator, optimizers, schedulers, clip: Sequence[torch.nn.Parameter], max_norm: float) -> None:
    """Clip the (already averaged) dense gradients of `clip`, step every optimizer and its
    schedule, clear the gradients."""
    if clip:
        accelerator.clip_grad_norm_([p for p in clip if p.grad is not None and not p.grad.is_sparse], max_norm)
    for o, sch in zip(optimizers, schedulers, strict=True):
        o.step()
        sch.step()
    for o in optimizers:
        o.zero_grad(set_to_none=True)


def _log(record: dict[str, float], writer, on_step, bar, every: int) -> None:
    """A step's figures to TensorBoard (main process) and the progress bar."""
    step = int(record["step"])
    if writer is not None:
        for k, v in record.items():
            if k != "step":
                writer.add_scalar(f"train/{k}", v, step)
        if on_step is not None:
            on_step(step, writer)
    bar.update(1)
    if step % every == 0:
        bar.set_postfix(loss=f"{record['loss']:.3f}")


def _agree_on_start(accelerator, output: Path, config: BaseModel, resume: bool) -> Path | None:
    """The checkpoint every process starts from: the main process finds it and checks the settings
    (it alone writes ``run_config.json`` and removes stale checkpoints), then tells the others —
    a refusal included, so that no rank waits for a peer that stopped."""
    from accelerate.utils import broadcast_object_list

    answer: list[Any] = [None, None]
    if accelerator.is_main_process:
        try:
            output.mkdir(parents=True, exist_ok=True)
            last = latest_checkpoint(output) if resume else None
            check_resumable(output, config, last.name if last else None)
            answer = [str(last) if last else None, None]
        except ConfigError as exc:
            answer = [None, str(exc)]
    if accelerator.num_processes > 1:
        broadcast_object_list(answer, from_process=0)
    if answer[1] is not None:
        raise ConfigError(answer[1])
    return Path(answer[0]) if answer[0] else None


def _step(accelerator, module, batch: list[int], mine: list[int], accum: int) -> tuple[float, dict[str, float]]:
    """Forward and backward of this process's share of one global batch in `accum` passes; returns
    the global batch's loss and logged parts.

    Every process runs exactly `accum` passes (an empty pass runs on one borrowed record with
    weight 0), so DDP's collective calls pair up even when the last batch of an epoch is short.
    A pass's loss is scaled by its share of the global batch times processes × passes: DDP
    averages over processes and `Accelerator.backward` divides by the passes."""
    world = accelerator.num_processes
    loss_sum = torch.zeros((), dtype=torch.float64)
    parts_sum: dict[str, float] = {}
    for j in range(accum):
        records = share_of(mine, j, accum)
        weight = len(records) / len(batch)
        with accelerator.accumulate(module), accelerator.autocast():
            loss, parts = module(records or batch[:1])
            accelerator.backward(loss * (weight * world * accum))
        loss_sum += float(loss.detach()) * weight
        for k, v in parts.items():
            parts_sum[k] = parts_sum.get(k, 0.0) + float(v) * weight
    if world == 1:
        return float(loss_sum), parts_sum
    from accelerate.utils import gather_object

    total = accelerator.reduce(loss_sum.to(accelerator.device), reduction="sum")
    merged: dict[str, float] = {}
    # parts may differ in keys between processes (a share without two-hop records has no bridge loss)
    for theirs in gather_object([parts_sum]):
        for k, v in theirs.items():
            merged[k] = merged.get(k, 0.0) + v
    return float(total), merged


def _register_state_hooks(accelerator, save_state, load_state, progress: dict[str, int]) -> None:
    """Checkpoint the model through `save_state`/`load_state` (trained tensors only, safetensors)
    and the step as JSON, instead of accelerate's whole-module weights (the wrapper's parameters
    are the model's; the frozen base is never written)."""

    def on_save(models, weights, output_dir) -> None:
        weights.clear()
        if accelerator.is_main_process:
            save_tensors(save_state(), Path(output_dir) / STATE_FILE)
            atomic.write_json(Path(output_dir) / STEP_FILE, {"step": progress["step"]})

    def on_load(models, input_dir) -> None:
        models.clear()
        load_state(load_tensors(Path(input_dir) / STATE_FILE))
        progress["step"] = int(json.loads((Path(input_dir) / STEP_FILE).read_text(encoding="utf-8"))["step"])

    accelerator.register_save_state_pre_hook(on_save)
    accelerator.register_load_state_pre_hook(on_load)


def _checkpoint(accelerator, out: Path, step: int) -> None:
    """``checkpoints/step-N``, published whole: every process writes into a temporary sibling, the
    main process renames it into place and keeps the newest two."""
    root = out / "checkpoints"
    tmp = root / f".step-{step}.tmp"
    final = root / f"step-{step}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in sorted(root.glob("step-*"), key=lambda p: int(p.name.split("-")[1]))[:-2]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
