"""Checks and parsers of plain values that need no torch.

The CLI runs them (and the torch-free :meth:`coordfit.engine.config.TrainConfig.validate`)
before it imports the library, so a mistyped choice or path is refused in a fraction of a
second instead of after torch has loaded; the library runs the same functions again, so a
value is refused in the same words from Python and from the command line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, TypeVar, get_args

from .defaults import DeviceName
from .errors import CoordfitError
from .io import BUILTIN_SOURCE

__all__ = ["check_device_name", "check_source", "check_run_folder", "parse_shard",
           "shard_items", "Outputs", "OUTPUTS", "check_outputs"]

T = TypeVar("T")

Outputs = Literal["all", "metrics", "none"]
OUTPUTS: tuple[str, ...] = get_args(Outputs)  # what a fit evaluates and writes after training
_DEVICES: tuple[str, ...] = get_args(DeviceName)


def check_device_name(name: str) -> None:
    """A device name coordfit knows (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``); whether
    that device is present is :func:`coordfit.core.device.resolve_device`'s question."""
    low = (name or "auto").lower()
    if low not in _DEVICES and not re.fullmatch(r"cuda:\d+", low):
        raise CoordfitError(f"unknown device '{name}' (choose {', '.join(_DEVICES[:-1])} or {_DEVICES[-1]})")


def check_outputs(value: str) -> None:
    if value not in OUTPUTS:
        raise CoordfitError(f"--outputs must be one of {', '.join(OUTPUTS)}, got '{value}'")


def check_source(source: str) -> None:
    """A source that names a file or folder (not a built-in such as ``skimage:camera``) must exist."""
    if BUILTIN_SOURCE.match(source):
        return
    if not Path(source).exists():
        raise CoordfitError(f"{source} does not exist")


def check_run_folder(path: str | Path) -> None:
    """``path`` is a folder holding a ``config.json`` (:func:`coordfit.runs.spec.read_run_config`
    checks what it holds)."""
    path = Path(path)
    if not path.exists():
        raise CoordfitError(f"{path} does not exist")
    if not path.is_dir():
        raise CoordfitError(f"{path} is not a folder")
    if not (path / "config.json").is_file():
        raise CoordfitError(f"{path} is not a coordfit run folder (no config.json)")


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"I/N"`` (1 <= I <= N) -> ``(I, N)``; None -> ``(1, 1)``."""
    if text is None:
        return 1, 1
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise CoordfitError(f"--shard must look like I/N (e.g. 2/8), got {text!r}") from None
    if n < 1 or not 1 <= i <= n:
        raise CoordfitError(f"--shard {text}: need 1 <= I <= N")
    return i, n


def shard_items(items: Sequence[T], shard: tuple[int, int]) -> list[T]:
    """Shard ``I/N`` of ``items``: every N-th item from the I-th, so N jobs cover them once."""
    i, n = shard
    return [x for j, x in enumerate(items) if j % n == i - 1]
