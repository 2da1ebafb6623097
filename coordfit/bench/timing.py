"""The one timing protocol every coordfit benchmark uses.

* warm-up calls first (allocator, kernels, lazy init), not measured;
* :func:`coordfit.core.device.synchronize` before starting and before stopping the clock, so
  queued GPU work is counted;
* several repeats, reported as median with min and max;
* models that are compared are measured in the same process, their repeats
  interleaved (A, B, C, A, B, C, ...), so that drift in machine load hits all alike;
  ratios are only ever formed between such side-by-side measurements.

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` after a reset; on Linux CPUs the
process's resident-set high-water mark (``VmHWM``), reset through
``/proc/self/clear_refs`` before the measured work, minus the resident set before it,
with freed heap pages returned to the OS first (``malloc_trim``) so the work's
temporaries show up. Either way it is the working memory of the call (activations,
temporaries) above what was resident before it (weights, gradients, optimiser state).

Training at equal time: :func:`train_interleaved` gives each trainer slices of training
seconds in turn, by the trainer's own clock, so load drift hits every model alike.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..core.device import synchronize

__all__ = ["Stat", "time_call", "time_interleaved", "train_interleaved", "PeakMemory", "machine_info"]


@dataclass
class Stat:
    """Seconds per call over ``repeats`` measured calls."""

    median: float
    min: float
    max: float
    repeats: int

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _stat(samples: list[float]) -> Stat:
    return Stat(statistics.median(samples), min(samples), max(samples), len(samples))


def time_interleaved(
    fns: dict[str, Callable[[], Any]],
    device: torch.device | str = "cpu",
    warmup: int = 1,
    repeats: int = 5,
) -> dict[str, Stat]:
    """Time each zero-argument callable, repeats interleaved across them; ``{name: Stat}``."""
    device = torch.device(device)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            synchronize(device)
            t0 = time.perf_counter()
            fn()
            synchronize(device)
            samples[name].append(time.perf_counter() - t0)
    return {name: _stat(s) for name, s in samples.items()}


def train_interleaved(
    trainers: Mapping[str, Any],
    stops: Iterable[float],
    after: Callable[[str, Any], None] | None = None,
) -> None:
    """Train each :class:`~coordfit.engine.train.Trainer` up to each of ``stops`` (cumulative
    training seconds, ascending), the trainers taking turns at every stop; ``after(name,
    trainer)`` runs after each turn (outside the training clock). A trainer's time budget
    counts from each ``run()``, so each turn gets what is left to its stop."""
    for stop in stops:
        for name, trainer in trainers.items():
            trainer.config.time_budget = max(stop - trainer.seconds, 0.0)
            trainer.run(progress=False)
            if after is not None:
                after(name, trainer)


def time_call(fn: Callable[[], Any], device: torch.device | str = "cpu", warmup: int = 1, repeats: int = 5) -> Stat:
    """The protocol for a single callable."""
    return time_interleaved({"f": fn}, device, warmup, repeats)["f"]


def _proc_status(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024  # kB -> bytes
    except OSError:
        return None
    return None


def _trim_heap() -> None:
    """Give freed heap pages back to the OS (glibc), so the measured call's working memory
    has to become resident again instead of hiding in memory freed by earlier calls."""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_hwm() -> bool:
    _trim_heap()
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class PeakMemory:
    """``with PeakMemory(device) as m: work()`` then ``m.bytes`` (None when unmeasurable) and ``m.method``."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.bytes: int | None = None
        self.method = "unavailable"

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            self.method = "cuda max_memory_allocated - allocated before"
        elif self.device.type == "cpu" and _reset_hwm():
            self._base = _proc_status("VmRSS")
            self.method = "cpu VmHWM (reset) - VmRSS before" if self._base is not None else "unavailable"
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.method.startswith("cuda"):
            synchronize(self.device)
            self.bytes = int(torch.cuda.max_memory_allocated(self.device) - self._base)
        elif self.method.startswith("cpu"):
            peak = _proc_status("VmHWM")
            self.bytes = None if peak is None else max(0, peak - self._base)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device | str = "cpu") -> dict[str, Any]:
    """What the numbers were measured on: goes into every report."""
    device = torch.device(device)
    info: dict[str, Any] = {
        "host": platform.node(),
        "cpu": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
    }
    try:
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info
