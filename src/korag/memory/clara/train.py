"""The three CLaRa training stages in one loop: resumable, logged to TensorBoard, device chosen at
run time.

A plain PyTorch loop rather than the transformers `Trainer`: every step calls a different model
method per stage on structured records (documents, question lists, candidate sets), which a
`Trainer` would need a custom collator, a custom `compute_loss` and a custom save for; what it
would add (checkpoints, schedules, logging) is a few lines here. `accelerate` handles devices.

| stage | trains | loss |
|---|---|---|
| 1 compression pre-training | encoder + decoder adapters, memory rows | QA lines from one compressed document + λ·MSE |
| 2 instruction tuning | encoder + decoder adapters, memory rows | answer from k compressed documents + λ·MSE |
| 3 end to end | decoder + query-reasoner adapters | answer from the straight-through top-k of candidates |
"""

from __future__ import annotations

import math
import random
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from korag import atomic
from korag.errors import ConfigError
from korag.memory.clara.data import ClaraExample
from korag.memory.clara.model import ClaraConfig, ClaraModel
from korag.memory.clara.store import build_clara, load_clara, load_trained_state, save_clara, trained_state

TRAINS = {1: ("encoder", "decoder"), 2: ("encoder", "decoder"), 3: ("decoder", "query_reasoner")}


class ClaraTrainConfig(BaseModel):
    """Settings of one CLaRa training stage."""

    model_config = ConfigDict(extra="forbid")

    base: str = Field(description="base causal LM: a directory, a .gguf file or 'gemma3-270m'")
    stage: Literal[1, 2, 3] = 1
    init_from: str | None = Field(None, description="the previous stage's CLaRa directory")
    clara: ClaraConfig = ClaraConfig()
    learning_rate: float | None = Field(None, gt=0, description="default 1e-4 (stages 1, 2), 5e-6 (stage 3)")
    epochs: float = Field(1.0, gt=0)
    max_steps: int = -1
    batch_size: int = Field(4, gt=0)
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    max_grad_norm: float = Field(1.0, gt=0)
    save_steps: int = Field(100, gt=0)
    logging_steps: int = Field(10, gt=0)
    seed: int = 42
    device: str = "auto"
    stage3_trains: list[Literal["decoder", "query_reasoner"]] = Field(
        default_factory=lambda: ["decoder", "query_reasoner"],
        description="stage 3: adapters that learn (only the query reasoner isolates retrieval learning)",
    )
    query_init: Literal["encoder", "fresh"] = Field(
        "encoder", description="stage 3: start the query reasoner as a copy of the compressor (ml-clara) or fresh"
    )

    def lr(self) -> float:
        """The learning rate actually used (ml-clara's defaults per stage)."""
        return self.learning_rate or (5e-6 if self.stage == 3 else 1e-4)


def resolve_device(device: str) -> str:
    """'auto' → the accelerator if there is one, else the CPU (nothing assumes CUDA)."""
    if device != "auto":
        return device
    from accelerate import Accelerator

    return str(Accelerator(cpu=not torch.cuda.is_available()).device)


def _batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    order = list(range(n))
    random.Random(seed + epoch).shuffle(order)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def _step_loss(model: ClaraModel, stage: int, batch: Sequence[ClaraExample]) -> tuple[torch.Tensor, dict[str, float]]:
    if stage == 1:
        return model.stage1_loss(
            [e.docs[0] for e in batch],
            [e.questions for e in batch],
            [e.answers for e in batch],
            [e.kind for e in batch],
        )
    questions = [e.questions[0] for e in batch]
    answers = [e.answers[0] for e in batch]
    docs = [list(e.docs) for e in batch]
    if stage == 2:
        return model.stage2_loss(questions, docs, answers)
    loss, idx = model.stage3_loss(questions, docs, answers, model.config.top_k)
    hit = [bool(set(e.positives) & {int(idx[i, 0])}) for i, e in enumerate(batch)]
    return loss, {"ce": loss.item(), "recall@1": sum(hit) / len(hit)}


def _latest_checkpoint(output: Path) -> Path | None:
    ckpts = sorted((output / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    return ckpts[-1] if ckpts else None


def train_clara(
    examples: Sequence[ClaraExample],
    config: ClaraTrainConfig,
    output: str | Path,
    *,
    resume: bool = True,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Train one stage; writes ``model/`` (a CLaRa directory), ``checkpoints/``, ``tensorboard/``
    and ``training.json`` under `output`. Returns the run record."""
    from torch.utils.tensorboard import SummaryWriter
    from transformers import get_cosine_schedule_with_warmup

    from korag.training.fit import check_resumable

    if not examples:
        raise ConfigError("no training records")
    if config.stage == 3 and any(not e.positives for e in examples):
        raise ConfigError("stage 3 records need pos_index (the gold documents among the candidates)")
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    last = _latest_checkpoint(out) if resume else None
    check_resumable(out, config, last.name if last else None)  # type: ignore[arg-type]
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    if config.init_from:
        model, info = load_clara(config.init_from, device=device)
        model.config = config.clara.model_copy(
            update={"doc_max_length": model.config.doc_max_length, "compression_rate": model.config.compression_rate}
        )
        if config.stage == 3 and info.get("stage") != 3 and config.query_init == "encoder":
            _copy_adapter(model, "encoder", "query_reasoner")  # as ml-clara: the query side starts as the compressor
    else:
        model = build_clara(config.base, config.clara, device=device)
    model.trainable = set(config.stage3_trains if config.stage == 3 else TRAINS[config.stage])
    if not model.trainable:
        raise ConfigError("stage 3 needs at least one adapter to train")
    model.use("decoder")
    params = [p for n, p in model.lm.named_parameters() if "lora_" in n and any(f".{a}." in n for a in model.trainable)]
    params.append(model.lm.get_input_embeddings().weight)
    optimizer = torch.optim.AdamW(params, lr=config.lr(), betas=(0.9, 0.95), weight_decay=0.0)
    per_epoch = math.ceil(len(examples) / config.batch_size)
    total = config.max_steps if config.max_steps > 0 else math.ceil(per_epoch * config.epochs)
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(config.warmup_ratio * total), total)
    step = 0
    if last is not None:
        ck = torch.load(last / "trainer.pt", map_location="cpu", weights_only=False)
        load_trained_state(model, torch.load(last / "state.pt", map_location="cpu"))
        optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        step = ck["step"]
        torch.set_rng_state(ck["rng"])
    writer = SummaryWriter(str(out / "tensorboard"))
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    bar = tqdm(total=total, initial=step, desc=f"CLaRa stage {config.stage}", unit="step", disable=not show_progress)
    model.lm.train()
    while step < total:
        epoch, pos = divmod(step, per_epoch)
        batch = [examples[i] for i in _batches(len(examples), config.batch_size, config.seed, epoch)[pos]]
        loss, parts = _step_loss(model, config.stage, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        step += 1
        record = {"step": step, "loss": loss.item(), "lr": scheduler.get_last_lr()[0], **parts}
        history.append(record)
        for k, v in record.items():
            if k != "step":
                writer.add_scalar(f"train/{k}", v, step)
        bar.update(1)
        if step % config.logging_steps == 0:
            bar.set_postfix(loss=f"{record['loss']:.3f}")
        if step % config.save_steps == 0 and step < total:
            _checkpoint(model, optimizer, scheduler, step, out)
    bar.close()
    writer.close()
    seconds = time.perf_counter() - t0
    save_clara(model, out / "model", base=config.base, extra={"stage": config.stage, "steps": step})
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    result = {
        "stage": config.stage,
        "steps": step,
        "examples": len(examples),
        "seconds": seconds,
        "device": device,
        "first_loss": history[0]["loss"] if history else None,
        "last_loss": history[-1]["loss"] if history else None,
        "history": history,
    }
    atomic.write_json(out / "training.json", result)
    return result


def _copy_adapter(model: ClaraModel, source: str, target: str) -> None:
    params = dict(model.lm.named_parameters())
    with torch.no_grad():
        for name, p in params.items():
            if f".{target}." in name and "lora_" in name:
                p.copy_(params[name.replace(f".{target}.", f".{source}.")])


def _checkpoint(model: ClaraModel, optimizer, scheduler, step: int, out: Path) -> None:
    with atomic.atomic_directory(out / "checkpoints" / f"step-{step}", overwrite=True) as tmp:
        torch.save(trained_state(model), tmp / "state.pt")
        torch.save(
            {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "step": step,
                "rng": torch.get_rng_state(),
            },
            tmp / "trainer.pt",
        )
    for old in sorted((out / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))[:-2]:
        shutil.rmtree(old, ignore_errors=True)
