"""Existing run folders listed side by side (``coordfit runs``), newest first.

A run folder is found by its ``config.json`` anywhere under a root (``runs/`` by
default; report folders hold run folders too). Each becomes a :class:`RunRow` from
files the run wrote: ``config.json`` (input, model), ``metrics.json`` (parameters,
steps, seconds, the quality figure) and, for a run stopped before its metrics,
``train_state.json`` (steps, seconds). View-synthesis runs (``coordfit nvs train``) are
listed too, as kind ``nvs``: their input is the scenes' folder (or ``procedural``), their
quality the last training-batch PSNR. Nothing is written: listing a folder never
finishes a checkpoint or changes a file. Folders that are not runs (damaged configs) are
returned as skipped, with the reason.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..core.errors import CoordfitError
from ..core.io import source_stem

__all__ = ["RunRow", "list_runs"]

# Files that mark a folder as some run's (a fit's, or another command's).
_RUN_MARKS = ("config.json", "checkpoint.json", "model.safetensors", "metrics.json")


@dataclass
class RunRow:
    """One run folder, as ``coordfit runs`` shows it (None: not recorded)."""

    path: str  # the folder
    input: str  # the input's name (source_stem of the source)
    source: str | None  # the input as recorded: a path or a built-in name
    kind: str  # image, video, shape, views, nvs
    model: str
    split: str | None  # split models' branches (x+y...), None for unsplit models
    params: int | None
    steps: int | None
    seconds: float | None  # of training
    quality_name: str  # psnr, iou: the signal's quality figure, evaluated after training
    quality: float | None
    quality_unit: str
    state: str  # what stopped it (steps, time_budget, target, interrupted), unfinished (killed), no checkpoint
    when: str  # when the run last wrote its results or checkpoint (local time, ISO 8601)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def list_runs(root: str | Path = "runs") -> tuple[list[RunRow], list[tuple[Path, str]]]:
    """The fit runs under ``root`` (or ``root`` itself), newest first, and the run-like
    folders skipped with why. A missing ``root`` is one :class:`CoordfitError` line."""
    root = Path(root)
    if not root.is_dir():
        raise CoordfitError(f"{root} does not exist or is not a folder")
    rows: list[tuple[float, RunRow]] = []
    skipped: list[tuple[Path, str]] = []
    for folder in _run_folders(root):
        try:
            rows.append(_row(folder))
        except CoordfitError as exc:
            skipped.append((folder, str(exc)))
    rows.sort(key=lambda r: r[0], reverse=True)
    return [r for _, r in rows], skipped


def _run_folders(root: Path) -> list[Path]:
    """Folders holding a run's files; their subfolders (checkpoint staging, tensorboard) are not searched."""
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        if any(mark in files for mark in _RUN_MARKS):
            found.append(Path(folder))
            subfolders.clear()
    return found


def _read(path: Path) -> dict[str, Any] | None:
    """A JSON object, or None when the file is absent; damage is one line."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CoordfitError(f"{path.name} is unreadable ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise CoordfitError(f"{path.name} does not hold an object")
    return data


def _row(folder: Path) -> tuple[float, RunRow]:
    from ..signals import signal_class

    config = _read(folder / "config.json")
    if config is None:
        raise CoordfitError("no config.json")
    signal = config.get("signal")
    if "signal" not in config and isinstance(config.get("model"), str) and "model_config" in config:
        scenes = config.get("scenes")  # a view-synthesis run: scenes (or procedural ones), no signal
        signal = {"kind": "nvs", "source": scenes if isinstance(scenes, str) else "procedural"}
        quality = ("final_batch_psnr", "dB")
    elif not isinstance(signal, dict) or not isinstance(config.get("model"), str) or "kind" not in signal:
        raise CoordfitError("not a run (its config.json has no signal and model)")
    else:
        try:
            cls = signal_class(str(signal["kind"]))
        except CoordfitError:
            raise CoordfitError(f"a run of an unknown signal kind '{signal['kind']}'") from None
        quality = (cls.quality_name, cls.quality_unit)
    metrics = _read(folder / "metrics.json") or {}
    state = _read(folder / "train_state.json") or {}
    times = [p.stat().st_mtime for p in (folder / n for n in ("metrics.json", "train_state.json", "config.json"))
             if p.exists()]
    when = max(times)
    current = not state or state.get("step") == metrics.get("steps")  # metrics of the checkpoint's step
    steps = metrics.get("steps") if current and metrics else state.get("step")
    seconds = metrics.get("train_seconds") if current and metrics else state.get("seconds")
    stopped = metrics.get("stopped_by") if current and metrics else state.get("stopped_by")
    q, unit = quality
    split = metrics.get("split", config.get("split"))
    for name, value, kinds in (("params", metrics.get("params"), int), ("steps", steps, int),
                               ("seconds", seconds, (int, float)), (q, metrics.get(q), (int, float)),
                               ("stopped_by", stopped, str), ("split", split, str)):
        if value is not None and (not isinstance(value, kinds) or isinstance(value, bool)):
            raise CoordfitError(f"damaged: its {name} is {value!r:.30}, not a {'text' if kinds is str else 'number'}")
    return when, RunRow(
        path=str(folder),
        input=source_stem(signal.get("source")),
        source=signal.get("source"),
        kind=str(signal["kind"]),
        model=config["model"],
        split=split if signal["kind"] != "nvs" and _splittable(config["model"]) else None,
        params=metrics.get("params"),
        steps=steps,
        seconds=seconds,
        quality_name=q,
        quality=metrics.get(q) if current else None,
        quality_unit=unit,
        state=stopped or ("unfinished" if state else "no checkpoint"),
        when=datetime.fromtimestamp(when).isoformat(timespec="seconds"),
    )


def _splittable(model: str) -> bool:
    """Whether ``model`` splits its input (a model no longer registered: assume so, show what was recorded)."""
    from ..models import model_entry

    try:
        return model_entry(model).splittable
    except CoordfitError:
        return True
