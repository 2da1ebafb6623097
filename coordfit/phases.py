"""The phases of a run, timed and shown: load, train, then the work after training.

A run records how long each phase took (``phase_seconds`` in ``metrics.json``). The
whole phases (``load``, ``train``) are timed with :meth:`Phases.phase`; the work after
training happens inside the signal (:meth:`coordfit.signals.Signal.finish`), which
owns no terminal UI and reports through a plain callback the caller passes::

    report(phase, done, total)   # after each unit of work: `done` of `total` units of `phase`

The time since the previous report (or since :meth:`Phases.finishing` began) belongs to
the phase the report names, so a signal that interleaves its work (a video renders a
chunk of frames, scores it, then encodes it) still gets each phase's own seconds.
:meth:`Phases.report` is such a callback: it times the phases and shows them, a bar per
phase on a terminal and, elsewhere, a plain line now and then and one when a phase ends.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

__all__ = ["Phases", "Report", "quiet"]

Report = Callable[[str, int, int], None]  # report(phase, done, total)


def quiet(phase: str, done: int, total: int) -> None:
    """A report callback that shows and records nothing."""


class Phases:
    """Seconds per phase, and the progress of the phases after training.

    ``show``: None or True shows progress (a rich bar per phase when stdout is a
    terminal, plain lines on ``stream``, default stderr, elsewhere); False shows
    nothing but still times. ``every``: seconds between plain lines of a phase.
    """

    def __init__(self, show: bool | None = None, *, every: float = 5.0, stream: IO[str] | None = None,
                 terminal: bool | None = None) -> None:
        self.seconds: dict[str, float] = {}
        self.show = show is not False
        self.every = every
        self.stream = stream if stream is not None else sys.stderr
        self.terminal = sys.stdout.isatty() if terminal is None else terminal
        self._mark: float | None = None  # when the last report (or finishing()) happened
        self._bar: Any = None  # rich Progress while finishing() on a terminal
        self._tasks: dict[str, Any] = {}
        self._started: dict[str, float] = {}  # phase -> clock time of its first report
        self._lines: dict[str, float] = {}  # phase -> clock time of its last plain line

    def _add(self, name: str, seconds: float) -> None:
        self.seconds[name] = round(self.seconds.get(name, 0.0) + seconds, 3)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time a whole phase (``load``, ``train``): its wall-clock seconds are added to ``name``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._add(name, time.perf_counter() - t0)

    @contextmanager
    def finishing(self) -> Iterator[Report]:
        """Open the display of the phases after training; yields :meth:`report`."""
        self._mark = time.perf_counter()
        if self.show and self.terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn())
            self._bar.start()
        try:
            yield self.report
        finally:
            if self._bar is not None:
                self._bar.stop()
                self._bar = None
            self._tasks.clear()
            self._mark = None

    def report(self, phase: str, done: int, total: int) -> None:
        """``done`` of ``total`` units of ``phase`` are complete (the callback signals call)."""
        now = time.perf_counter()
        if self._mark is not None:
            self._add(phase, now - self._mark)
        self._mark = now
        started = self._started.setdefault(phase, now)
        if not self.show:
            return
        if self._bar is not None:
            task = self._tasks.get(phase)
            if task is None:
                task = self._tasks[phase] = self._bar.add_task(phase, total=total)
            self._bar.update(task, completed=done, total=total)
            return
        if done >= total or now - self._lines.get(phase, started) >= self.every:
            self._lines[phase] = now
            state = "done" if done >= total else f"{100 * done / max(total, 1):3.0f}%"
            print(f"{phase}  {state}  {done}/{total}  {self.seconds.get(phase, 0.0):.1f} s",
                  file=self.stream, flush=True)
