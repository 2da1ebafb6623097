"""The one fitting loop, for every model and every signal.

It samples a batch from the signal (a split-aware sub-grid for split models, random
points otherwise), steps Adam, reports progress, logs ``log.csv`` and saves
checkpoints. It knows neither file formats nor model internals.
"""

from __future__ import annotations

import csv
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from .checkpoint import load_optimizer, load_train_state, load_weights, save_optimizer, save_train_state, save_weights
from .device import resolve_device, synchronize
from .errors import CoordfitError
from .models.registry import model_entry
from .signals.base import Signal

__all__ = ["TrainConfig", "Trainer", "TrainingInterrupted"]


@dataclass
class TrainConfig:
    steps: int = 2000  # maximum optimiser steps
    time_budget: float | None = None  # stop after this many seconds of training
    target_psnr: float | None = None  # stop once the batch PSNR (dB) reaches this
    lr: float | None = None  # Adam learning rate (None: the model's default)
    grid_batch: int = 1 << 14  # split models: points in each step's sub-grid (full grid if it fits)
    batch_points: int = 1 << 14  # unsplit models: random points per step
    log_every: int = 25  # steps between log.csv rows
    checkpoint_every: int = 500  # steps between checkpoints (0: only at the end or on Ctrl-C)
    seed: int = 0  # seeds the model init and the sampler
    device: str = "auto"  # auto | cpu | cuda | mps

    def validate(self) -> None:
        if self.steps <= 0:
            raise CoordfitError(f"--steps must be positive, got {self.steps}")
        if self.time_budget is not None and self.time_budget <= 0:
            raise CoordfitError(f"--time-budget must be positive, got {self.time_budget}")
        if self.lr is not None and self.lr <= 0:
            raise CoordfitError(f"--lr must be positive, got {self.lr}")
        for name in ("grid_batch", "batch_points", "log_every"):
            if getattr(self, name) <= 0:
                raise CoordfitError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.checkpoint_every < 0:
            raise CoordfitError(f"--checkpoint-every must be >= 0, got {self.checkpoint_every}")
        resolve_device(self.device)


class TrainingInterrupted(Exception):
    """Ctrl-C during training; a checkpoint was saved when the run has a folder."""

    def __init__(self, step: int, run_dir: Path | None) -> None:
        where = f"; checkpoint saved in {run_dir}" if run_dir else ""
        super().__init__(f"interrupted at step {step}{where}")
        self.step = step
        self.run_dir = run_dir


class Trainer:
    """Fits ``model`` to ``signal``; ``run()`` until a stop condition, resumable."""

    def __init__(self, model: torch.nn.Module, signal: Signal, config: TrainConfig, run_dir: Path | None = None) -> None:
        config.validate()
        self.config = config
        self.device = resolve_device(config.device)
        self.model = model.to(self.device)
        self.signal = signal.to(self.device)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        entry = model_entry(model.registry_name)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.lr or entry.lr, **entry.adam)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.step = 0
        self.seconds = 0.0
        self.last_loss = float("nan")
        self.last_quality = float("nan")
        self.stopped_by = ""
        splits = len(getattr(model, "branches", [()])) > 1
        self.budget = config.grid_batch if splits else config.batch_points

    # -- checkpoints -------------------------------------------------------------------
    def save_checkpoint(self, finished: bool = False) -> None:
        """Save weights, Adam state, step and RNG as one checkpoint (see coordfit.checkpoint)."""
        if self.run_dir is None:
            return
        from .checkpoint import encode_rng, write_checkpoint

        state = {"step": self.step, "seconds": self.seconds, "rng": encode_rng(self.generator),
                 "finished": finished, "stopped_by": self.stopped_by}

        def write(folder: Path) -> None:
            save_weights(folder / "model.safetensors", self.model, self.model.registry_name)
            save_optimizer(folder / "optimizer.safetensors", self.optimizer)
            save_train_state(folder / "train_state.json", state)

        write_checkpoint(self.run_dir, self.step, write)

    def load_checkpoint(self) -> None:
        """Continue from the checkpoint in ``run_dir`` (weights, Adam state, step, RNG).

        Everything is read and checked before anything is written: a refused resume
        leaves the run folder as it was. Then stale temporaries of a killed run are
        removed and log rows after the checkpoint dropped.
        """
        assert self.run_dir is not None
        from .checkpoint import clean_stale, decode_rng, open_checkpoint

        ckpt = open_checkpoint(self.run_dir)
        state_path = ckpt.path("train_state.json")
        state = load_train_state(state_path)
        rng = decode_rng(state.get("rng"), self.generator, state_path)
        load_weights(ckpt.path("model.safetensors"), self.model, self.model.registry_name)
        if ckpt.has("optimizer.safetensors"):
            load_optimizer(ckpt.path("optimizer.safetensors"), self.optimizer)
        self.step = state["step"]
        self.seconds = float(state.get("seconds", 0.0))
        self.generator.set_state(rng)
        clean_stale(self.run_dir)
        self._trim_log()

    def _trim_log(self) -> None:
        """Drop log rows written after the checkpoint we resume from (and a row a kill cut short)."""
        log = self.run_dir / "log.csv" if self.run_dir else None
        if log is None or not log.exists():
            return
        from .io import atomic_write

        with log.open(newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            return

        def kept(row: list[str]) -> bool:
            return len(row) == len(rows[0]) and row[0].isdigit() and int(row[0]) <= self.step

        rows = [rows[0]] + [r for r in rows[1:] if kept(r)]

        def write(p: Path) -> None:
            with p.open("w", newline="") as f:
                csv.writer(f, lineterminator="\n").writerows(rows)  # the loop appends "\n" too

        atomic_write(log, write)

    # -- the loop ----------------------------------------------------------------------
    def train_step(self) -> tuple[float, float]:
        batch, target = self.signal.sample(self.model.branches, self.budget, self.generator, step=self.step)
        pred = self.signal.predict(self.model, batch)
        loss = self.signal.loss(pred, target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach()), float(self.signal.quality(pred, target))

    def _should_stop(self) -> str:
        c = self.config
        if self.step >= c.steps:
            return "steps"
        if c.time_budget is not None and self.seconds >= c.time_budget:
            return "time_budget"
        if c.target_psnr is not None and self.last_quality >= c.target_psnr:
            return "target_psnr"
        return ""

    def run(self, progress: bool | None = None) -> dict[str, Any]:
        """Train until ``steps``, ``time_budget`` or ``target_psnr``; returns a summary."""
        from .progress import TrainProgress

        log_file = None
        if self.run_dir is not None:
            path = self.run_dir / "log.csv"
            new = not path.exists()
            log_file = path.open("a", newline="")
            if new:
                log_file.write("step,seconds,loss,psnr\n")
        self.model.train()
        self.stopped_by = self._should_stop()
        try:
            with TrainProgress(self.config, self.signal.quality_name, enabled=progress, start=self.step) as bar:
                while not self.stopped_by:
                    synchronize(self.device)
                    t0 = time.perf_counter()
                    self.last_loss, self.last_quality = self.train_step()
                    synchronize(self.device)
                    self.seconds += time.perf_counter() - t0
                    self.step += 1
                    self.stopped_by = self._should_stop()
                    bar.update(self.step, self.seconds, self.last_loss, self.last_quality)
                    if log_file and (self.step % self.config.log_every == 0 or self.stopped_by):
                        log_file.write(f"{self.step},{self.seconds:.4f},{self.last_loss:.6g},{self.last_quality:.4f}\n")
                        log_file.flush()
                    every = self.config.checkpoint_every
                    if every and self.step % every == 0 and not self.stopped_by:
                        self.save_checkpoint()
        except KeyboardInterrupt:
            if log_file:
                log_file.flush()
            self.stopped_by = "interrupted"
            self.save_checkpoint()
            raise TrainingInterrupted(self.step, self.run_dir) from None
        finally:
            if log_file:
                log_file.close()
        self.model.eval()
        self.save_checkpoint(finished=True)
        return self.summary()

    def summary(self) -> dict[str, Any]:
        return {
            "steps": self.step,
            "train_seconds": round(self.seconds, 4),
            "final_loss": self.last_loss,
            "final_batch_" + self.signal.quality_name: self.last_quality,
            "stopped_by": self.stopped_by,
            "device": str(self.device),
            "samples_per_step": self.budget,
        }

    def config_dict(self) -> dict[str, Any]:
        return asdict(self.config)
