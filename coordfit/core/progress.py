"""Progress of a loop toward its binding limit: the one progress display of coordfit.

On a terminal a rich bar; off a terminal (a log file, a job under a scheduler) a plain
line every few seconds, so a long job keeps a heartbeat. A loop may be bounded by steps,
by seconds, or by both (whichever comes first): the bar shows the fraction of the limit
that binds, ``max(step / steps, seconds / time_budget)``, and names both.

::

    with Progress("fit", steps=2000, seconds=30.0) as bar:
        for ...:
            bar.update(step, seconds, loss=1.2e-3, psnr="24.51 dB")

``update`` is cheap (a few comparisons when nothing is shown) but takes host numbers:
callers read their tensors first, at a throttled rate (see :class:`coordfit.engine.train.Trainer`).
A loop that cannot hold the object (the view-synthesis trainer, a DDP rank) can take
``bar.update`` as its callback.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

__all__ = ["Progress", "format_fields"]


def format_fields(fields: dict[str, Any]) -> str:
    """``loss 1.234e-03  psnr 24.51 dB``: floats to 4 significant digits, strings as given."""
    parts = []
    for name, value in fields.items():
        if isinstance(value, float):
            value = f"{value:.3e}" if name == "loss" else f"{value:.4g}"
        parts.append(f"{name} {value}")
    return "  ".join(parts)


class Progress:
    """Shows ``update(step, seconds, **fields)`` as a bar (terminal) or as plain lines (elsewhere).

    ``steps`` / ``seconds``: the loop's limits (either may be None; with both, the one
    nearer to done binds). ``enabled``: None shows progress (bar on a terminal, lines
    elsewhere), False shows nothing. ``every``: seconds between plain lines. ``start``:
    the step a resumed loop starts from (for the rate). ``stream``: where plain lines go
    (default stderr, so stdout stays the command's result). ``unit``: what is counted
    ("step"; the report counts "item"s).
    """

    def __init__(
        self,
        label: str = "fit",
        *,
        steps: int | None = None,
        seconds: float | None = None,
        enabled: bool | None = None,
        every: float = 5.0,
        start: int = 0,
        stream: IO[str] | None = None,
        terminal: bool | None = None,
        unit: str = "step",
    ) -> None:
        self.label = label
        self.unit = unit
        self.steps = steps
        self.seconds = seconds
        self.enabled = enabled is not False
        self.every = every
        self.start = start
        self.stream = stream if stream is not None else sys.stderr
        self.terminal = sys.stdout.isatty() if terminal is None else terminal
        self._bar: Any = None
        self._last_line = time.perf_counter()
        self._last: tuple[int, float, dict[str, Any]] | None = None
        self._t0 = time.perf_counter()

    # -- what is shown ----------------------------------------------------------------------
    def fraction(self, step: int, seconds: float) -> float:
        """How far the loop is toward its binding limit, in [0, 1] (0 with no limits)."""
        parts = []
        if self.steps:
            parts.append(step / self.steps)
        if self.seconds:
            parts.append(seconds / self.seconds)
        return min(1.0, max(parts, default=0.0))

    def describe(self, step: int, seconds: float) -> str:
        """``step 120/2000  12.3/30 s``: where the loop stands against each limit."""
        steps = f"{self.unit} {step}/{self.steps}" if self.steps else f"{self.unit} {step}"
        secs = f"{seconds:.1f}/{self.seconds:g} s" if self.seconds else f"{seconds:.1f} s"
        return f"{steps}  {secs}"

    def _rate(self, step: int, seconds: float) -> str:
        if self.unit != "step" or seconds <= 0 or step <= self.start:
            return ""
        return f"{(step - self.start) / seconds:.1f} it/s"

    # -- updates ------------------------------------------------------------------------------
    def __enter__(self) -> Progress:
        if self.enabled and self.terminal:
            from rich.progress import BarColumn, Progress as RichProgress, TaskProgressColumn, TextColumn
            from rich.progress import TimeRemainingColumn

            self._bar = RichProgress(
                TextColumn(f"[bold]{self.label}"), BarColumn(bar_width=20), TaskProgressColumn(),
                TimeRemainingColumn(), TextColumn("{task.fields[where]}  {task.fields[text]}", markup=False),
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=1.0, where=self.describe(self.start, 0.0), text="")
        return self

    def update(self, step: int, seconds: float, **fields: Any) -> None:
        """Report the loop's state: ``step`` done, ``seconds`` of work, named ``fields``."""
        if not self.enabled:
            return
        self._last = (step, seconds, fields)
        text = "  ".join(p for p in (format_fields(fields), self._rate(step, seconds)) if p)
        if self._bar is not None:
            self._bar.update(self._task, completed=self.fraction(step, seconds),
                             where=self.describe(step, seconds), text=text)
            return
        now = time.perf_counter()
        if now - self._last_line >= self.every:
            self._line(step, seconds, text)
            self._last_line = now
            self._last = None  # shown

    def _line(self, step: int, seconds: float, text: str) -> None:
        pct = f"{100 * self.fraction(step, seconds):3.0f}%" if self.steps or self.seconds else ""
        line = "  ".join(p for p in (self.label, pct, self.describe(step, seconds), text) if p)
        print(line, file=self.stream, flush=True)

    def close(self) -> None:
        """End the display; off a terminal, a last line with the final state."""
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None
        elif self.enabled and self._last is not None:
            step, seconds, fields = self._last
            text = "  ".join(p for p in (format_fields(fields), self._rate(step, seconds)) if p)
            self._line(step, seconds, text)
            self._last = None

    def __exit__(self, *exc: Any) -> None:
        self.close()
