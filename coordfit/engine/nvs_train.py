"""Training loop for the view-synthesis models, single process or DDP under ``torchrun``.

It runs on the engine's stack, as the fitting loop (:mod:`coordfit.engine.train`) does:
the loggers of :mod:`coordfit.engine.loggers` (``log.csv`` with ``step, seconds, loss,
psnr``, ``curves.png``, TensorBoard with ``logger="tensorboard"``), their log trimming on
a resume, the one progress display (:class:`coordfit.core.progress.Progress`), the one
checkpoint unit (:mod:`coordfit.core.checkpoint`) and the one rule of what a resume may
change (:data:`coordfit.core.defaults.RESUME_SETTINGS`). Run folder (written by rank 0)::

    config.json            NVSTrainConfig, written before the first step
    model.safetensors      weights (+ model.json: model name and config, for load_model)
    optimizer.safetensors  AdamW state      } the checkpoint: present while training can
    train_state.json       step, seconds    } resume, written by _save, read by _load
    log.csv, curves.png    a row per logged step: the mean loss and batch PSNR since the last
    metrics.json           the summary of a finished run (what ``coordfit runs`` lists)

Runs written before log.csv keep ``log.jsonl``; a resume turns its rows into ``log.csv``.
Everything a run depends on is checked before anything is written: a refused command
leaves the folder as it was, and a start that fails before its first checkpoint removes
what it wrote, so the same ``--out`` can be used again.

The step does only the step. Batches are rendered ahead of it in background threads
(:func:`coordfit.nvs.data.batches`); the loss and the MSE stay on the device and are read
at log and checkpoint steps only (one host sync; under DDP the only all-reduce outside
the gradients). A loss that is not finite stops the run before it saves diverged weights.
Ctrl-C (SIGINT) lets the step in flight finish, saves a checkpoint and raises
:class:`coordfit.core.errors.TrainingInterrupted`; under DDP the ranks agree to stop at
the next log step. SIGTERM does the same. A second Ctrl-C interrupts at once, without
saving.

Under ``torchrun --nproc-per-node N`` (``WORLD_SIZE`` > 1 in the environment) each
process joins a process group (NCCL on CUDA, gloo otherwise), wraps the model in
DistributedDataParallel and draws its own batches; nothing else changes.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..core.checkpoint import (clean_stale, find_checkpoint, load_optimizer, load_train_state, save_optimizer,
                               save_train_state, write_checkpoint)
from ..core.defaults import RESUME_SETTINGS
from ..core.device import device_defaults, device_settings, resolve_device
from ..core.errors import CoordfitError, TrainingInterrupted
from ..core.interrupt import StopOnSignal
from ..core.io import atomic_write, new_run_dir, read_json, write_json
from ..core.metrics import gaussian_ssim, psnr_from_mse
from ..core.progress import Progress
from ..nvs.data import ViewSource, batches, default_workers
from ..nvs.layers import NVSConfig
from ..nvs.registry import create_model, load_model, save_model
from ..runs.spec import discard_if_unstarted
from .config import NVSTrainConfig as NVSTrainConfig
from .config import check_threads as check_threads
from .loggers import RunLogger, run_loggers, trim_log

__all__ = ["NVSTrainConfig", "train", "resume", "lr_at", "check_threads"]


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
    *,
    progress: bool | None = None,
    model: torch.nn.Module | None = None,
    threads: int | None = None,
    loggers: Sequence[RunLogger] | None = None,
) -> Path:
    """Train a new model (or fine-tune ``model``, trained in place) and return its run folder.

    ``out`` must be empty or absent (default ``runs/nvs/<model>/<timestamp>/``). The
    warm-up is at most the steps. ``progress`` as for a fit (None: a bar on a terminal, a
    line every few seconds elsewhere; False: nothing). ``threads``: torch threads while
    training (None: the device's default, one on a CPU; see coordfit.core.defaults); not
    part of the run, so a resume may choose again. ``loggers`` replace the run's own
    (``log.csv``, ``curves.png``, ``cfg.logger``'s).
    """
    cfg.validate()
    cfg = replace(cfg, warmup=min(cfg.warmup, cfg.steps))
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
        return _fit(session, run, _Start(), progress, loggers)


def resume(
    run: str | Path,
    *,
    steps: int | None = None,
    progress: bool | None = None,
    threads: int | None = None,
    loggers: Sequence[RunLogger] | None = None,
    **settings: Any,
) -> Path:
    """Continue the run in folder ``run`` from its last checkpoint (to ``steps`` in all, if given).

    ``settings`` may change where and how it goes on (:data:`RESUME_SETTINGS` that
    :class:`NVSTrainConfig` has: device, checkpoint_every, workers; and ``logger``), never
    what it computes. Checks the whole run folder (config, checkpoint, the new step total,
    the device) before it writes anything.
    """
    run = Path(run)
    cfg = _read_config(run)
    saved = cfg.to_dict()
    allowed = [k for k in (*RESUME_SETTINGS, "logger") if hasattr(cfg, k)]
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise CoordfitError(f"a resume cannot change {', '.join(unknown)} (only steps, {', '.join(allowed)})")
    cfg = replace(cfg, **{k: v for k, v in {"steps": steps, **settings}.items() if v is not None})
    cfg.validate()
    check_threads(threads)
    model, opt, start = _load(run, cfg)
    if start.step >= cfg.steps:
        raise CoordfitError(f"{run} already reached {start.step} steps; pass --steps larger than that")
    session = _session(cfg, model, opt.state_dict(), threads)  # the optimiser state follows the weights to the device
    if session.rank == 0:  # every check has passed: now the folder may change
        clean_stale(run)  # temporaries a killed writer left
        _convert_old_log(run, start.step)
        trim_log(run, start.step)  # rows a killed run logged after its last checkpoint
        if cfg.to_dict() != saved:
            write_json(run / "config.json", cfg.to_dict())  # the run folder keeps describing itself
    return _fit(session, run, start, progress, loggers)


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


@dataclass
class _Start:
    """Where a session starts: the checkpoint's step, its training seconds and last loss."""

    step: int = 0
    seconds: float = 0.0
    loss: float = math.nan


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


def _loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], cfg: NVSTrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, MSE)`` of one batch: the MSE (the batch PSNR's) plus the SSIM term when asked for."""
    pred = model(batch["images"], batch["c2w"], batch["fxfycxcy"], batch["target_c2w"], batch["target_fxfycxcy"])
    mse = F.mse_loss(pred, batch["target"])
    if cfg.ssim_weight > 0:
        return mse + cfg.ssim_weight * (1 - gaussian_ssim(pred, batch["target"]).mean()), mse
    return mse, mse


class _Readings:
    """The loss and MSE summed on the device since the last reading, read at once (one host
    sync; one all-reduce with the ranks' stop requests under DDP)."""

    def __init__(self, device: torch.device, world: int) -> None:
        self.sums = torch.zeros(2, device=device)
        self.count, self.world = 0, world

    def add(self, loss: torch.Tensor, mse: torch.Tensor) -> None:
        self.sums += torch.stack([loss.detach(), mse.detach()])
        self.count += 1

    def read(self, stop: bool) -> tuple[float, float, bool]:
        """``(mean loss, mean MSE, whether any rank asked to stop)``; the sums start again."""
        means = self.sums / max(self.count, 1)
        if self.world > 1:
            t = torch.cat([means, torch.tensor([float(stop)], device=means.device)])
            dist.all_reduce(t)
            loss, mse, stops = t.tolist()
            loss, mse, stop = loss / self.world, mse / self.world, stops > 0
        else:
            loss, mse = means.tolist()
        self.sums.zero_()
        self.count = 0
        return loss, mse, stop


def _fit(session: _Session, run: Path, start: _Start, progress: bool | None,
         loggers: Sequence[RunLogger] | None) -> Path:
    """Train from ``start`` to ``cfg.steps``, logging, checkpointing and showing progress on rank 0."""
    cfg, model, is_main = session.cfg, session.model, session.rank == 0
    if not is_main:
        loggers = []
    elif loggers is None:
        loggers = run_loggers(cfg.logger, run, "psnr", "dB", f"{cfg.scenes or 'procedural scenes'}, {cfg.model}")
    for logger in loggers:
        logger.start(start.step)
    bar = Progress(f"train {cfg.model}", steps=cfg.steps, start=start.step, enabled=progress if is_main else False)
    try:
        with bar:
            done, loss, quality, seconds = _loop(session, run, start, loggers, bar)
    finally:
        _close(loggers)
    if session.world > 1:
        dist.barrier()
    if done < cfg.steps:
        raise TrainingInterrupted(done, run)
    if is_main:
        params = sum(p.numel() for p in model.parameters())
        write_json(run / "metrics.json", {"model": cfg.model, "params": params, "steps": done,
                                          "train_seconds": round(seconds, 4), "final_loss": loss,
                                          "final_batch_psnr": quality, "stopped_by": "steps",
                                          "device": str(session.device)})
    return run


def _loop(session: _Session, run: Path, start: _Start, loggers: Sequence[RunLogger],
          bar: Progress) -> tuple[int, float, float, float]:
    """The steps; -> ``(steps done, last loss, last batch PSNR, training seconds)``."""
    cfg, model, opt, device = session.cfg, session.model, session.opt, session.device
    is_main = session.rank == 0
    model.train()
    net: torch.nn.Module = model
    if session.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    workers = default_workers(session.source) if cfg.workers is None else cfg.workers
    readings = _Readings(device, session.world)
    done, loss_value, quality = start.step, start.loss, math.nan
    clock = time.perf_counter() - start.seconds  # training seconds = now - clock (checkpoint I/O excluded)
    stream = batches(session.source, cfg.batch_size, range(start.step, cfg.steps), workers, session.world,
                     session.rank, pin_memory=device.type == "cuda")
    with device_settings(device, "fp32", session.threads), StopOnSignal() as stopping, contextlib.closing(stream):
        for step, batch in zip(range(start.step, cfg.steps), stream):
            for group in opt.param_groups:
                group["lr"] = lr_at(step, cfg)
            readings.add(*_step(net, model, opt, batch, cfg, device))
            done = step + 1
            stop = stopping.requested and session.world == 1
            log = done % cfg.log_every == 0 or done == cfg.steps
            save = done % cfg.checkpoint_every == 0 or done == cfg.steps
            if log or save or stop:  # read the loss: the mean since the last reading
                loss_value, mse, stop = readings.read(stopping.requested)
                if not math.isfinite(loss_value):  # never save diverged weights; keep the last checkpoint
                    raise CoordfitError(f"training diverged: the loss is {loss_value} at step {done} "
                                        f"(try a lower --lr); the last checkpoint in {run} is kept")
                quality = psnr_from_mse(mse)
                for logger in loggers if log else ():
                    logger.log(done, time.perf_counter() - clock, {"loss": loss_value, "psnr": quality,
                                                                    "lr": lr_at(step, cfg)})
            if is_main and (save or stop):
                t = time.perf_counter()
                _save(run, model, opt, cfg, done, loss_value, t - clock, "steps" if done == cfg.steps else "interrupted")
                clock += time.perf_counter() - t
            bar.update(done, time.perf_counter() - clock - start.seconds, loss=loss_value,
                       **({} if math.isnan(quality) else {"psnr": f"{quality:.4g} dB"}))
            if stop:
                break
    return done, loss_value, quality, time.perf_counter() - clock


def _step(net: torch.nn.Module, model: torch.nn.Module, opt: torch.optim.Optimizer, batch: dict[str, torch.Tensor],
          cfg: NVSTrainConfig, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step; -> ``(loss, MSE)`` as 0-dim tensors on the device (no host sync)."""
    loss, mse = _loss(net, {k: v.to(device, non_blocking=True) for k, v in batch.items()}, cfg)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    return loss, mse


def _close(loggers: Sequence[RunLogger]) -> None:
    """Close every logger (curves.png is drawn); one that fails warns and the others still close."""
    for logger in loggers:
        try:
            logger.close()
        except Exception as exc:  # noqa: BLE001 - a report of the run must not lose the run
            warnings.warn(f"{type(logger).__name__}: {exc}", stacklevel=2)


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


def _save(run: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, cfg: NVSTrainConfig, step: int,
          loss: float, seconds: float, stopped_by: str) -> None:
    """Write the checkpoint of ``step``: the one place nvs writes one."""
    state = {"step": step, "seconds": round(seconds, 4), "loss": loss if math.isfinite(loss) else None,
             "finished": step == cfg.steps, "stopped_by": stopped_by}

    def write(folder: Path) -> None:
        save_model(folder / "model.safetensors", model, {"normalize_poses": cfg.normalize_poses, "steps": step})
        save_optimizer(folder / "optimizer.safetensors", opt)
        save_train_state(folder / "train_state.json", state)

    write_checkpoint(run, step, write)  # one unit: a kill or a full disk keeps the previous one


def _load(run: Path, cfg: NVSTrainConfig) -> tuple[torch.nn.Module, torch.optim.Optimizer, _Start]:
    """Read the checkpoint of ``run`` on the CPU: the one place nvs reads one."""
    ckpt = find_checkpoint(run)  # verified: the files of one step, see coordfit.core.checkpoint
    for name in ("model.safetensors", "optimizer.safetensors", "train_state.json"):
        if ckpt is None or not ckpt.has(name):
            raise CoordfitError(f"cannot resume {run}: {name} is missing")
    state = load_train_state(ckpt.path("train_state.json"))  # a whole step >= 0, or one line
    model, info = load_model(ckpt.path("model.safetensors"))
    if info.get("model") != cfg.model:
        raise CoordfitError(f"{run}: the checkpoint holds a '{info.get('model')}' model, config.json says '{cfg.model}'")
    opt = _optimizer(model, cfg)
    load_optimizer(ckpt.path("optimizer.safetensors"), opt)
    loss, seconds = state.get("loss"), state.get("seconds")
    return model, opt, _Start(state["step"], float(seconds) if isinstance(seconds, int | float) else 0.0,
                              float(loss) if isinstance(loss, int | float) else math.nan)


def _read_config(run: Path) -> NVSTrainConfig:
    path = run / "config.json"
    if not path.is_file():
        raise CoordfitError(f"{run} is not a view-synthesis run folder (no config.json)")
    data = read_json(path)  # its own errors name the file
    try:
        return NVSTrainConfig.from_dict(data)
    except CoordfitError as exc:
        raise CoordfitError(f"{path}: {exc}") from None


def _convert_old_log(run: Path, step: int) -> None:
    """A run written before log.csv logged ``log.jsonl``: its whole rows up to ``step`` become
    ``log.csv`` (the batch PSNR was not recorded then: empty), and ``log.jsonl`` goes."""
    old, new = run / "log.jsonl", run / "log.csv"
    if not old.is_file() or new.exists():
        return
    rows = []
    for line in old.read_text().splitlines(keepends=True):
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if line.endswith("\n") and isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= step:
            rows.append([row["step"], f"{row.get('seconds', 0.0):.4f}", f"{row.get('loss', math.nan):.6g}", "nan"])

    def write(p: Path) -> None:
        with p.open("w", newline="") as f:
            csv.writer(f, lineterminator="\n").writerows([["step", "seconds", "loss", "psnr"], *rows])

    atomic_write(new, write)
    old.unlink()
