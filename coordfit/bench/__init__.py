"""The speedup report: suites as data, one timing protocol, the report writer; and the
view-synthesis benchmark (:mod:`.nvs`, configured by :class:`.config.BenchConfig`).

>>> from coordfit.bench import build_suite, run_suite  # doctest: +SKIP
>>> run_suite(build_suite("quick"), "reports/mine")  # doctest: +SKIP

The names below load on first use (PEP 562), so the CLI reads :mod:`.config` to build
``coordfit nvs bench``'s flags without importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .report import collect_results as collect_results
    from .report import merge_reports as merge_reports
    from .report import write_report as write_report
    from .runner import run_report as run_report
    from .runner import run_suite as run_suite
    from .suite import KindSettings as KindSettings
    from .suite import ModelSpec as ModelSpec
    from .suite import SignalSpec as SignalSpec
    from .suite import Suite as Suite
    from .suite import build_suite as build_suite
    from .suite import parse_shard as parse_shard
    from .timing import PeakMemory as PeakMemory
    from .timing import machine_info as machine_info
    from .timing import time_call as time_call
    from .timing import time_interleaved as time_interleaved
    from .timing import train_interleaved as train_interleaved

# public name -> the module that defines it
_LAZY = {
    "KindSettings": "suite", "ModelSpec": "suite", "PeakMemory": "timing", "SignalSpec": "suite", "Suite": "suite",
    "build_suite": "suite", "collect_results": "report", "machine_info": "timing", "merge_reports": "report",
    "parse_shard": "suite", "run_report": "runner", "run_suite": "runner", "time_call": "timing", "time_interleaved": "timing",
    "train_interleaved": "timing", "write_report": "report",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'coordfit.bench' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value
