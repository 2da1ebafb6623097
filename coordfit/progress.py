"""A rich progress bar for training that stays quiet when stdout is not a terminal."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

__all__ = ["TrainProgress"]


class TrainProgress:
    """``with TrainProgress(cfg, "psnr") as bar: bar.update(step, seconds, loss, quality)``."""

    def __init__(self, config: Any, quality_name: str = "psnr", enabled: bool | None = None, start: int = 0) -> None:
        self.enabled = sys.stdout.isatty() if enabled is None else enabled
        self.total = config.steps
        self.quality_name = quality_name
        self.start = start
        self._progress: Progress | None = None

    def __enter__(self) -> TrainProgress:
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]fit"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]:.3e}  {task.fields[qname]} {task.fields[quality]:.2f}"),
                TextColumn("{task.fields[rate]:.1f} it/s"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(),
                transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(
                "fit", total=self.total, completed=self.start, loss=float("nan"), quality=float("nan"),
                qname=self.quality_name, rate=0.0,
            )
        return self

    def update(self, step: int, seconds: float, loss: float, quality: float) -> None:
        if self._progress is None:
            return
        rate = step / seconds if seconds > 0 else 0.0
        self._progress.update(self._task, completed=step, loss=loss, quality=quality, rate=rate)

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
