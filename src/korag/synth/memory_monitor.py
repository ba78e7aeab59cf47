"""Peak memory per stage (loading, generating): CPU resident memory sampled by a thread (psutil;
the process' lifetime peak from ``resource`` when psutil is missing) and GPU memory from
``torch.cuda.max_memory_allocated`` when CUDA is in use. Logged at INFO when a stage ends and
kept in `MemoryMonitor.peaks` (generators copy it into their stats)."""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Iterator

log = logging.getLogger(__name__)

MiB = 1024 * 1024


def rss_bytes() -> int:
    """This process' resident memory now (its lifetime peak when psutil is not installed)."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        import resource

        # ru_maxrss is in KiB on Linux, bytes on macOS
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)


def available_bytes(device: str = "cpu") -> int:
    """Memory free for new tensors on `device`: CUDA's free memory, else the system's available."""
    if device.startswith("cuda"):
        import torch

        index = torch.device(device).index
        return int(torch.cuda.mem_get_info(index if index is not None else torch.cuda.current_device())[0])
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        import os

        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def _cuda_in_use() -> bool:
    # never import torch for this: an HTTP-only run has no reason to load it
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized())


class MemoryMonitor:
    """Context managers per named stage recording peak CPU RSS and peak GPU allocation (MiB)."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peaks: dict[str, dict[str, float]] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Measure the enclosed block as stage `name` (repeated stages keep the highest peak)."""
        peak = [rss_bytes()]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(self.interval):
                peak[0] = max(peak[0], rss_bytes())

        sampler = threading.Thread(target=sample, daemon=True, name=f"memory-{name}")
        sampler.start()
        gpu = _cuda_in_use()
        if gpu:
            import torch

            for i in range(torch.cuda.device_count()):
                torch.cuda.reset_peak_memory_stats(i)
        try:
            yield
        finally:
            stop.set()
            sampler.join()
            peak[0] = max(peak[0], rss_bytes())
            got = {"cpu_rss_mib": peak[0] / MiB}
            if gpu or _cuda_in_use():
                import torch

                got["gpu_mib"] = sum(torch.cuda.max_memory_allocated(i) for i in range(torch.cuda.device_count())) / MiB
            self._record(name, got)

    def _record(self, name: str, got: dict[str, float]) -> None:
        with self._lock:
            old = self.peaks.get(name, {})
            self.peaks[name] = {k: max(v, old.get(k, 0.0)) for k, v in got.items()}
        gpu = f", peak GPU {got['gpu_mib']:.0f} MiB" if "gpu_mib" in got else ""
        log.info("memory %s: peak CPU RSS %.0f MiB%s", name, got["cpu_rss_mib"], gpu)
