"""The speedup report: suites as data, one timing protocol, the report writer.

>>> from coordfit.bench import build_suite, run_suite  # doctest: +SKIP
>>> run_suite(build_suite("quick"), "reports/mine")  # doctest: +SKIP
"""

from __future__ import annotations

from .report import collect_results as collect_results
from .report import merge_reports as merge_reports
from .report import write_report as write_report
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

__all__ = [
    "KindSettings", "ModelSpec", "PeakMemory", "SignalSpec", "Suite", "build_suite", "collect_results",
    "machine_info", "merge_reports", "parse_shard", "run_suite", "time_call", "time_interleaved", "train_interleaved",
    "write_report",
]
