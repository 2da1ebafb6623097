"""The trainers' configs: :class:`TrainConfig` (the fitting loop) and :class:`NVSTrainConfig`
(the view-synthesis trainer), each a :class:`~coordfit.core.registry.Config`.

Each field's comment is its help: the CLI makes one flag per field from them
(``cli/_flags.config_flags``), so a field is declared once and every field is reachable.
This module imports no torch, so ``coordfit ... --help`` can state the defaults a command
will really use (the device's, the preset's) without loading it.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from ..core.checks import check_device_name
from ..core.defaults import DEFAULT_STEPS, DEFAULTS, PRECISIONS
from ..core.errors import CoordfitError
from ..core.registry import Config
from .loggers import LOGGERS

if TYPE_CHECKING:
    import torch

__all__ = ["TrainConfig", "NVSTrainConfig", "RESUME_LIMITS", "check_threads"]

# What a resume is given besides the settings it may change (core.defaults.RESUME_SETTINGS): new limits.
RESUME_LIMITS = ("steps", "time_budget", "target")
DEVICES = ("auto", "cpu", "cuda", "mps")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclass
class TrainConfig(Config):
    """How long and how a fit trains. ``None`` fields take the device's default (:meth:`resolved`)."""

    steps: int | None = None  # maximum training steps (on --resume: the new total)
    time_budget: float | None = None  # stop after this many seconds of training (on --resume: seconds more)
    target: float | None = None  # stop once the training-batch quality (PSNR dB, IoU) reaches this
    lr: float | None = None  # Adam learning rate (default: the model's, see coordfit models)
    grid_batch: int | None = None  # split models: points per step in the sampled sub-grid
    batch_points: int | None = None  # unsplit models: random points per step
    log_every: int = 25  # steps between log.csv rows
    checkpoint_every: int = 500  # steps between checkpoints (0: only at the end and on Ctrl-C)
    seed: int = 0  # random seed of the model's initial weights and of the sampler
    device: str = "auto"  # auto (CUDA, then MPS, then the CPU), cpu, cuda or mps
    precision: str = "auto"  # auto (the device's), fp32, tf32 (TF32 matmuls on CUDA, fp32 elsewhere) or bf16 (autocast)
    compile: bool = False  # torch.compile the model (eager, with one warning, where it cannot)
    threads: int | None = None  # torch CPU threads
    logger: str = "none"  # none or tensorboard (also writes the log rows to <run>/tensorboard/; log.csv and curves.png are always written)

    def validate(self) -> None:
        """Refuse impossible settings with one line (non-finite numbers included)."""
        for name in ("time_budget", "target", "lr"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int | float) and math.isfinite(value)):
                raise CoordfitError(f"{_flag(name)} must be a finite number, got {value}")
        for name in ("steps", "time_budget", "lr", "grid_batch", "batch_points", "threads"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise CoordfitError(f"{_flag(name)} must be positive, got {value}")
        if self.log_every <= 0:
            raise CoordfitError(f"--log-every must be positive, got {self.log_every}")
        if self.checkpoint_every < 0:
            raise CoordfitError(f"--checkpoint-every must be >= 0, got {self.checkpoint_every}")
        if self.precision not in PRECISIONS:
            raise CoordfitError(f"--precision must be one of {', '.join(PRECISIONS)}, got '{self.precision}'")
        if self.logger not in LOGGERS:
            raise CoordfitError(f"--logger must be one of {', '.join(LOGGERS)}, got '{self.logger}'")
        check_device_name(self.device)  # a name coordfit knows, without torch
        if self.device not in ("auto", "cpu"):  # is it there? (auto and cpu always are; no torch needed)
            from ..core.device import resolve_device

            resolve_device(self.device)

    def resolved(self, device: torch.device | str | None = None) -> TrainConfig:
        """A copy with every default filled in for ``device`` (a device or its type, ``"cpu"``;
        default: :attr:`device` resolved): see :data:`coordfit.core.defaults.DEFAULTS`.

        Neither ``steps`` nor ``time_budget``: :data:`DEFAULT_STEPS` steps or the device's
        first-run budget, whichever comes first. Needs no torch when given a device type.
        """
        if device is None:
            from ..core.device import resolve_device

            device = resolve_device(self.device)
        d = DEFAULTS.get(getattr(device, "type", device), DEFAULTS["cpu"])
        steps, budget = self.steps, self.time_budget
        if steps is None and budget is None:
            steps, budget = DEFAULT_STEPS, d.first_run_seconds
        precision = d.precision if self.precision == "auto" else self.precision
        return replace(self, steps=steps, time_budget=budget, grid_batch=self.grid_batch or d.batch,
                       batch_points=self.batch_points or d.batch, precision=precision,
                       threads=self.threads or d.threads)

    @classmethod
    def from_dict(cls, data: Any, owner: str | None = None) -> TrainConfig:
        """Read saved settings (``config.json["train"]``) by type, validated; older runs'
        ``target_psnr`` is ``target``."""
        if isinstance(data, dict) and "target_psnr" in data:
            data = {k: v for k, v in data.items() if k != "target_psnr"} | {"target": data.get("target", data["target_psnr"])}
        return super().from_dict(data, owner or "training")

    def changed(self) -> dict[str, Any]:
        """The fields that differ from their defaults (what a caller chose)."""
        default = TrainConfig()
        return {k: v for k, v in asdict(self).items() if v != getattr(default, k)}


@dataclass
class NVSTrainConfig(Config):
    """Everything a view-synthesis training run depends on; saved as config.json in the run folder.

    ``from_dict`` refuses unknown keys (and reads ``input_views: [min, max]`` of runs
    written before the two fields), ``validate()`` checks every field once, each fault in
    one line."""

    model: str = "efficient-lvsm"
    """the view-synthesis model: lvsm or efficient-lvsm"""
    model_config: dict[str, Any] = field(default_factory=dict)
    """the model's options that differ from its defaults"""
    scenes: str | None = None
    """folder of scene JSON files to train on (none: fresh procedural scenes)"""
    size: int = 32
    """procedural scenes: image height and width in pixels"""
    input_views_min: int = 2
    """fewest input views per sample (the count is drawn per batch)"""
    input_views_max: int = 4
    """most input views per sample"""
    target_views: int = 2
    """target views per sample"""
    normalize_poses: bool = False
    """re-express poses in the mean input camera's frame (useful for real captures)"""
    steps: int = 2000
    """total optimiser steps (on --resume: the new total)"""
    batch_size: int = 8
    """samples per step, per process"""
    lr: float = 1e-3
    """peak learning rate (AdamW: linear warm-up, then cosine decay)"""
    warmup: int = 100
    """linear warm-up steps (at most the steps)"""
    min_lr_ratio: float = 0.05
    """floor of the cosine decay, as a fraction of the learning rate"""
    weight_decay: float = 0.05
    """AdamW weight decay"""
    grad_clip: float = 1.0
    """gradient norm clip"""
    ssim_weight: float = 0.0
    """loss = MSE + this x (1 - Gaussian SSIM)"""
    seed: int = 0
    """seeds the initial weights and the training scenes"""
    checkpoint_every: int = 250
    """steps between checkpoints (one is also saved at the end and on Ctrl-C)"""
    log_every: int = 10
    """steps between log.csv rows (and loss readings)"""
    device: str = "auto"
    """auto (CUDA, then MPS, then the CPU), cpu, cuda or mps"""
    workers: int | None = None
    """threads rendering batches ahead of the step; 0: in the training thread (default: half the cores up to 4 for procedural scenes, 0 for --scenes)"""
    logger: Literal["none", "tensorboard"] = "none"
    """none or tensorboard (also writes the log rows to <run>/tensorboard/; log.csv and curves.png are always written)"""

    @property
    def input_views(self) -> tuple[int, int]:
        """``(fewest, most)`` input views per sample."""
        return self.input_views_min, self.input_views_max

    @classmethod
    def from_dict(cls, data: Any, owner: str | None = None) -> NVSTrainConfig:
        if isinstance(data, dict) and "input_views" in data:  # runs written before the two fields
            views = data["input_views"]
            if not (isinstance(views, list | tuple) and len(views) == 2):
                raise CoordfitError(f"input views must be a range [min, max], got {views!r}")
            data = {k: v for k, v in data.items() if k != "input_views"}
            data |= {"input_views_min": views[0], "input_views_max": views[1]}
        if not isinstance(data, dict):
            raise CoordfitError(f"a training config must be a JSON object, got {type(data).__name__}")
        return super().from_dict(data, owner or "training")

    def validate(self) -> None:
        """Check every field's type and range, and the model options; one line on the first fault."""
        super().validate()
        from ..nvs.layers import NVSConfig
        from ..nvs.registry import list_models

        if self.model not in list_models():
            raise CoordfitError(f"unknown view-synthesis model {self.model!r}; choose from {', '.join(list_models())}")
        for name, low in (("steps", 1), ("batch_size", 1), ("warmup", 0), ("size", 4), ("target_views", 1),
                          ("seed", 0), ("checkpoint_every", 1), ("log_every", 1)):
            _check_int(name, getattr(self, name), low)
        if self.workers is not None:
            _check_int("workers", self.workers, 0)
        for name, positive in (("lr", True), ("grad_clip", True), ("weight_decay", False), ("ssim_weight", False),
                               ("min_lr_ratio", False)):
            _check_float(name, getattr(self, name), positive)
        if self.min_lr_ratio > 1:
            raise CoordfitError(f"--min-lr-ratio must be at most 1, got {self.min_lr_ratio}")
        low, high = self.input_views
        if not (_is_int(low) and _is_int(high) and 1 <= low <= high):
            raise CoordfitError(f"input views must be a range 1 <= min <= max, got {low!r}, {high!r}")
        if self.scenes is not None and not isinstance(self.scenes, str):
            raise CoordfitError(f"scenes must be a folder name, got {self.scenes!r}")
        if not isinstance(self.normalize_poses, bool):
            raise CoordfitError(f"normalize_poses must be true or false, got {self.normalize_poses!r}")
        if self.device not in DEVICES and not (isinstance(self.device, str) and re.fullmatch(r"cuda:\d+", self.device)):
            raise CoordfitError(f"unknown device {self.device!r} (choose auto, cpu, cuda or mps)")
        if not isinstance(self.model_config, dict):
            raise CoordfitError(f"model options must be a JSON object, got {self.model_config!r}")
        NVSConfig.from_dict(self.model_config)  # refuses unknown keys and values of the wrong type, validates


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(name: str, value: Any, low: int) -> None:
    if not _is_int(value) or value < low:
        what = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise CoordfitError(f"{_flag(name)} must be {what}, got {value!r}")


def _check_float(name: str, value: Any, positive: bool) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):
        what = "a finite number > 0" if positive else "a finite number >= 0"
        raise CoordfitError(f"{_flag(name)} must be {what}, got {value!r}")


def check_threads(threads: int | None) -> None:
    """One line unless ``threads`` is None (the device's default) or a positive integer."""
    if threads is not None:
        _check_int("threads", threads, 1)
