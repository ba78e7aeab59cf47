"""Where and in what precision models run: chosen at run time, never assumed.

``auto`` picks the accelerator when there is one (CUDA, else the CPU); bfloat16 is used under
``precision='auto'`` only where the hardware computes it natively (CUDA with bf16, or a CPU with
AVX512-BF16 / AMX), because emulated bf16 is slower than float32. ``KORAG_BF16=0`` turns the
automatic choice off, which reproduces the float32 path of CPUs without bf16 on any machine
(results differ between the two paths by rounding, and training trajectories drift apart).
"""

from __future__ import annotations

import contextlib
import os

from korag.errors import ConfigError


def resolve_device(device: str) -> str:
    """'auto' → the accelerator if there is one, else the CPU (nothing assumes CUDA)."""
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def wants_bf16(precision: str, device: str = "cpu") -> bool:
    """Whether to compute in bfloat16: asked for, or ``auto`` on hardware that has it natively."""
    if precision not in ("auto", "fp32", "bf16"):
        raise ConfigError(f"precision must be auto, fp32 or bf16 (got {precision!r})")
    return precision == "bf16" or (precision == "auto" and bf16_supported(device))


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
