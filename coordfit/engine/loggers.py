"""Where a fit reports its training curves: callbacks of the trainer.

The :class:`~coordfit.engine.train.Trainer` calls each logger at its log rows only (every
``log_every`` steps, and the step that stops the run), with numbers it has already read
from the device (no host sync of its own), so a logger never slows the step:

- ``start(step)`` when a training session begins (``step`` > 0 on a resume);
- ``log(step, seconds, scalars)`` for each ``log.csv`` row (``loss`` and the signal's
  quality, e.g. ``psnr``; ``seconds`` of training);
- ``close()`` when the session ends: finished, stopped by Ctrl-C, or failed.

A run folder always gets :class:`CsvLog` (``log.csv``) and :class:`CurvesPlot`
(``curves.png``); ``TrainConfig.logger = "tensorboard"`` (``--logger tensorboard``) adds
:class:`TensorBoardLogger`, which needs the optional ``tensorboard`` package (``pip
install "coordfit[tensorboard]"``).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import IO, Any, Protocol

from ..core.errors import CoordfitError

__all__ = ["LOGGERS", "RunLogger", "CsvLog", "CurvesPlot", "TensorBoardLogger", "run_loggers", "trim_log"]

LOGGERS: tuple[str, ...] = ("none", "tensorboard")  # the choices of --logger


class RunLogger(Protocol):
    """What the trainer calls; see the module docstring."""

    def start(self, step: int) -> None: ...

    def log(self, step: int, seconds: float, scalars: dict[str, float]) -> None: ...

    def close(self) -> None: ...


class CsvLog:
    """``log.csv``: ``step,seconds,loss,<quality>``, appended across resumes, each row
    flushed as it is written (a kill loses no row that was logged)."""

    def __init__(self, run_dir: Path, quality_name: str) -> None:
        self.path, self.quality_name = Path(run_dir) / "log.csv", quality_name
        self.file: IO[str] | None = None

    def start(self, step: int) -> None:
        new = not self.path.exists()
        self.file = self.path.open("a", newline="")
        if new:
            self.file.write(f"step,seconds,loss,{self.quality_name}\n")

    def log(self, step: int, seconds: float, scalars: dict[str, float]) -> None:
        assert self.file is not None, "start() first"
        self.file.write(f"{step},{seconds:.4f},{scalars['loss']:.6g},{scalars[self.quality_name]:.4f}\n")
        self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def trim_log(run_dir: Path, step: int) -> None:
    """Drop the ``log.csv`` rows after ``step`` (the checkpoint a run resumes from) and a row a kill cut short."""
    from ..core.io import atomic_write

    log = Path(run_dir) / "log.csv"
    if not log.exists():
        return
    with log.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return

    def kept(row: list[str]) -> bool:
        return len(row) == len(rows[0]) and row[0].isdigit() and int(row[0]) <= step

    rows = [rows[0]] + [r for r in rows[1:] if kept(r)]

    def write(p: Path) -> None:
        with p.open("w", newline="") as f:
            csv.writer(f, lineterminator="\n").writerows(rows)

    atomic_write(log, write)


class CurvesPlot:
    """Draws the run's ``log.csv`` into ``curves.png`` when a session ends (resumed runs
    included: the log holds every session)."""

    def __init__(self, run_dir: Path, quality_unit: str = "", title: str = "") -> None:
        self.run_dir, self.quality_unit, self.title = Path(run_dir), quality_unit, title

    def start(self, step: int) -> None:
        pass

    def log(self, step: int, seconds: float, scalars: dict[str, float]) -> None:
        pass

    def close(self) -> None:
        from .curves import write_curves

        log = self.run_dir / "log.csv"
        if log.is_file():
            write_curves(log, self.run_dir / "curves.png", quality_unit=self.quality_unit, title=self.title)


class TensorBoardLogger:
    """Scalars ``train/loss``, ``train/<quality>`` and ``train/seconds`` by step in
    ``<run>/tensorboard/`` (``tensorboard --logdir runs`` shows every run). A resumed run
    hides the events its previous session wrote after the checkpoint it resumes from."""

    def __init__(self, run_dir: Path) -> None:
        self.log_dir = Path(run_dir) / "tensorboard"
        self.writer: Any = None
        self._writer_class = tensorboard_writer()

    def start(self, step: int) -> None:
        # events after the checkpoint a resume starts from are hidden (log.csv drops those rows too)
        self.writer = self._writer_class(log_dir=str(self.log_dir), purge_step=step + 1 if step else None)

    def log(self, step: int, seconds: float, scalars: dict[str, float]) -> None:
        for name, value in scalars.items():
            self.writer.add_scalar(f"train/{name}", value, step)
        self.writer.add_scalar("train/seconds", seconds, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def tensorboard_writer() -> type:
    """torch's ``SummaryWriter``; one :class:`CoordfitError` line when ``tensorboard`` is not installed."""
    try:
        import tensorboard  # noqa: F401  (torch.utils.tensorboard's own error is less direct)
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise CoordfitError('--logger tensorboard needs the tensorboard package: pip install tensorboard '
                            '(or pip install "coordfit[tensorboard]")') from None
    return SummaryWriter


def run_loggers(logger: str, run_dir: Path | None, quality_name: str = "psnr", quality_unit: str = "",
                title: str = "") -> list[RunLogger]:
    """The loggers of a fit: ``log.csv`` and ``curves.png`` for every run folder (in that
    order: the plot reads the log), plus ``logger``'s (``none``, ``tensorboard``)."""
    if logger not in LOGGERS:
        raise CoordfitError(f"--logger must be one of {', '.join(LOGGERS)}, got '{logger}'")
    if run_dir is None:
        if logger != "none":
            raise CoordfitError(f"--logger {logger} writes into the run folder; a fit without one cannot use it")
        return []
    loggers: list[RunLogger] = [CsvLog(run_dir, quality_name), CurvesPlot(run_dir, quality_unit, title)]
    if logger == "tensorboard":
        loggers.append(TensorBoardLogger(run_dir))
    return loggers
