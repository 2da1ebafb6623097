"""Training loop for the view-synthesis models, single process or DDP under ``torchrun``.

Run folder layout (written by rank 0)::

    config.json            NVSTrainConfig + model config, written before the first step
    model.safetensors      weights (+ model.json: model name and config, for load_model)
    optimizer.safetensors  AdamW state      } the checkpoint: present while training can
    train_state.json       step, last loss  } resume, written by _save, read by _load
    log.jsonl              one line per logged step

Everything a run depends on is checked before anything is written: a refused command
leaves the folder as it was, and a start that fails before its first checkpoint removes
what it wrote, so the same ``--out`` can be used again.

The step does only the step. Batches are rendered ahead of it in background threads
(:func:`coordfit.nvs.data.batches`); the loss stays on the device and is read at log
and checkpoint steps only (the mean since the previous log line; under DDP the only
all-reduce outside the gradients). A loss that is not finite stops the run before it
saves diverged weights. Ctrl-C (SIGINT) lets the step in flight finish, saves a
checkpoint and raises :class:`coordfit.engine.train.TrainingInterrupted`; under DDP the ranks
agree to stop at the next log step. SIGTERM does the same. A second Ctrl-C interrupts
at once, without saving.

Under ``torchrun --nproc-per-node N`` (``WORLD_SIZE`` > 1 in the environment) each
process joins a process group (NCCL on CUDA, gloo otherwise), wraps the model in
DistributedDataParallel and draws its own batches; nothing else changes.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..core.checkpoint import (clean_stale, find_checkpoint, load_optimizer, load_train_state, save_optimizer,
                          save_train_state, write_checkpoint)
from ..core.device import device_defaults, device_settings, resolve_device
from ..core.errors import CoordfitError
from ..core.interrupt import StopOnSignal
from ..core.metrics import gaussian_ssim
from ..core.io import atomic_write, new_run_dir, read_json, write_json
from ..runs.spec import discard_if_unstarted
from ..core.registry import Config
from .train import TrainingInterrupted
from ..nvs.data import ViewSource, batches, default_workers
from ..nvs.layers import NVSConfig
from ..nvs.registry import create_model, list_models, load_model, save_model

__all__ = ["NVSTrainConfig", "ProgressCallback", "train", "resume", "lr_at"]

ProgressCallback = Callable[[int, int, float, float], None]
"""``progress(step, total, seconds, loss)``, on rank 0 only: once before the first step
(once every check has passed and the run folder exists), then after every step. ``step``
done so far of ``total``, ``seconds`` since this process started training, ``loss`` the
last value read (at a log step; NaN before the first). Host numbers only: cheap to call."""

_DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass
class NVSTrainConfig(Config):
    """Everything a training run depends on; saved as config.json in the run folder.

    A :class:`coordfit.core.registry.Config` like every other config: ``from_dict`` refuses
    unknown keys, ``validate()`` checks every field once, each fault in one line."""

    model: str = "efficient-lvsm"
    """Registered model name (lvsm | efficient-lvsm)."""
    model_config: dict[str, Any] = field(default_factory=dict)
    """Fields of NVSConfig that differ from its defaults."""
    scenes: str | None = None
    """Folder of scene JSON files; None trains on fresh procedural scenes."""
    size: int = 32
    """Procedural image size."""
    input_views: tuple[int, int] = (2, 4)
    """Input views per sample, drawn per batch from this range."""
    target_views: int = 2
    """Target views per sample."""
    normalize_poses: bool = False
    """Re-express poses in the mean input camera frame (useful for real captures)."""
    steps: int = 2000
    """Total optimiser steps."""
    batch_size: int = 8
    """Samples per step per process."""
    lr: float = 1e-3
    """Peak learning rate."""
    warmup: int = 100
    """Linear warm-up steps before the cosine decay."""
    min_lr_ratio: float = 0.05
    """Cosine floor as a fraction of lr."""
    weight_decay: float = 0.05
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """Gradient norm clip."""
    ssim_weight: float = 0.0
    """Loss = MSE + ssim_weight * (1 - SSIM)."""
    seed: int = 0
    """Seeds the initial weights and the training scenes."""
    checkpoint_every: int = 250
    """Steps between checkpoints (one is also saved at the end and on Ctrl-C)."""
    log_every: int = 10
    """Steps between log.jsonl lines (and loss readings)."""
    device: str = "auto"
    """auto | cpu | cuda | mps."""
    workers: int | None = None
    """Threads rendering batches ahead of the step; 0 renders in the training thread;
    None: coordfit.nvs.data.default_workers."""

    @classmethod
    def from_dict(cls, data: Any, owner: str | None = None) -> NVSTrainConfig:  # type: ignore[override]
        """Build and :meth:`validate` a config from its JSON form (config.json); unknown keys
        are refused. Values are taken as saved, not read from text: a wrong type is refused."""
        if not isinstance(data, dict):
            raise CoordfitError(f"a training config must be a JSON object, got {type(data).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise CoordfitError(f"unknown training options {unknown}; known: {known}")
        data = dict(data)
        if isinstance(data.get("input_views"), list):
            data["input_views"] = tuple(data["input_views"])
        cfg = cls(**data)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Check every field's type and range, and the model options; one line on the first fault."""
        super().validate()
        if self.model not in list_models():
            raise CoordfitError(f"unknown view-synthesis model {self.model!r}; choose from {', '.join(list_models())}")
        for name, low in (("steps", 1), ("batch_size", 1), ("warmup", 0), ("size", 4), ("target_views", 1),
                          ("seed", 0), ("checkpoint_every", 1), ("log_every", 1)):
            _check_int(name, getattr(self, name), low)
        if self.workers is not None:
            _check_int("workers", self.workers, 0)
        for name, positive in (("lr", True), ("grad_clip", True), ("weight_decay", False), ("ssim_weight", False)):
            _check_float(name, getattr(self, name), positive)
        _check_float("min_lr_ratio", self.min_lr_ratio, positive=False)
        if self.min_lr_ratio > 1:
            raise CoordfitError(f"--min-lr-ratio must be at most 1, got {self.min_lr_ratio}")
        views = self.input_views
        if not (isinstance(views, tuple) and len(views) == 2 and all(_is_int(v) for v in views)
                and 1 <= views[0] <= views[1]):
            raise CoordfitError(f"input views must be a range 1 <= min <= max, got {views!r}")
        if self.scenes is not None and not isinstance(self.scenes, str):
            raise CoordfitError(f"scenes must be a folder name, got {self.scenes!r}")
        if not isinstance(self.normalize_poses, bool):
            raise CoordfitError(f"normalize_poses must be true or false, got {self.normalize_poses!r}")
        if self.device not in _DEVICES and not (isinstance(self.device, str) and re.fullmatch(r"cuda:\d+", self.device)):
            raise CoordfitError(f"unknown device {self.device!r} (choose auto, cpu, cuda or mps)")
        if not isinstance(self.model_config, dict):
            raise CoordfitError(f"model options must be a JSON object, got {self.model_config!r}")
        NVSConfig.from_dict(self.model_config)  # refuses unknown keys and values of the wrong type, validates


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(name: str, value: Any, low: int) -> None:
    if not _is_int(value) or value < low:
        what = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise CoordfitError(f"--{name.replace('_', '-')} must be {what}, got {value!r}")


def check_threads(threads: int | None) -> None:
    """One line unless ``threads`` is None (the device's default) or a positive integer."""
    if threads is not None:
        _check_int("threads", threads, 1)


def _check_float(name: str, value: Any, positive: bool) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):
        what = "a finite number > 0" if positive else "a finite number >= 0"
        raise CoordfitError(f"--{name.replace('_', '-')} must be {what}, got {value!r}")


def lr_at(step: int, cfg: NVSTrainConfig) -> float:
    """Linear warm-up to ``lr``, then cosine decay to ``min_lr_ratio * lr``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    floor = cfg.min_lr_ratio
    return cfg.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def train(
    cfg: NVSTrainConfig,
    out: str | Path | None = None,
    progress: ProgressCallback | None = None,
    model: torch.nn.Module | None = None,
    threads: int | None = None,
) -> Path:
    """Train a new model (or fine-tune ``model``, trained in place) and return its run folder.

    ``out`` must be empty or absent (default ``runs/nvs/<model>/<timestamp>/``). ``threads``:
    torch threads while training (None: the device's default, one on a CPU; see
    coordfit.core.device.DEFAULTS); not part of the run, so a resume may choose again.
    """
    cfg.validate()
    check_threads(threads)
    if model is None:
        torch.manual_seed(cfg.seed)  # same config, same initial weights
        model = create_model(cfg.model, NVSConfig.from_dict(cfg.model_config))
    elif getattr(model, "name", None) != cfg.model:
        raise CoordfitError(f"cfg.model is '{cfg.model}' but the model given is '{getattr(model, 'name', '?')}'")
    session = _session(cfg, model, threads=threads)
    user_folder = out is not None and Path(out).exists()
    run = _make_run_dir(cfg, out, session.rank == 0, session.world)
    with discard_if_unstarted(run if session.rank == 0 else None, keep_folder=user_folder):  # --out stays reusable
        return _fit(session, run, 0, progress)


def resume(
    run: str | Path,
    steps: int | None = None,
    device: str | None = None,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
    threads: int | None = None,
) -> Path:
    """Continue the run in folder ``run`` from its last checkpoint (optionally to more ``steps``).

    Checks the whole run folder (config, checkpoint, the new step total, the device)
    before it writes anything.
    """
    run = Path(run)
    cfg = _read_config(run)
    saved = cfg.to_dict()
    if steps is not None:
        cfg.steps = steps
    if device is not None:
        cfg.device = device
    if workers is not None:
        cfg.workers = workers
    cfg.validate()
    check_threads(threads)
    model, opt, start, loss = _load(run, cfg)
    if start >= cfg.steps:
        raise CoordfitError(f"{run} already reached {start} steps; pass --steps larger than that")
    session = _session(cfg, model, opt.state_dict(), threads)  # the optimiser state follows the weights to the device
    if session.rank == 0:  # every check has passed: now the folder may change
        clean_stale(run)  # temporaries a killed writer left
        _trim_log(run, start)  # lines a killed run logged after its last checkpoint
        if cfg.to_dict() != saved:
            write_json(run / "config.json", cfg.to_dict())  # the run folder keeps describing itself
    return _fit(session, run, start, progress, loss)


@dataclass
class _Session:
    """What the loop works on, every check passed."""

    cfg: NVSTrainConfig
    model: torch.nn.Module  # on ``device``
    opt: torch.optim.Optimizer
    source: ViewSource
    device: torch.device
    rank: int
    world: int
    threads: int | None  # torch threads while training (None: leave torch's setting)


def _session(
    cfg: NVSTrainConfig, model: torch.nn.Module, opt_state: dict | None = None, threads: int | None = None
) -> _Session:
    """Load the data (checked against the model: image size vs patch and QuadTree grid),
    resolve the device and its thread default, join the process group under torchrun,
    build the optimiser."""
    source = ViewSource(cfg.scenes, cfg.size, cfg.input_views, cfg.target_views, cfg.seed, cfg.normalize_poses)
    model.cfg.check_image(*source.image_size)
    rank, world, device = _dist_init(resolve_device(cfg.device))
    source.check_range(cfg.steps * world, cfg.batch_size)
    model.to(device)
    threads = threads or device_defaults(device).threads
    return _Session(cfg, model, _optimizer(model, cfg, opt_state), source, device, rank, world, threads)


def _optimizer(model: torch.nn.Module, cfg: NVSTrainConfig, state: dict | None = None) -> torch.optim.Optimizer:
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    if state is not None:
        opt.load_state_dict(state)
    return opt


def _dist_init(device: torch.device) -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def _loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], cfg: NVSTrainConfig) -> torch.Tensor:
    pred = model(batch["images"], batch["c2w"], batch["fxfycxcy"], batch["target_c2w"], batch["target_fxfycxcy"])
    loss = F.mse_loss(pred, batch["target"])
    if cfg.ssim_weight > 0:
        loss = loss + cfg.ssim_weight * (1 - gaussian_ssim(pred, batch["target"]).mean())
    return loss


def _fit(
    session: _Session, run: Path, start: int, progress: ProgressCallback | None, loss_value: float = math.nan
) -> Path:
    cfg, model, opt, device, rank, world = (session.cfg, session.model, session.opt, session.device,
                                            session.rank, session.world)
    is_main = rank == 0
    model.train()
    net: torch.nn.Module = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    workers = default_workers(session.source) if cfg.workers is None else cfg.workers
    loss_sum, count = torch.zeros((), device=device), 0
    done = start
    t0 = time.perf_counter()
    if is_main and progress is not None:
        progress(start, cfg.steps, 0.0, loss_value)
    stream = batches(session.source, cfg.batch_size, range(start, cfg.steps), workers, world, rank,
                     pin_memory=device.type == "cuda")
    with (device_settings(device, "fp32", session.threads), StopOnSignal() as stopping,
          contextlib.closing(stream)):
        for step, batch in zip(range(start, cfg.steps), stream):
            for group in opt.param_groups:
                group["lr"] = lr_at(step, cfg)
            loss = _loss(net, {k: v.to(device, non_blocking=True) for k, v in batch.items()}, cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            loss_sum += loss.detach()
            count += 1
            done = step + 1
            stop = stopping.requested and world == 1
            log = done % cfg.log_every == 0 or done == cfg.steps
            save = done % cfg.checkpoint_every == 0 or done == cfg.steps
            if log or save or stop:  # read the loss: the mean since the last log line
                loss_value, stop = _read_loss(loss_sum, count, stopping.requested, world)
                if not math.isfinite(loss_value):  # never save diverged weights; keep the last checkpoint
                    raise CoordfitError(f"training diverged: the loss is {loss_value} at step {done} "
                                        f"(try a lower --lr); the last checkpoint in {run} is kept")
                if log:
                    loss_sum.zero_()
                    count = 0
                    if is_main:
                        _append_log(run, {"step": done, "loss": loss_value, "lr": lr_at(step, cfg),
                                          "seconds": round(time.perf_counter() - t0, 2)})
            if is_main and (save or stop):
                _save(run, model, opt, cfg, done, loss_value)
            if is_main and progress is not None:
                progress(done, cfg.steps, time.perf_counter() - t0, loss_value)
            if stop:
                break
    if world > 1:
        dist.barrier()
    if done < cfg.steps:
        raise TrainingInterrupted(done, run)
    return run


def _read_loss(loss_sum: torch.Tensor, count: int, stop: bool, world: int) -> tuple[float, bool]:
    """The mean of the ``count`` losses summed in ``loss_sum`` (over ranks under DDP) and
    whether any rank was asked to stop: the loop's one host sync, one all-reduce under DDP."""
    if world == 1:
        return float(loss_sum) / count, stop
    t = torch.stack([loss_sum / count, torch.tensor(float(stop), device=loss_sum.device)])
    dist.all_reduce(t)
    mean, stops = t.tolist()
    return mean / world, stops > 0


def _make_run_dir(cfg: NVSTrainConfig, out: str | Path | None, is_main: bool, world: int) -> Path:
    """The run folder with config.json written."""
    if world > 1 and out is None:
        raise CoordfitError("under torchrun pass --out so that every process writes the same run folder")
    if is_main:
        run = new_run_dir("nvs", cfg.model, out)
        write_json(run / "config.json", cfg.to_dict())
    else:
        run = Path(out)  # type: ignore[arg-type]
    if world > 1:
        dist.barrier()  # rank 0 has created the folder
    return run


def _save(
    run: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, cfg: NVSTrainConfig, step: int, loss: float
) -> None:
    """Write the checkpoint of ``step``: the one place nvs writes one."""

    def write(folder: Path) -> None:
        save_model(folder / "model.safetensors", model, {"normalize_poses": cfg.normalize_poses, "steps": step})
        save_optimizer(folder / "optimizer.safetensors", opt)
        save_train_state(folder / "train_state.json", {"step": step, "loss": loss if math.isfinite(loss) else None})

    write_checkpoint(run, step, write)  # one unit: a kill or a full disk keeps the previous one


def _load(run: Path, cfg: NVSTrainConfig) -> tuple[torch.nn.Module, torch.optim.Optimizer, int, float]:
    """Read the checkpoint of ``run`` on the CPU: the one place nvs reads one.

    Returns the model, its optimiser with the saved state, the step and the last logged loss."""
    ckpt = find_checkpoint(run)  # verified: the files of one step, see coordfit.core.checkpoint
    for name in ("model.safetensors", "optimizer.safetensors", "train_state.json"):
        if ckpt is None or not ckpt.has(name):
            raise CoordfitError(f"cannot resume {run}: {name} is missing")
    state = load_train_state(ckpt.path("train_state.json"))  # a whole step >= 0, or one line
    loss = state.get("loss")
    model, info = load_model(ckpt.path("model.safetensors"))
    if info.get("model") != cfg.model:
        raise CoordfitError(f"{run}: the checkpoint holds a '{info.get('model')}' model, config.json says '{cfg.model}'")
    opt = _optimizer(model, cfg)
    load_optimizer(ckpt.path("optimizer.safetensors"), opt)
    return model, opt, state["step"], float(loss) if isinstance(loss, int | float) else math.nan


def _read_config(run: Path) -> NVSTrainConfig:
    path = run / "config.json"
    if not path.is_file():
        raise CoordfitError(f"{run} is not a view-synthesis run folder (no config.json)")
    data = read_json(path)  # its own errors name the file
    try:
        return NVSTrainConfig.from_dict(data)
    except CoordfitError as exc:
        raise CoordfitError(f"{path}: {exc}") from None


def _trim_log(run: Path, step: int) -> None:
    """Keep the log.jsonl lines up to ``step`` (the checkpoint a resume starts from): a
    killed run may have logged steps after it, and a torn last line."""
    path = run / "log.jsonl"
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if (logged := _logged_step(line)) is not None and logged <= step]
    if kept != lines:
        atomic_write(path, lambda p: p.write_text("".join(kept)))


def _logged_step(line: str) -> int | None:
    try:
        row = json.loads(line)
    except ValueError:
        return None
    step = row.get("step") if isinstance(row, dict) and line.endswith("\n") else None
    return step if _is_int(step) else None


def _append_log(run: Path, row: dict[str, Any]) -> None:
    with open(run / "log.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
