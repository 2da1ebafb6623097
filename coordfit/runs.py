"""Run folders read back: the config checked before use, the signal checked against the run.

``config.json`` records what a run was fitted on (``signal``), with which model
(``model``, ``model_config``, ``grid``) and how (``train``), and a sha256 of the source
file (``source_sha256``). A resume reads it through :func:`read_run_config`, refusing a
damaged file in one line, and checks with :func:`check_signal` that the source still
holds what the run was fitted on: a different size is refused, different content warned.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .checkpoint import clean_stale, find_checkpoint
from .errors import CoordfitError
from .io import read_json

__all__ = ["read_run_config", "source_sha256", "check_signal", "discard_if_unstarted"]

_TYPES = {"model": str, "model_config": dict, "grid": dict, "signal": dict, "train": dict}


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """``run_dir/config.json``, refused in one line unless it is a coordfit run config."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise CoordfitError(f"{run_dir} is not a coordfit run folder (no config.json)")
    cfg = read_json(path, expect=dict, keys=_TYPES)
    for key, kind in _TYPES.items():
        if not isinstance(cfg[key], kind):
            raise CoordfitError(f"{path}: '{key}' should be {'text' if kind is str else 'an object'}, "
                                f"not {type(cfg[key]).__name__}")
    for key, sub in (("grid", ("axes", "shape", "out_features")), ("signal", ("kind", "source"))):
        missing = [k for k in sub if k not in cfg[key]]
        if missing:
            raise CoordfitError(f"{path}: '{key}' lacks {', '.join(repr(k) for k in missing)}")
    if not isinstance(cfg["signal"].get("options", {}), dict):
        raise CoordfitError(f"{path}: 'signal' options should be an object")
    return cfg


def source_sha256(meta: dict[str, Any]) -> str | None:
    """sha256 of a signal's source file (or of a folder's files, names and bytes, in
    order); None for built-in sources."""
    text = meta.get("source")
    if not isinstance(text, str) or not text:
        return None
    source = Path(text)
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else []
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(source) if path != source else "").encode() + b"\0")
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def check_signal(cfg: dict[str, Any], signal: Any, run_dir: str | Path) -> None:
    """Refuse a signal whose grid differs from the run's; warn when its source changed."""
    grid = cfg["grid"]
    was = (list(grid["shape"]), grid["out_features"])
    now = (list(signal.info.shape), signal.info.out_features)
    source = cfg["signal"]["source"]
    if was != now:
        def fmt(shape: list[int], channels: int) -> str:
            return f"{'x'.join(map(str, shape))} with {channels} channel(s)"

        raise CoordfitError(
            f"{source} is now {fmt(*now)} but {run_dir} was fitted on {fmt(*was)}; the signal no longer matches "
            f"the run (fit it anew with --out)"
        )
    recorded = cfg.get("source_sha256")
    if recorded is not None and source_sha256(signal.meta()) != recorded:
        warnings.warn(f"{source} changed since {run_dir} started (same size, other content); "
                      "resuming fits the new content", stacklevel=2)


@contextmanager
def discard_if_unstarted(run_dir: Path | None) -> Iterator[None]:
    """On a failure before the run's first checkpoint, remove what the run wrote (config,
    log, temporaries) and then the folder if empty, so the same ``--out`` works again."""
    try:
        yield
    except BaseException:
        if run_dir is not None and run_dir.is_dir() and not _has_checkpoint(run_dir):
            clean_stale(run_dir)
            for name in ("config.json", "log.csv"):
                (run_dir / name).unlink(missing_ok=True)
            if not any(run_dir.iterdir()):
                run_dir.rmdir()
        raise


def _has_checkpoint(run_dir: Path) -> bool:
    try:
        return find_checkpoint(run_dir, verify=False) is not None
    except CoordfitError:  # a damaged record still marks a checkpoint: keep everything
        return True
