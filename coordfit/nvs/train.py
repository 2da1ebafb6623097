"""Training loop for the view-synthesis models, single process or DDP under ``torchrun``.

Run folder layout (written by rank 0)::

    config.json            TrainConfig + model config, written before the first step
    model.safetensors      weights (+ model.json: model name and config, for load_model)
    optimizer.safetensors  AdamW state      } present while training can resume
    train_state.json       step, last loss  }
    log.jsonl              one line per logged step

Under ``torchrun --nproc-per-node N`` (``WORLD_SIZE`` > 1 in the environment) each
process joins a process group (NCCL on CUDA, gloo otherwise), wraps the model in
DistributedDataParallel and draws its own batches; nothing else changes.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..checkpoint import (find_checkpoint, load_optimizer, load_train_state, save_optimizer, save_train_state,
                          write_checkpoint)
from ..device import resolve_device
from ..errors import CoordfitError
from ..io import new_run_dir, read_json, write_json
from .data import ViewSource
from .layers import NVSConfig
from .metrics import ssim
from .registry import create_model, load_model, save_model

__all__ = ["TrainConfig", "train", "resume", "lr_at"]


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved as config.json in the run folder."""

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
    batch_size: int = 8
    """Samples per step per process."""
    lr: float = 1e-3
    warmup: int = 100
    """Linear warm-up steps before the cosine decay."""
    min_lr_ratio: float = 0.05
    """Cosine floor as a fraction of lr."""
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    ssim_weight: float = 0.0
    """Loss = MSE + ssim_weight * (1 - SSIM)."""
    seed: int = 0
    checkpoint_every: int = 250
    log_every: int = 10
    device: str = "auto"
    """auto | cpu | cuda | mps."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        cfg = cls(**{k: v for k, v in data.items() if k in known})
        cfg.input_views = tuple(cfg.input_views)  # type: ignore[assignment]
        return cfg


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to ``lr``, then cosine decay to ``min_lr_ratio * lr``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    floor = cfg.min_lr_ratio
    return cfg.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


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


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], cfg: TrainConfig) -> torch.Tensor:
    pred = model(batch["images"], batch["c2w"], batch["fxfycxcy"], batch["target_c2w"], batch["target_fxfycxcy"])
    loss = F.mse_loss(pred, batch["target"])
    if cfg.ssim_weight > 0:
        loss = loss + cfg.ssim_weight * (1 - ssim(pred, batch["target"]).mean())
    return loss


def train(
    cfg: TrainConfig,
    out: str | Path | None = None,
    progress: bool = True,
    model: torch.nn.Module | None = None,
) -> Path:
    """Train a new model (or fine-tune ``model``, trained in place) and return its run folder.

    ``out`` must be empty or absent (default ``runs/nvs/<model>/<timestamp>/``).
    """
    device = resolve_device(cfg.device)
    rank, world, device = _dist_init(device)
    if model is None:
        torch.manual_seed(cfg.seed)  # same config, same initial weights
        model = create_model(cfg.model, NVSConfig.from_dict(cfg.model_config))
    elif getattr(model, "name", None) != cfg.model:
        raise CoordfitError(f"cfg.model is '{cfg.model}' but the model given is '{getattr(model, 'name', '?')}'")
    run = _make_run_dir(cfg, out, rank == 0, world)
    return _fit(cfg, model, run, 0, device, rank, world, progress)


def resume(run: str | Path, steps: int | None = None, device: str | None = None, progress: bool = True) -> Path:
    """Continue the run in folder ``run`` from its last checkpoint (optionally to more ``steps``)."""
    run = Path(run)
    cfg = TrainConfig.from_dict(read_json(run / "config.json"))
    if steps is not None:
        cfg.steps = steps
    if device is not None:
        cfg.device = device
    ckpt = find_checkpoint(run)  # verified: one unit, see coordfit.checkpoint
    for name in ("model.safetensors", "optimizer.safetensors", "train_state.json"):
        if ckpt is None or not ckpt.has(name):
            raise CoordfitError(f"cannot resume {run}: {name} is missing")
    torch_device = resolve_device(cfg.device)
    rank, world, torch_device = _dist_init(torch_device)
    if rank == 0 and steps is not None:
        write_json(run / "config.json", asdict(cfg))  # the run folder keeps describing itself
    model, _ = load_model(run / "model.safetensors")
    start = int(load_train_state(run / "train_state.json")["step"])
    return _fit(cfg, model, run, start, torch_device, rank, world, progress)


def _fit(
    cfg: TrainConfig,
    model: torch.nn.Module,
    run: Path,
    start: int,
    device: torch.device,
    rank: int,
    world: int,
    progress: bool,
) -> Path:
    is_main = rank == 0
    source = ViewSource(cfg.scenes, cfg.size, cfg.input_views, cfg.target_views, cfg.seed, cfg.normalize_poses)
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    if start > 0:
        load_optimizer(run / "optimizer.safetensors", opt)
    net: torch.nn.Module = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    bar = _progress(cfg.steps, start, enabled=progress and is_main)
    t0, loss_value = time.perf_counter(), float("nan")
    try:
        for step in range(start, cfg.steps):
            for group in opt.param_groups:
                group["lr"] = lr_at(step, cfg)
            batch = _to(source.batch(step * world + rank, cfg.batch_size), device)
            loss = _loss(net, batch, cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            loss_value = float(loss.detach())
            if world > 1:  # report the mean over ranks
                t = torch.tensor([loss_value], device=device)
                dist.all_reduce(t)
                loss_value = float(t) / world
            done = step + 1
            if is_main:
                if done % cfg.log_every == 0 or done == cfg.steps:
                    _append_log(run, {"step": done, "loss": loss_value, "lr": lr_at(step, cfg),
                                      "seconds": round(time.perf_counter() - t0, 2)})
                if done % cfg.checkpoint_every == 0 or done == cfg.steps:
                    _save(run, model, opt, cfg, done, loss_value)
                bar(done, loss_value)
    finally:
        bar(None, loss_value)
    if world > 1:
        dist.barrier()
    return run


def _make_run_dir(cfg: TrainConfig, out: str | Path | None, is_main: bool, world: int) -> Path:
    if world > 1 and out is None:
        raise CoordfitError("under torchrun pass --out so that every process writes the same run folder")
    if is_main:
        run = new_run_dir("nvs", cfg.model, out)
        write_json(run / "config.json", asdict(cfg))
    else:
        run = Path(out)  # type: ignore[arg-type]
    if world > 1:
        dist.barrier()  # rank 0 has created the folder
    return run


def _save(
    run: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, cfg: TrainConfig, step: int, loss: float
) -> None:
    def write(folder: Path) -> None:
        save_model(folder / "model.safetensors", model, {"normalize_poses": cfg.normalize_poses, "steps": step})
        save_optimizer(folder / "optimizer.safetensors", opt)
        save_train_state(folder / "train_state.json", {"step": step, "loss": loss})

    write_checkpoint(run, step, write)  # one unit: a kill or a full disk keeps the previous one


def _append_log(run: Path, row: dict[str, Any]) -> None:
    with open(run / "log.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


def _progress(total: int, start: int, enabled: bool):  # noqa: ANN202 - small closure
    """A rich progress bar; returns ``update(done, loss)``, ``update(None, _)`` closes it."""
    if not enabled:
        return lambda done, loss: None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    prog = Progress(
        TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
        TimeRemainingColumn(),
    )
    task = prog.add_task("train", total=total, completed=start, loss="-")
    prog.start()

    def update(done: int | None, loss: float) -> None:
        if done is None:
            prog.stop()
            return
        prog.update(task, completed=done, loss=f"{loss:.4f}")

    return update
