"""The phases of a run, timed and shown: load, train, then the work after training.

A run records how long each phase took (``phase_seconds`` in ``metrics.json``). The
whole phases (``load``, ``train``) are timed with :meth:`Phases.phase`; the work after
training happens inside the signal (:meth:`coordfit.signals.Signal.finish`), which
owns no terminal UI and reports through a plain callback the caller passes::

    report(phase, done, total)   # after each unit of work: `done` of `total` units of `phase`

The time since the previous report (or since :meth:`Phases.finishing` began) belongs to
the phase the report names, so a signal that interleaves its work (a video renders a
chunk of frames, scores it, then encodes it) still gets each phase's own seconds.
:meth:`Phases.report` is such a callback: it times the phases and shows them through
:class:`coordfit.core.progress.Progress`, the one progress display (a bar on a terminal, a
plain line now and then and at each phase's end elsewhere).

A phase after training that will take much longer than the training did is announced,
once, as soon as its first unit of work gives a measured pace: how long it will take, and
that Ctrl-C keeps the saved model (:meth:`Phases.finishing` with ``after=``).
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .progress import Progress

__all__ = ["Phases", "Ready", "Report", "quiet"]

Report = Callable[[str, int, int], None]  # report(phase, done, total)
Ready = Callable[[dict[str, Any]], None]  # ready(metrics): the metrics are known, the outputs come next


def quiet(phase: str, done: int, total: int) -> None:
    """A report callback that shows and records nothing."""


class Phases:
    """Seconds per phase, and the progress of the phases after training.

    ``show``: None or True shows progress (as :class:`~coordfit.core.progress.Progress`:
    a bar on a terminal, plain lines on ``stream``, default stderr, elsewhere, every
    ``every`` seconds and when a phase ends); False shows nothing but still times.

    One phase is shown at a time: while it runs, reports of phases interleaved with it
    appear as fields of its display (``metrics 41/120``); each gets its own display when
    it is reported after the shown one ended.
    """

    def __init__(self, show: bool | None = None, *, every: float = 5.0, stream: IO[str] | None = None,
                 terminal: bool | None = None) -> None:
        self.seconds: dict[str, float] = {}
        self.show = show is not False
        self._display = {"every": every, "stream": stream, "terminal": terminal}
        self._mark: float | None = None  # when the last report (or finishing()) happened
        self._shown: tuple[str, Progress] | None = None  # the phase on display
        self._others: dict[str, str] = {}  # interleaved phases: "done/total"
        self._after: float | None = None  # seconds the training took (finishing(after=...))
        self._run_dir: Path | None = None
        self._announced: set[str] = set()

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
    def finishing(self, after: float | None = None, run_dir: Path | None = None) -> Iterator[Report]:
        """Time and show the phases after training; yields :meth:`report`. ``after``: the
        seconds the training took; a phase whose measured pace says it will take more
        than :attr:`announce_ratio` times that (and over :attr:`announce_seconds`) is
        announced with its estimate (and the ``coordfit render`` command of ``run_dir``)."""
        self._mark = time.perf_counter()
        self._after, self._run_dir = after, run_dir
        try:
            yield self.report
        finally:
            self._close()
            self._mark = None
            self._after = None

    announce_ratio = 3.0  # a phase this many times longer than the training is announced...
    announce_seconds = 10.0  # ...when it also takes longer than this

    def _announce(self, phase: str, done: int, total: int) -> None:
        """Say how long ``phase`` will take when that is much longer than the training."""
        if self._after is None or not 0 < done < total or phase in self._announced:
            return
        estimate = self.seconds.get(phase, 0.0) * total / done
        if estimate <= max(self.announce_seconds, self.announce_ratio * self._after):
            return
        self._announced.add(phase)
        stream = self._display["stream"] or sys.stderr
        later = f" (`coordfit render {shlex.quote(str(self._run_dir))}` renders later)" if self._run_dir else ""
        print(f"{phase}: about {_duration(estimate)} at this pace ({done:,}/{total:,} in "
              f"{_duration(self.seconds.get(phase, 0.0))}), against {_duration(self._after)} of training; "
              f"the model is saved: Ctrl-C stops here, and --outputs metrics or none skips this{later}",
              file=stream, flush=True)

    def _close(self) -> None:
        if self._shown is not None:
            self._shown[1].close()
            self._shown = None
            self._others.clear()

    def report(self, phase: str, done: int, total: int) -> None:
        """``done`` of ``total`` units of ``phase`` are complete (the callback signals call)."""
        now = time.perf_counter()
        if self._mark is not None:
            self._add(phase, now - self._mark)
        self._mark = now
        if not self.show:
            return
        self._announce(phase, done, total)
        if self._shown is not None and self._shown[0] != phase:
            self._others[phase] = f"{done}/{total}"  # shown with the running phase
            return
        if self._shown is None:
            bar = Progress(phase, steps=total, unit="", **self._display).__enter__()
            self._shown = (phase, bar)
        bar = self._shown[1]
        bar.steps = total  # a phase may learn its total as it goes
        bar.update(done, self.seconds.get(phase, 0.0), **self._others)
        if done >= total:
            self._close()


def _duration(seconds: float) -> str:
    """``4.2 s``, ``12 min``, ``1.5 h``."""
    if seconds < 90:
        return f"{seconds:.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
