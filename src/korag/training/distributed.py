"""What the trainers need to run unchanged on several processes, and how to launch them.

korag never starts a distributed system of its own: ``accelerate launch`` or ``torchrun`` start
the processes and set ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; the Hugging Face trainer (dense,
sparse, reranker) and `accelerate` (the memory models' loop) do the communication. This module
holds the few rules that keep a run's *meaning* independent of the process count:

- ``batch_size`` is the global batch: each process takes ``batch_size / processes``
  (`per_device_batch`), so one setting describes one optimisation whatever the launcher;
- contrastive losses see the whole global batch as negatives (`gather_negatives`:
  sentence-transformers' ``gather_across_devices``), so in-batch negatives do not shrink;
- decisions that touch files (resume or start over, remove stale checkpoints) are taken once, on
  the main process, and shared (`decide_on_main`) — a refusal included, so no process is left
  waiting for a peer that stopped.

`launch_command` builds the command lines the tests, the benchmark and docs/scaling.md use.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Literal, TypeVar

from korag.errors import ConfigError, KoragError
from korag.models.device import process_rank

T = TypeVar("T")

Launcher = Literal["torchrun", "accelerate"]


def world_size() -> int:
    """How many processes this run has (1 without a launcher)."""
    return process_rank()[1]


def per_device_batch(batch_size: int) -> int:
    """Each process's share of the global batch `batch_size`."""
    world = world_size()
    if batch_size % world:
        raise ConfigError(f"batch_size {batch_size} is the global batch and must divide evenly over {world} processes")
    return batch_size // world


def gather_negatives() -> bool:
    """Whether in-batch-negative losses should gather candidates from every process."""
    return world_size() > 1


def decide_on_main(decide: Callable[[], T]) -> T:
    """Run `decide` on the main process only and return its answer on every process (a
    `KoragError` it raises is raised everywhere). Alone, or before any process group exists,
    it simply calls `decide`."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return decide()
    box: list[object] = [None, None]
    if dist.get_rank() == 0:
        try:
            box = [decide(), None]
        except KoragError as exc:
            box = [None, exc]
    dist.broadcast_object_list(box, src=0)
    if box[1] is not None:
        raise box[1]  # type: ignore[misc]
    return box[0]  # type: ignore[return-value]


def free_port() -> int:
    """An unused TCP port on this machine (for a launcher's rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch_command(
    target: Sequence[str],
    processes: int,
    *,
    launcher: Launcher = "torchrun",
    port: int | None = None,
    cpu: bool = True,
    module: bool = False,
) -> list[str]:
    """The command that runs `target` (a script and its arguments, or with `module` a module name
    and its arguments) on `processes` processes of this machine, through `launcher`. For CPU-only
    processes run it with `cpu_environment` (no GPU visible: every rank uses the CPU and gloo)."""
    port = port or free_port()
    if launcher == "torchrun":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes)]
        cmd += ["--master_addr", "127.0.0.1", "--master_port", str(port)]
    elif launcher == "accelerate":
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes)]
        cmd += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
        cmd += ["--main_process_port", str(port)]
        # accelerate's --cpu launches one process (several only through mpirun); --multi_gpu starts
        # torchrun's workers, which use the CPU and gloo where no GPU is visible
        # (`cpu_environment` hides them)
        cmd += ["--multi_gpu"] if processes > 1 else (["--cpu"] if cpu else [])
    else:
        raise ConfigError(f"launcher must be torchrun or accelerate (got {launcher!r})")
    return [*cmd, *(["-m"] if module else []), *target]


def cpu_environment(threads: int = 1) -> dict[str, str]:
    """Environment for CPU-only launched processes: no GPU visible, `threads` threads each (2
    processes × all cores each would oversubscribe the machine)."""
    return {
        **os.environ,
        "CUDA_VISIBLE_DEVICES": "",
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
    }
