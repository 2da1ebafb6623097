"""Device choice: ``auto`` picks CUDA, then MPS, then the CPU."""

from __future__ import annotations

from typing import Literal

import torch

from .errors import CoordfitError

DeviceName = Literal["auto", "cpu", "cuda", "mps"]

__all__ = ["DeviceName", "resolve_device", "synchronize"]


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
