"""Where and in what precision models run: chosen at run time, never assumed.

``auto`` picks the accelerator when there is one (CUDA, else the CPU); bfloat16 is used under
``precision='auto'`` only where the hardware computes it natively (CUDA with bf16, or a CPU with
AVX512-BF16 / AMX), because emulated bf16 is slower than float32. ``KORAG_BF16=0`` turns the
automatic choice off, which reproduces the float32 path of CPUs without bf16 on any machine
(results differ between the two paths by rounding, and training trajectories drift apart).

Under a launcher (``accelerate launch``, ``torchrun``) each process is one rank: `process_rank`
and `is_main_process` read the launcher's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``),
so they answer before any process group exists and without importing PyTorch, and
`resolve_device` gives each rank its own GPU (``cuda:LOCAL_RANK``).
"""

from __future__ import annotations

import contextlib
import os

from korag.errors import ConfigError


def process_rank() -> tuple[int, int]:
    """(this process's global rank, number of processes) as the launcher set them; (0, 1) alone."""
    return int(os.environ.get("RANK", "0")), max(1, int(os.environ.get("WORLD_SIZE", "1")))


def is_main_process() -> bool:
    """Whether this process writes a run's outputs (rank 0, or the only process)."""
    return process_rank()[0] == 0


def resolve_device(device: str) -> str:
    """'auto' → the accelerator if there is one, else the CPU (nothing assumes CUDA). Under a
    launcher, 'auto' and a bare 'cuda' become this rank's GPU (``cuda:LOCAL_RANK``)."""
    if device not in ("auto", "cuda"):
        return device
    import torch

    if torch.cuda.is_available():
        local = os.environ.get("LOCAL_RANK")
        # several ranks on one machine must not share GPU 0
        return f"cuda:{int(local)}" if local is not None and process_rank()[1] > 1 else "cuda"
    if device == "cuda":
        return device
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def wants_bf16(precision: str, device: str = "cpu") -> bool:
    """Whether to compute in bfloat16: asked for, or ``auto`` on hardware that has it natively."""
    if precision not in ("auto", "fp32", "bf16"):
        raise ConfigError(f"precision must be auto, fp32 or bf16 (got {precision!r})")
    return precision == "bf16" or (precision == "auto" and bf16_supported(device))


def mixed_precision(precision: str, device: str = "cpu") -> str:
    """accelerate's ``mixed_precision`` for `precision` on `device`: ``bf16`` or ``no`` (fp16 is
    never chosen: it needs loss scaling, and bf16 hardware is what the defaults target)."""
    return "bf16" if wants_bf16(precision, device) else "no"


def bf16_autocast(enabled: bool, device: str = "cpu"):
    """bfloat16 autocast on `device` when `enabled`, else a no-op context."""
    import torch

    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16)


def bf16_supported(device: str = "cpu") -> bool:
    """Whether bfloat16 arithmetic is native on `device` (so autocast speeds it up)."""
    import torch

    if device.startswith("cuda"):
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if os.environ.get("KORAG_BF16", "").strip() in ("0", "false", "no"):
        return False
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, c, lambda: False)()) for c in checks)
