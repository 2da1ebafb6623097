"""Fitting many inputs with the same settings: which inputs, where each run goes, what is left.

``coordfit image kodak/`` (or several paths) fits each input into a run folder of its
own, ``<parent>/<input>/``, under one parent folder that records the settings in
``batch.json``. A rerun of the same command into the same parent finds the same
folders: finished runs are skipped, interrupted ones resumed to their own limits, the
rest fitted. ``--shard I/N`` takes every N-th input from the I-th
(:func:`coordfit.core.checks.shard_items`, as ``coordfit report`` shards its signals), so
N jobs (a Slurm array, several machines on one file system) share the list; the run
folders are named from the whole list, so every shard names them alike.

Nothing here imports torch: a plan is paths and JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..core.checks import shard_items
from ..core.errors import CoordfitError
from ..core.io import read_json, source_stem, write_json

__all__ = ["BatchItem", "expand_inputs", "is_batch", "plan_batch", "open_batch", "batch_name"]

State = Literal["new", "resume", "done", "trained"]


@dataclass(frozen=True)
class BatchItem:
    """One input of a batch, its run folder, and what a (re)run does with it."""

    source: str
    run_dir: Path
    # new: fit it; resume: continue it to its own limits; done: skip it;
    # trained: training finished but its outputs were not all written (interrupted while evaluating)
    state: State


def _files(folder: Path, suffixes: Sequence[str]) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes
                  and not p.name.startswith("."))


def is_batch(paths: Sequence[str], suffixes: Sequence[str]) -> bool:
    """Several paths, or one folder holding input files (``suffixes``): a batch. One file,
    a built-in or a folder of anything else (a video's frames) is one input."""
    if len(paths) > 1:
        return True
    return len(paths) == 1 and bool(suffixes) and Path(paths[0]).is_dir() and bool(_files(Path(paths[0]), suffixes))


def expand_inputs(paths: Sequence[str], suffixes: Sequence[str]) -> list[str]:
    """The inputs of ``paths``: files as given, folders replaced by their input files
    (``suffixes``, sorted by name, not recursive); each input once."""
    out: list[str] = []
    for text in paths:
        path = Path(text)
        if path.is_dir() and _files(path, suffixes):
            out.extend(str(p) for p in _files(path, suffixes))
        else:
            out.append(text)
    seen: set[str] = set()
    return [s for s in out if not (s in seen or seen.add(s))]


def batch_name(paths: Sequence[str], count: int) -> str:
    """The parent folder's default name: the folder's (``kodak24``), or the first input's and how many more."""
    first = source_stem(paths[0])
    return first if len(paths) == 1 else f"{first}-and-{count - 1}-more"


def _names(sources: Sequence[str]) -> list[str]:
    """A folder name per input: its stem, ``-2``, ``-3``... where stems repeat (``a.png``, ``a.jpg``)."""
    names, used = [], set()
    for source in sources:
        stem = source_stem(source)
        name, n = stem, 2
        while name in used:
            name, n = f"{stem}-{n}", n + 1
        used.add(name)
        names.append(name)
    return names


def _state(run_dir: Path) -> State:
    if not (run_dir / "train_state.json").is_file():
        return "new"  # absent, empty, or a start that left no checkpoint (fit says what is wrong)
    try:
        state = json.loads((run_dir / "train_state.json").read_text())
    except (OSError, ValueError):
        return "resume"  # the resume names what is damaged
    if not isinstance(state, dict) or not state.get("finished"):
        return "resume"
    try:  # metrics written before a long render say whether the outputs followed
        done = json.loads((run_dir / "metrics.json").read_text()).get("outputs_done", True)
    except (OSError, ValueError, AttributeError):
        return "trained"
    return "done" if done is not False else "trained"


def plan_batch(sources: Sequence[str], parent: Path, shard: tuple[int, int] = (1, 1)) -> list[BatchItem]:
    """The inputs of shard ``I/N`` of ``sources``, each with ``<parent>/<name>/`` and its state."""
    pairs = list(zip(sources, _names(sources)))
    return [BatchItem(source, parent / name, _state(parent / name)) for source, name in shard_items(pairs, shard)]


def open_batch(parent: Path, kind: str, settings: Mapping[str, Any]) -> None:
    """Record the batch's ``kind`` and ``settings`` (the flags given) in ``<parent>/batch.json``,
    or check that a rerun uses the same; refuses a parent that holds anything else."""
    record = {"kind": kind, "settings": _plain(settings)}
    path = parent / "batch.json"
    if path.is_file():
        saved = read_json(path, expect=dict)
        if saved != record:
            differ = sorted(k for k in {*saved.get("settings", {}), *record["settings"]}
                            if saved.get("settings", {}).get(k) != record["settings"].get(k))
            what = f"the settings differ: {', '.join(differ)}" if differ else f"it is a {saved.get('kind')} batch"
            raise CoordfitError(f"{parent} holds a batch made otherwise ({what}); give the same flags "
                                "to continue it, or another --out/--name")
        return
    if parent.exists() and (not parent.is_dir() or any(parent.iterdir())):
        raise CoordfitError(f"{parent} exists and is not a batch folder (no batch.json); "
                            "give another --out or --name")
    parent.mkdir(parents=True, exist_ok=True)
    write_json(path, record)


def _plain(settings: Mapping[str, Any]) -> dict[str, Any]:
    """JSON's view of ``settings`` (tuples as lists, paths as text), so a saved record compares equal."""
    return json.loads(json.dumps(dict(settings), default=str))
