"""Signals: read a file into a target on a coordinate grid, write results back out."""

from __future__ import annotations

import time
from typing import Any

from .base import GridSignal as GridSignal
from .base import Signal as Signal
from .base import register_signal as register_signal
from .base import signal_class as signal_class
from .base import signal_kinds as signal_kinds
from .image import ImageSignal as ImageSignal
from .shape import ShapeSignal as ShapeSignal
from .video import VideoSignal as VideoSignal
from .views import ViewsSignal as ViewsSignal


def load_signal(kind: str, source: Any = None, **options: Any) -> Signal:
    """Read ``source`` as a signal of ``kind`` (``image``, ...); the seconds that took
    (reading, and labelling a shape) become ``signal.load_seconds``."""
    t0 = time.perf_counter()
    signal = signal_class(kind).load(source, **options)
    signal.load_seconds = time.perf_counter() - t0
    return signal


def signal_from_meta(meta: dict[str, Any]) -> Signal:
    """Reload the signal a run was fitted to, from the ``signal`` entry of its config."""
    return load_signal(meta["kind"], meta["source"], **meta.get("options", {}))


__all__ = ["GridSignal", "ImageSignal", "ShapeSignal", "Signal", "load_signal", "register_signal", "signal_class", "signal_from_meta", "signal_kinds", "VideoSignal", "ViewsSignal"]
