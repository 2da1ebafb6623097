"""Stopping at a step boundary on Ctrl-C or SIGTERM, for every training loop.

A ``KeyboardInterrupt`` raised in the middle of a step can land between the sampler's
draw and the step counter, or half way through Adam's update, so a checkpoint saved
then holds weights, optimiser state and generator from different steps, and the resumed
run differs from an uninterrupted one. Inside :class:`StopOnSignal` the first signal only
asks the loop to stop; the loop checks ``requested`` after each whole step.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

__all__ = ["StopOnSignal"]


class StopOnSignal:
    """While active, Ctrl-C (SIGINT) or SIGTERM (a scheduler's or ``kill``'s stop) sets
    ``requested`` instead of acting, so the loop stops at a step boundary with consistent
    weights and optimiser state; a second signal acts at once, as before. Only the main
    thread receives signals; elsewhere, or for a signal that is ignored, it does nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)
    requested = False  # also before __enter__, so a caller's except clause may read it

    def __enter__(self) -> StopOnSignal:
        self.requested = False
        self._previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                previous = signal.getsignal(sig)
                if previous is not signal.SIG_IGN:
                    self._previous[sig] = previous if previous is not None else signal.SIG_DFL
                    signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        self._restore()

    def _restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)

    def __exit__(self, *exc: Any) -> None:
        self._restore()
