"""Files written so that nothing is ever half-written or overwritten by accident."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from .errors import CoordfitError

__all__ = ["atomic_write", "write_json", "read_json", "new_run_dir", "ensure_empty_dir"]


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename the file into place.

    A crash or Ctrl-C while writing leaves the previous file (or none), never a torn one.
    The temporary file keeps the target's suffix so writers that look at it (imageio,
    trimesh) pick the right format.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    text = json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n"
    return atomic_write(path, lambda p: p.write_text(text))


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CoordfitError(f"{path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CoordfitError(f"{path} is not valid JSON ({exc})") from None


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, tuple | set):
        return list(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def ensure_empty_dir(path: str | Path) -> Path:
    """Create ``path`` or accept it if empty; refuse a non-empty folder (never clobber)."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise CoordfitError(f"--out {path} exists and is not a folder")
        if any(path.iterdir()):
            raise CoordfitError(
                f"--out {path} is not empty; choose a new folder or use --resume {path}"
            )
    path.mkdir(parents=True, exist_ok=True)
    return path


def new_run_dir(kind: str, model: str, out: str | Path | None = None, root: str | Path = "runs") -> Path:
    """``out`` if given (must be empty or absent), else ``<root>/<kind>/<model>/<timestamp>/``."""
    if out is not None:
        return ensure_empty_dir(out)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(root) / kind / model
    candidate = base / stamp
    n = 1
    while candidate.exists():
        candidate = base / f"{stamp}-{n}"
        n += 1
    candidate.mkdir(parents=True)
    return candidate
