"""The three CLaRa training stages in one loop: resumable, logged to TensorBoard, device chosen at
run time.

The loop itself is the memory models' shared one (`korag.memory.loop`).

| stage | trains | loss |
|---|---|---|
| 1 compression pre-training | encoder + decoder adapters, memory rows | QA lines from one compressed document + λ·MSE |
| 2 instruction tuning | encoder + decoder adapters, memory rows | answer from k compressed documents + λ·MSE |
| 3 end to end | decoder + query-reasoner adapters | answer from the straight-through top-k of candidates |
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from korag import atomic
from korag.errors import ConfigError
from korag.memory.clara.config import ClaraTrainConfig
from korag.memory.clara.data import ClaraExample
from korag.memory.clara.model import ClaraModel
from korag.memory.clara.store import build_clara, load_clara, load_trained_state, save_clara, trained_state
from korag.memory.loop import run_loop
from korag.models.device import is_main_process, resolve_device
from korag.models.lora import lora_parameters, named_lora_parameters

__all__ = ["ClaraTrainConfig", "train_clara"]

TRAINS = {1: ("encoder", "decoder"), 2: ("encoder", "decoder"), 3: ("decoder", "query_reasoner")}


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


def train_clara(
    examples: Sequence[ClaraExample],
    config: ClaraTrainConfig,
    output: str | Path,
    *,
    resume: bool = True,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Train one stage; writes ``model/`` (a CLaRa directory), ``checkpoints/``, ``tensorboard/``
    and ``training.json`` under `output`. Returns the run record. Runs unchanged under
    ``accelerate launch`` / ``torchrun`` (`korag.memory.loop`); only the main process writes."""
    if not examples:
        raise ConfigError("no training records")
    if config.stage == 3 and any(not e.positives for e in examples):
        raise ConfigError("stage 3 records need pos_index (the gold documents among the candidates)")
    out = Path(output)
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
    params = [*lora_parameters(model.lm, model.trainable), model.lm.get_input_embeddings().weight]
    optimizer = torch.optim.AdamW(params, lr=config.lr(), betas=(0.9, 0.95), weight_decay=0.0)
    model.lm.train()
    loop = run_loop(
        len(examples),
        lambda batch: _step_loss(model, config.stage, [examples[i] for i in batch]),
        [optimizer],
        config,
        out,
        save_state=lambda: trained_state(model),
        load_state=lambda state: load_trained_state(model, state),
        config=config,
        resume=resume,
        desc=f"CLaRa stage {config.stage}",
        show_progress=show_progress,
        clip=params,
        device=device,
    )
    result = {
        "stage": config.stage,
        "steps": loop.steps,
        "examples": len(examples),
        "seconds": loop.seconds,
        "device": device,
        "processes": loop.processes,
        "first_loss": loop.first_loss,
        "last_loss": loop.last_loss,
        "history": loop.history,
    }
    if not is_main_process():
        return result
    save_clara(model, out / "model", base=config.base, extra={"stage": config.stage, "steps": loop.steps})
    atomic.write_json(out / "training.json", result)
    return result


def _copy_adapter(model: ClaraModel, source: str, target: str) -> None:
    weights = {name: p for _, name, p in named_lora_parameters(model.lm, [source])}
    with torch.no_grad():
        for _, name, p in named_lora_parameters(model.lm, [target]):
            p.copy_(weights[name.replace(f".{target}.", f".{source}.")])
