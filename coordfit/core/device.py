"""Devices and what each one runs best with.

``auto`` picks CUDA, then MPS, then the CPU. The defaults that depend on the device live
here, in one table (:data:`DEFAULTS`), and are applied once per fit through
:func:`device_settings` (torch threads, TF32) and :func:`autocast` (bf16):

======  ===================================  =========  =======  ========================
device  points per step                      precision  threads  first-run budget
======  ===================================  =========  =======  ========================
cpu     4,096                                fp32       1        20 s (or 2000 steps)
cuda    the whole grid, up to 262,144 (2^18)  fp32       torch's  30 s (or 2000 steps)
mps     65,536 (not measured)                fp32       torch's  20 s (or 2000 steps)
======  ===================================  =========  =======  ========================

``--precision tf32`` (CUDA) and ``bf16`` are opt-in. docs/performance.md has the
measurements behind each entry and says what is not measured yet.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import torch

from .defaults import DEFAULTS as DEFAULTS
from .defaults import PRECISIONS as PRECISIONS
from .defaults import DeviceDefaults as DeviceDefaults
from .defaults import DeviceName as DeviceName
from .defaults import Precision as Precision
from .errors import CoordfitError

__all__ = [
    "DeviceName",
    "Precision",
    "PRECISIONS",
    "DeviceDefaults",
    "DEFAULTS",
    "device_defaults",
    "resolve_device",
    "synchronize",
    "device_settings",
    "autocast",
    "StepClock",
]


def device_defaults(device: torch.device) -> DeviceDefaults:
    return DEFAULTS.get(device.type, DEFAULTS["cpu"])


def resolve_device(name: str = "auto") -> torch.device:
    name = (name or "auto").lower()
    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps is not None and mps.is_available())
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if mps_ok else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise CoordfitError(f"--device {name}: CUDA is not available on this machine (use --device auto)")
        return torch.device(name)
    if name == "mps":
        if not mps_ok:
            raise CoordfitError("--device mps: MPS is not available on this machine (use --device auto)")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise CoordfitError(f"unknown device '{name}' (choose auto, cpu, cuda or mps)")


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so that wall-clock readings are honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@contextlib.contextmanager
def device_settings(device: torch.device, precision: str, threads: int | None) -> Iterator[None]:
    """Apply the torch thread count and the TF32 switch for the duration of a fit, then restore them.

    ``precision`` is a resolved one (fp32, tf32 or bf16); bf16 also needs :func:`autocast`
    around the forward pass. Both settings are process-wide in torch, hence the restore.
    """
    old_threads = torch.get_num_threads()
    old_tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        if threads:
            torch.set_num_threads(threads)
        if device.type == "cuda":
            tf32 = precision == "tf32"
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old_tf32


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for ``precision == "bf16"``, otherwise nothing."""
    if precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


class StepClock:
    """Seconds of device work without a sync per step (the trainer's clock).

    Time accumulates over segments that start at a synced point (or after I/O) and end at
    a reading, which syncs. Inside a segment, :meth:`mark` times a step: a CUDA event on
    CUDA, the host clock on the CPU (where work is synchronous), a sync elsewhere.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.base = 0.0

    def start(self, base: float) -> None:
        self.base, self.t0 = base, time.perf_counter()
        if self.cuda:
            self.event0 = torch.cuda.Event(enable_timing=True)
            self.event0.record()

    def mark(self) -> Any:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        if self.device.type != "cpu":
            synchronize(self.device)
        return time.perf_counter()

    def estimate(self) -> float:
        """Training seconds by the host clock (never above the truth: the GPU may lag)."""
        return self.base + time.perf_counter() - self.t0

    def stop(self) -> float:
        """Sync; the training seconds at this point."""
        synchronize(self.device)
        return self.base + time.perf_counter() - self.t0

    def seconds_at(self, mark: Any) -> float:
        """Training seconds at ``mark`` (after :meth:`stop`)."""
        if self.cuda:
            return self.base + self.event0.elapsed_time(mark) / 1e3
        return self.base + mark - self.t0
