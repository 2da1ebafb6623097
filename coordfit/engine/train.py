"""The one fitting loop, for every model and every signal.

It samples a batch from the signal (a split-aware sub-grid for split models, random
points otherwise) on the signal's device, steps Adam, reports progress, hands its log
rows to the loggers (``log.csv``, ``curves.png``, TensorBoard: :mod:`coordfit.engine.loggers`)
and saves checkpoints. It knows neither file formats nor model internals.

The step does only the step: loss and quality stay tensors on the device. They are
*read* (one host sync) at a throttled rate, at least :attr:`Trainer.read_every` seconds
of host time apart, and at checkpoints and the last step; log rows between readings are
queued as tensors and written at the next reading, each with its own time (a CUDA event,
or the host clock on the CPU, where work is synchronous). The stop conditions use the
readings: a time budget overshoots by at most one step on the CPU (the host clock is
exact there) and by at most the GPU's queue behind the host on CUDA (bounded by
``read_every``); a target quality is noticed within ``read_every`` seconds.
``seconds`` is training time only: checkpoint and log I/O are excluded.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from ..core.checkpoint import load_optimizer, load_train_state, load_weights, save_optimizer, save_train_state, save_weights
from ..core.defaults import DEFAULT_STEPS
from ..core.device import StepClock, autocast, device_settings, resolve_device
from ..core.errors import CoordfitError, TrainingInterrupted
from ..core.interrupt import StopOnSignal
from .config import TrainConfig as TrainConfig
from .loggers import run_loggers, trim_log
from ..models.registry import model_entry
from ..signals.base import Signal

if TYPE_CHECKING:
    from .loggers import RunLogger

__all__ = ["TrainConfig", "Trainer", "Limits", "TrainingInterrupted", "DEFAULT_STEPS", "make_optimizer"]


@dataclass(frozen=True)
class Limits:
    """A run's total limits, counted from its first step (earlier sessions included)."""

    steps: int | None  # the step the run stops at
    seconds: float | None  # the seconds of training the run stops at


def make_optimizer(model: torch.nn.Module, lr: float, adam: dict[str, Any], table_rows: bool = False,
                   fused: bool = True) -> torch.optim.Optimizer:
    """Adam over ``model``'s parameters (one group, the registry's ``adam`` options), on the
    model's device: torch's fused Adam where this torch has one for it, else its default.
    ``table_rows``: grid tables step only the rows this step's points reached
    (:class:`~coordfit.models.grid_adam.GridAdam`); off, because on a CPU it measured slower
    than the fused dense step (docs/grids.md). The state is Adam's either way, so
    checkpoints load into any of them."""
    from ..models.grid_adam import GridAdam
    from ..models.grid_encoding import MultiresGrid

    tables = [m.table for m in model.modules() if isinstance(m, MultiresGrid)] if table_rows else []
    params = list(model.parameters())

    def build(**extra: Any) -> torch.optim.Optimizer:
        options = {"lr": lr, **adam, **extra}
        return GridAdam(params, tables, **options) if tables else torch.optim.Adam(params, **options)

    if fused:
        try:
            return build(fused=True)
        except (RuntimeError, TypeError, ValueError):  # an older torch, or no fused Adam for this device or dtype
            pass
    return build()


class Trainer:
    """Fits ``model`` to ``signal``; ``run()`` until a stop condition, resumable.

    :attr:`limits` is the one place that holds where the run stops, in totals: the stop
    conditions read it, and so may anything that spans the run (a learning-rate schedule).

    ``loggers`` get the log rows (see :mod:`coordfit.engine.loggers`); by default, with a
    ``run_dir``: ``log.csv``, ``curves.png`` and ``config.logger``'s.
    """

    read_every = 0.5  # seconds of host time between readings of loss and quality

    def __init__(self, model: torch.nn.Module, signal: Signal, config: TrainConfig, run_dir: Path | None = None,
                 loggers: Sequence[RunLogger] | None = None) -> None:
        config.validate()
        self.device = resolve_device(config.device)
        entry = model_entry(model.registry_name)
        self.config = replace(config.resolved(self.device), lr=config.lr or entry.lr)
        self.model = model.to(self.device)
        self.signal = signal.to(self.device)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.optimizer = make_optimizer(model, self.config.lr, entry.adam)
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)
        self.step = 0
        self.seconds = 0.0
        self.session_seconds = 0.0  # the run's training seconds when this session began
        self.last_loss = float("nan")
        self.last_quality = float("nan")
        self.stopped_by = ""
        splits = len(getattr(model, "branches", [()])) > 1
        self.budget = self.config.grid_batch if splits else self.config.batch_points
        self._batch: tuple[torch.Tensor, torch.Tensor] | None = None  # last (prediction, target)
        self._compiled: _CompiledModel | None = None  # torch.compile'd methods (config.compile)
        if loggers is None:
            loggers = run_loggers(self.config.logger, self.run_dir, signal.quality_name, signal.quality_unit,
                                  _title(signal, model))
        self.loggers = list(loggers)

    # -- checkpoints -------------------------------------------------------------------
    def save_checkpoint(self, finished: bool = False) -> None:
        """Save weights, Adam state, step and RNG as one checkpoint (see coordfit.core.checkpoint)."""
        if self.run_dir is None:
            return
        from ..core.checkpoint import encode_rng, write_checkpoint

        state = {"step": self.step, "seconds": self.seconds, "rng": encode_rng(self.generator),
                 "rng_device": self.device.type, "finished": finished, "stopped_by": self.stopped_by}

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
        if self.run_dir is None:
            raise CoordfitError("this trainer has no run folder to load a checkpoint from (pass run_dir)")
        from ..core.checkpoint import clean_stale, open_checkpoint

        ckpt = open_checkpoint(self.run_dir)
        state_path = ckpt.path("train_state.json")
        state = load_train_state(state_path)
        rng = self._saved_rng(state, state_path)  # None: the run moved device, reseed
        load_weights(ckpt.path("model.safetensors"), self.model, self.model.registry_name)
        if ckpt.has("optimizer.safetensors"):
            load_optimizer(ckpt.path("optimizer.safetensors"), self.optimizer)
        self.step = state["step"]
        self.seconds = self.session_seconds = float(state.get("seconds", 0.0))
        if rng is None:
            self.generator.manual_seed(self.config.seed + self.step)
        else:
            self.generator.set_state(rng)
        clean_stale(self.run_dir)
        trim_log(self.run_dir, self.step)

    def _saved_rng(self, state: dict[str, Any], where: Path) -> torch.Tensor | None:
        """The sampler's saved generator state; None (with a warning) when the run moved device."""
        from ..core.checkpoint import decode_rng

        saved = state.get("rng_device", "cpu")
        if saved != self.device.type:
            warnings.warn(f"this run was trained on {saved} and continues on {self.device.type}: the sampler "
                          "is reseeded, so the result differs from an uninterrupted run", stacklevel=3)
            return None
        return decode_rng(state.get("rng"), self.generator, where)

    # -- one step ----------------------------------------------------------------------
    def train_step(self) -> torch.Tensor:
        """Sample, predict, step Adam; returns the loss as a 0-dim tensor (no host sync)."""
        batch, target = self.signal.sample(self.model.branches, self.budget, self.generator, step=self.step)
        with autocast(self.device, self.config.precision):
            pred = self.signal.predict(self.model, batch)
            loss = self.signal.loss(pred, target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self._batch = (pred.detach(), target)
        return loss.detach()

    def batch_quality(self) -> torch.Tensor:
        """The signal's quality (PSNR, IoU) of the last step's batch, a 0-dim tensor."""
        if self._batch is None:
            raise RuntimeError("batch_quality() reads the last step's batch; no step has run yet")
        return self.signal.quality(*self._batch).float()

    # -- the loop ----------------------------------------------------------------------
    @property
    def limits(self) -> Limits:
        """The run's total limits: ``config.steps``, and ``config.time_budget`` seconds after
        :attr:`session_seconds` (0 for a new run; the checkpoint's seconds after
        :meth:`load_checkpoint`; the seconds so far when :meth:`run` is called again).
        A resume sets the session's budget so that the total is what it means
        (:func:`coordfit.resume`)."""
        c = self.config
        return Limits(c.steps, None if c.time_budget is None else self.session_seconds + c.time_budget)

    def _limit(self, seconds: float) -> str:
        limits, target = self.limits, self.config.target
        if limits.steps is not None and self.step >= limits.steps:
            return "steps"
        if limits.seconds is not None and seconds >= limits.seconds:
            return "time_budget"
        if target is not None and self.last_quality >= target:
            return "target"
        return ""

    def run(self, progress: bool | None = None) -> dict[str, Any]:
        """Train until ``steps``, ``time_budget`` (counted from this call) or ``target``; returns a summary.

        The loggers close (``curves.png`` is drawn) after the last checkpoint, so a Ctrl-C
        while drawing loses no training."""
        for logger in self.loggers:
            logger.start(self.step)
        try:
            self._train(progress)
            self.model.eval()
            self.save_checkpoint(finished=True)
        finally:
            self._close_loggers()
        return self.summary()

    def _train(self, progress: bool | None) -> None:
        """The loop; on Ctrl-C or SIGTERM the step in flight finishes, a checkpoint is saved,
        then :class:`TrainingInterrupted` (coordfit.core.interrupt: never a checkpoint of half a
        step; a second signal stops at once and keeps the last checkpoint)."""
        c = self.config
        self.session_seconds = self.seconds
        limits = self.limits
        clock = StepClock(self.device)
        pending: list[tuple[int, Any, torch.Tensor, torch.Tensor, bool]] = []  # step, mark, loss, quality, row
        if c.compile and self._compiled is None:
            self._compiled = _CompiledModel(self.model)
        compiled = self._compiled.apply() if c.compile else None
        self.model.train()
        self.stopped_by = self._limit(self.seconds)
        clock.start(self.seconds)
        stop, boundary = StopOnSignal(), False
        try:
            with device_settings(self.device, c.precision, c.threads), self._progress(progress) as bar, stop:
                last_read = time.perf_counter()
                while not self.stopped_by:
                    loss = compiled.step(self) if compiled is not None else self.train_step()
                    self.step += 1
                    now = time.perf_counter()
                    row = self.step % c.log_every == 0
                    due = (now - last_read >= self.read_every
                           or (limits.steps is not None and self.step >= limits.steps)
                           or (c.checkpoint_every and self.step % c.checkpoint_every == 0)
                           or (limits.seconds is not None and clock.estimate() >= limits.seconds))
                    if row or due:
                        quality = self.batch_quality()
                        pending.append((self.step, clock.mark(), loss, quality, row))
                    if due:
                        self._read(clock, pending, bar)
                        if c.checkpoint_every and self.step % c.checkpoint_every == 0 and not self.stopped_by:
                            self.save_checkpoint()
                        clock.start(self.seconds)  # the I/O above is not training time
                        last_read = time.perf_counter()
                    if stop.requested:  # Ctrl-C or SIGTERM, acted on between whole steps
                        boundary = True
                        raise KeyboardInterrupt
        except KeyboardInterrupt:
            if stop.requested and not boundary:  # a second Ctrl-C, mid-step: keep the last checkpoint
                raise
            self._read(clock, pending, None)
            self.stopped_by = "interrupted"
            self.save_checkpoint()
            raise TrainingInterrupted(self.step, self.run_dir) from None
        finally:
            if compiled is not None:
                compiled.restore()

    def _read(self, clock: StepClock, pending: list, bar: Any) -> None:
        """One host sync: training seconds, the queued log rows, the stop conditions, the bar.

        The step that stops the run always gets a log row."""
        self.seconds = clock.stop()
        if not pending:
            return
        losses = torch.stack([p[2] for p in pending]).float()
        values = torch.stack([losses, torch.stack([p[3] for p in pending])], dim=1).tolist()
        target = self.config.target
        if target is not None and any(q >= target for _, q in values):
            self.stopped_by = self.stopped_by or "target"
        self.last_loss, self.last_quality = values[-1]
        self.stopped_by = self.stopped_by or self._limit(self.seconds)
        last = len(pending) - 1
        for j, ((step, mark, _, _, row), (loss, quality)) in enumerate(zip(pending, values)):
            if self.loggers and (row or (self.stopped_by and j == last)):
                seconds = self.seconds if j == last else clock.seconds_at(mark)  # the reading's own time
                for logger in self.loggers:
                    logger.log(step, seconds, {"loss": loss, self.signal.quality_name: quality})
        pending.clear()
        if bar is not None:
            q = self.signal.quality_name
            bar.update(self.step, self.seconds - self.session_seconds, loss=self.last_loss,
                       **{q: f"{self.last_quality:.4g} {self.signal.quality_unit}".rstrip()})

    def _close_loggers(self) -> None:
        """Close every logger; one that fails (curves.png on a full disk) warns and the others still close."""
        for logger in self.loggers:
            try:
                logger.close()
            except Exception as exc:  # noqa: BLE001 - a report of the run must not lose the run
                warnings.warn(f"{type(logger).__name__}: {exc}", stacklevel=2)

    def _progress(self, enabled: bool | None) -> Any:
        from ..core.progress import Progress

        return Progress("fit", steps=self.config.steps, seconds=self.config.time_budget, enabled=enabled,
                        start=self.step)

    def summary(self) -> dict[str, Any]:
        return {
            "steps": self.step,
            "train_seconds": round(self.seconds, 4),
            "final_loss": self.last_loss,
            "final_batch_" + self.signal.quality_name: self.last_quality,
            "stopped_by": self.stopped_by,
            "device": str(self.device),
            "samples_per_step": self.budget,
            "precision": self.config.precision,
        }


def _title(signal: Signal, model: torch.nn.Module) -> str:
    """``astronaut, coordx x+y``: the input and the model, for the curves' title."""
    from ..core.io import source_stem

    split = getattr(model, "split", None)
    return f"{source_stem(signal.meta().get('source'))}, {model.registry_name}" + (f" {split}" if split else "")


class _CompiledModel:
    """``torch.compile`` of a model's ``forward`` and ``forward_grid``, applied while a run trains.

    The first compiled step is guarded: if compiling fails there (no compiler, an
    unsupported op), one warning is given and that step and the rest run eagerly.
    :meth:`restore` puts the plain methods back after each run, so evaluation and
    checkpoints see the eager model; the compiled functions are kept for the next run.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.first = True
        names = [n for n in ("forward", "forward_grid") if hasattr(model, n)]
        self.fns = {n: torch.compile(getattr(model, n)) for n in names}

    def apply(self) -> _CompiledModel:
        self.model.__dict__.update(self.fns)  # instance attributes shadow the methods
        return self

    def step(self, trainer: Trainer) -> torch.Tensor:
        if not self.first:
            return trainer.train_step()
        self.first = False
        state = trainer.generator.get_state()
        try:
            return trainer.train_step()
        except Exception as exc:  # noqa: BLE001 - any compile failure falls back to eager
            first_line = (str(exc).splitlines() or [""])[0]
            warnings.warn(f"--compile: torch.compile failed ({type(exc).__name__}: {first_line}); "
                          "training without it", stacklevel=2)
            self.restore()
            self.fns = {}
            trainer.generator.set_state(state)  # the same batch again, eagerly
            return trainer.train_step()

    def restore(self) -> None:
        for name in ("forward", "forward_grid"):
            self.model.__dict__.pop(name, None)
