"""What each device runs best with, as plain data: the table :mod:`coordfit.core.device`
applies (its docstring has the table and docs/performance.md the measurements); and
where the files coordfit ships (:func:`asset_path`) are found.

This module imports nothing heavy, so the CLI can state these defaults in its help
without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

__all__ = ["DeviceName", "Precision", "PRECISIONS", "DeviceDefaults", "DEFAULTS", "DEFAULT_STEPS",
           "RESUME_SETTINGS", "METRICS_SAMPLE", "asset_path"]

DEFAULT_STEPS = 2000  # steps of a run that names neither steps nor a time budget (with the device's budget)
# What a resume may change besides its limits (steps, time budget, target), for every trainer
# whose config has the field: where and how it trains, not what it computes. A resume also
# chooses its logger and progress display.
RESUME_SETTINGS = ("device", "threads", "compile", "checkpoint_every", "workers")
# Points a fit's final metrics are computed on, at most, unless asked for all (--exact-metrics):
# an evenly spread sample of a larger image (rows) or clip (frames), stated in metrics.json.
METRICS_SAMPLE = 1 << 20

DeviceName = Literal["auto", "cpu", "cuda", "mps"]
Precision = Literal["auto", "fp32", "tf32", "bf16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)


@dataclass(frozen=True)
class DeviceDefaults:
    """What a fit uses on a device when the user does not say."""

    batch: int  # points per step (split models: the sub-grid; the whole grid when it fits)
    precision: str  # what --precision auto means
    threads: int | None  # torch intra-op threads (None: leave torch's own setting)
    first_run_seconds: float  # time budget when neither --steps nor --time-budget is given


DEFAULTS: dict[str, DeviceDefaults] = {
    # 2 shared cores: one thread ran fits 2-6x faster than two under load, and in 20 s fits
    # 4,096 points per step beat 16,384 by 1.6-3.9 dB for every model (docs/performance.md).
    "cpu": DeviceDefaults(batch=1 << 12, precision="fp32", threads=1, first_run_seconds=20.0),
    # H100: 2^18 points per step move 5.5x the samples/s of 2^14 (SIREN); TF32 stays opt-in
    # until its PSNR cost on sine networks is measured (docs/performance.md).
    "cuda": DeviceDefaults(batch=1 << 18, precision="fp32", threads=None, first_run_seconds=30.0),
    "mps": DeviceDefaults(batch=1 << 16, precision="fp32", threads=None, first_run_seconds=20.0),
}


def asset_path(*parts: str) -> Path:
    """A file shipped in the repository's top-level ``assets/``: installed as
    ``coordfit/assets/`` by a wheel, read from the source tree by an editable install."""
    here = Path(__file__).resolve().parents[1]  # the coordfit package
    installed = here.joinpath("assets", *parts)
    return installed if installed.exists() else here.parent.joinpath("assets", *parts)
