"""What the JSON files of a report folder hold, checked when they are read back.

``suite.json`` and ``items/*.json`` may be edited by hand, copied between versions or
cut short; the report, ``--resume`` and ``merge`` read them through :func:`read_record`,
so a file that lacks a key or holds a value of the wrong type is one line naming the
file and the key, never a ``KeyError`` deep in a table.

A shape is a type or a tuple of types, a predicate :class:`Is`, a list ``[shape]`` (every
element), or a dict of keys (a key ending in ``?`` may be absent; ``"*"`` stands for every key).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import CoordfitError
from ..core.io import read_json

__all__ = ["Is", "read_record", "read_item", "read_suite_file", "check_record",
           "SUITE_FILE", "FIT_ITEM", "FAILED_ITEM", "TIMING_ITEM"]


@dataclass(frozen=True)
class Is:
    """A value passing ``test``, described as ``what`` in the error."""

    what: str
    test: Callable[[Any], bool]


NUMBER = Is("a finite number", lambda v: isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v))
POSITIVE = Is("a positive number", lambda v: NUMBER.test(v) and v > 0)
COUNT = Is("a whole number of at least 1", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1)
COUNT0 = Is("a whole number", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0)
OPTIONAL_NUMBER = Is("a number or null", lambda v: v is None or NUMBER.test(v))
OPTIONAL_COUNT = Is("a whole number or null", lambda v: v is None or COUNT0.test(v))
TEXT = str

KIND_SETTINGS = {"steps": COUNT, "seconds": POSITIVE, "target": NUMBER, "width?": COUNT,
                 "grid_batch?": COUNT, "batch_points?": COUNT}
SUITE = {
    "name": TEXT,
    "signals": [{"id": TEXT, "kind": TEXT, "source?": (str, type(None)), "options?": dict,
                 "size?": OPTIONAL_COUNT}],
    "models": [{"label": TEXT, "model": TEXT, "options?": dict, "match?": (str, type(None))}],
    "kinds": {"*": KIND_SETTINGS},
    "repeats": COUNT, "warmup": COUNT0, "seed": COUNT0, "device": TEXT,
}
SHARD = Is("a shard [I, N]", lambda v: isinstance(v, list) and len(v) == 2 and all(COUNT.test(x) for x in v)
         and v[0] <= v[1])
SUITE_FILE = {"suite": SUITE, "shard?": SHARD, "shards?": [SHARD]}
FAILED_ITEM = {"signal": TEXT, "kind": TEXT, "model": TEXT, "protocol": TEXT, "error": TEXT}
FIT_ITEM = {
    "signal": TEXT, "kind": TEXT, "model": TEXT, "registry_model": TEXT, "protocol": TEXT, "options": dict,
    "params": COUNT0, "metrics": {"*": (int, float, str, bool, list, dict, type(None))},
    "time_to_target": Is("{reached, seconds} (seconds a number when reached, else null)",
                         lambda v: isinstance(v, dict) and isinstance(v.get("reached"), bool)
                         and (NUMBER.test(v.get("seconds")) if v["reached"] else v.get("seconds") is None)),
    "curve": [Is("a row [step, seconds, quality]", lambda v: isinstance(v, list) and len(v) == 3
                 and all(NUMBER.test(x) for x in v))],
    "run_dir": TEXT,
}
LOADS = Is("a list of load averages", lambda v: isinstance(v, list) and len(v) > 0 and all(NUMBER.test(x) for x in v))
_STAT = {"median": POSITIVE, "min": NUMBER, "max": NUMBER}
TIMING_ITEM = {
    "signal": TEXT, "kind": TEXT, "shape": [COUNT],
    "machine": {"cpu": TEXT, "cpu_cores": OPTIONAL_COUNT, "torch": TEXT, "torch_threads": COUNT, "device": TEXT,
                "host": TEXT, "gpu?": TEXT, "load_average?": LOADS},
    "models": {"*": {"flops_per_sample?": OPTIONAL_NUMBER, "train_samples_per_s": POSITIVE,
                     "inference_seconds": _STAT, "train_step_seconds": _STAT,
                     "train_peak_memory_bytes?": OPTIONAL_COUNT, "inference_peak_memory_bytes?": OPTIONAL_COUNT}},
}
_REDO = " (a damaged measurement: restore the file, or delete it and run the shard again with --resume)"


def _type_name(shape: Any) -> str:
    if isinstance(shape, Is):
        return shape.what
    if isinstance(shape, dict):
        return "an object"
    if isinstance(shape, list):
        return "a list"
    types = shape if isinstance(shape, tuple) else (shape,)
    names = {str: "text", dict: "an object", list: "a list", bool: "true or false", int: "a number",
             float: "a number", type(None): "null"}
    return " or ".join(dict.fromkeys(names.get(t, t.__name__) for t in types))


def _problem(value: Any, shape: Any, where: str) -> str | None:
    """The first way ``value`` differs from ``shape``, as ``"key: what is wrong"``; None if it fits."""
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return f"{where or 'the file'} should be {_type_name(shape)}, not {type(value).__name__}"
        for key, sub in shape.items():
            name = key.rstrip("?")
            keys = list(value) if key == "*" else [name]
            for k in keys:
                if k not in value:
                    if key.endswith("?"):
                        continue
                    return f"lacks {(where + '.' if where else '') + k!r}"
                found = _problem(value[k], sub, f"{where}.{k}" if where else k)
                if found:
                    return found
        return None
    if isinstance(shape, list):
        if not isinstance(value, list):
            return f"{where} should be a list, not {type(value).__name__}"
        for j, v in enumerate(value):
            found = _problem(v, shape[0], f"{where}[{j}]")
            if found:
                return found
        return None
    if isinstance(shape, Is):
        ok = shape.test(value)
    else:
        types = shape if isinstance(shape, tuple) else (shape,)
        ok = isinstance(value, types) and (bool in types or not isinstance(value, bool))  # true is not a number
    return None if ok else f"{where} should be {_type_name(shape)}, not {value!r:.40}"


def check_record(data: Any, shape: Any, path: str | Path, hint: str = "") -> Any:
    """``data`` when it fits ``shape``; else one :class:`CoordfitError` naming ``path`` and the key."""
    found = _problem(data, shape, "")
    if found:
        raise CoordfitError(f"{path}: {found}{hint}")
    return data


def read_record(path: str | Path, shape: Any) -> Any:
    """Read the JSON file ``path`` and check it fits ``shape`` (see :func:`check_record`)."""
    return check_record(read_json(path), shape, path)


def read_suite_file(folder: str | Path) -> dict[str, Any]:
    """A report folder's ``suite.json``: the suite (checked as :meth:`Suite.from_dict` reads it) and its shard."""
    from .suite import Suite

    path = Path(folder) / "suite.json"
    data = read_record(path, SUITE_FILE)
    try:
        suite = Suite.from_dict(data["suite"])  # keys a suite does not know
    except CoordfitError as exc:
        raise CoordfitError(f"{path}: {exc}") from None
    unset = sorted({s.kind for s in suite.signals} - set(suite.kinds))
    if unset:
        raise CoordfitError(f"{path}: suite.kinds lacks the settings of {', '.join(map(repr, unset))}")
    return data


def read_item(path: str | Path) -> dict[str, Any]:
    """An ``items/*.json`` file: a side-by-side timing, a fit, or a fit that failed."""
    data = read_json(path)
    shape = TIMING_ITEM if Path(path).stem.endswith("__timing") else (
        FAILED_ITEM if isinstance(data, dict) and "error" in data else FIT_ITEM)
    check_record(data, shape, path, _REDO)
    if shape is FIT_ITEM:  # the report's quality columns: numbers, or null where not measured
        from ..signals import signal_class

        try:
            cls = signal_class(data["kind"])
        except CoordfitError as exc:
            raise CoordfitError(f"{path}: {exc}") from None
        columns = {f"{q}?": OPTIONAL_NUMBER for q in (cls.quality_name, *cls.summary_metrics)}
        check_record(data["metrics"], columns, path, _REDO)
    return data
