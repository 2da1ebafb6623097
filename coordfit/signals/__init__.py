"""Signals: read a file into a target on a coordinate grid, write results back out.

The names below load on first use (PEP 562): :mod:`coordfit.signals.options`, which the
CLI reads to build its flags, is importable without torch. Any of them registers every
built-in kind first, so ``signal_class("video")`` always finds it.
"""

from __future__ import annotations

import importlib
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import GridSignal as GridSignal
    from .base import Signal as Signal
    from .base import register_signal as register_signal
    from .base import signal_class as signal_class
    from .base import signal_kinds as signal_kinds
    from .image import ImageSignal as ImageSignal
    from .shape import ShapeSignal as ShapeSignal
    from .video import VideoSignal as VideoSignal
    from .views.signal import ViewsSignal as ViewsSignal

_KINDS = ("image", "video", "shape", "views")  # the built-in kinds' modules, in registration order
_LAZY = {"GridSignal": "base", "Signal": "base", "register_signal": "base", "signal_class": "base",
         "signal_kinds": "base", "ImageSignal": "image", "ShapeSignal": "shape", "VideoSignal": "video",
         "ViewsSignal": "views"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'coordfit.signals' has no attribute {name!r}")
    for module in _KINDS:
        importlib.import_module(f".{module}", __name__)
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def load_signal(kind: str, source: Any = None, **options: Any) -> Signal:
    """Read ``source`` as a signal of ``kind`` (``image``, ...); the seconds that took
    (reading, and labelling a shape) become ``signal.load_seconds``."""
    t0 = time.perf_counter()
    signal = __getattr__("signal_class")(kind).load(source, **options)
    signal.load_seconds = time.perf_counter() - t0
    return signal


def signal_from_meta(meta: dict[str, Any]) -> Signal:
    """Reload the signal a run was fitted to, from the ``signal`` entry of its config."""
    return load_signal(meta["kind"], meta["source"], **meta.get("options", {}))


__all__ = [*sorted(_LAZY), "load_signal", "signal_from_meta"]
