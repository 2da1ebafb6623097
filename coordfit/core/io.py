"""Files written so that nothing is ever half-written or overwritten by accident.

Every file coordfit writes goes through :func:`atomic_write`: a hidden temporary file
beside the target, flushed to disk, then renamed over it, so a crash, ``kill -9`` or a
full disk leaves the previous file (or none), never a torn one. Failures of the file
system (a full disk, a read-only folder) become one :class:`CoordfitError` line.
JSON goes through :func:`write_json` and is strict: NaN and infinities are written as
``null``, so every JSON reader accepts the files.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from .errors import CoordfitError

__all__ = [
    "atomic_write",
    "write_json",
    "read_json",
    "read_mapping",
    "to_json",
    "new_run_dir",
    "source_stem",
    "BUILTIN_SOURCE",
    "check_run_name",
    "ensure_empty_dir",
    "os_error_message",
    "fsync_dir",
    "is_temporary",
]

_TMP_MARK = ".tmp"  # atomic_write names its temporaries ".<stem>.<random>.tmp<suffix>"
# Hidden temporaries a killed writer can leave in a run folder: ours, those of coordfit
# before the ".tmp" mark (".model.<8 random chars>.safetensors"...) and ".tmp<random>".
_TEMPORARY = re.compile(
    r"^\.(?:.+\.[a-z0-9_]{8}\.tmp(?:\.\w+)?"
    r"|(?:model|optimizer|train_state|config|metrics|log|reconstruction|mesh|checkpoint)\.[a-z0-9_]{8}\.\w+"
    r"|tmp[a-z0-9_]{8}.*)$"
)


def os_error_message(exc: OSError, doing: str) -> str:
    """One line for a failed file operation: what was being done, and why it failed."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        why = "the disk is full"
    else:
        why = exc.strerror or type(exc).__name__
    return f"cannot {doing}: {why}"


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename the file into place.

    A crash or Ctrl-C while writing leaves the previous file (or none), never a torn one.
    The temporary file keeps the target's suffix so writers that look at it (imageio,
    trimesh) pick the right format. An ``OSError`` (full disk, no permission) removes the
    temporary file and becomes a :class:`CoordfitError` that names ``path``.
    """
    path = Path(path)
    tmp_path: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f"{_TMP_MARK}{path.suffix}", dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        write(tmp_path)
        os.chmod(tmp_path, 0o666 & ~_umask())
        _fsync_file(tmp_path)
        os.replace(tmp_path, path)
    except BaseException as exc:
        if tmp_path is not None:
            tmp_path.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise CoordfitError(os_error_message(exc, f"write {path}")) from exc
        raise
    return path


def _fsync_file(path: Path) -> None:
    """Push ``path``'s data to the disk, so the rename that follows never exposes an empty file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | Path) -> None:
    """Make renames inside folder ``path`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def is_temporary(path: Path) -> bool:
    """Whether ``path`` is a hidden temporary file that a killed writer left behind."""
    return bool(_TEMPORARY.match(path.name))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def to_json(data: Any) -> Any:
    """``data`` with NaN/infinite floats as None and paths, tuples, arrays as JSON types."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, str | int | bool) or data is None:
        return data
    if isinstance(data, dict):
        return {str(k): to_json(v) for k, v in data.items()}
    if isinstance(data, list | tuple | set):
        return [to_json(v) for v in data]
    if isinstance(data, Path):
        return str(data)
    if hasattr(data, "tolist"):  # numpy and torch scalars and arrays
        return to_json(data.tolist())
    raise TypeError(f"cannot serialise {type(data).__name__} to JSON")


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented, strict JSON (non-finite numbers as null), atomically."""
    text = json.dumps(to_json(data), indent=2, sort_keys=False, allow_nan=False) + "\n"
    return atomic_write(path, lambda p: p.write_text(text))


def read_json(path: str | Path, expect: type | None = None, keys: Iterable[str] = ()) -> Any:
    """Read JSON from ``path``; with ``expect``/``keys``, refuse other shapes in one line."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CoordfitError(f"{path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CoordfitError(f"{path} is not valid JSON ({exc})") from None
    except OSError as exc:
        raise CoordfitError(os_error_message(exc, f"read {path}")) from None
    if expect is not None and not isinstance(data, expect):
        kind = {dict: "an object", list: "a list"}.get(expect, expect.__name__)
        raise CoordfitError(f"{path} should hold {kind}, not {type(data).__name__}")
    missing = [k for k in keys if k not in data]
    if missing:
        raise CoordfitError(f"{path} lacks {', '.join(repr(k) for k in missing)}")
    return data


def ensure_empty_dir(path: str | Path, resumable: bool = True) -> Path:
    """Create ``path`` or accept it if empty; refuse a non-empty folder (never clobber),
    suggesting ``--resume`` where the command that asks (``resumable``) has one."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise CoordfitError(f"--out {path} exists and is not a folder")
        if any(path.iterdir()):
            checkpointed = any((path / name).exists() for name in ("checkpoint.json", "model.safetensors"))
            if (path / "config.json").is_file() and not checkpointed and not any(path.glob(".checkpoint-pending-*")):
                raise CoordfitError(f"--out {path} holds a run killed before its first checkpoint (nothing to "
                                    "resume); remove the folder or choose a new one")
            hint = f" or use --resume {path}" if resumable else ""
            raise CoordfitError(f"--out {path} is not empty; choose a new folder{hint}")
    _mkdir(path, exist_ok=True)
    return path


def _mkdir(path: Path, exist_ok: bool = False) -> None:
    """``mkdir -p``; a failure other than "it exists" (when not ``exist_ok``) is one line."""
    try:
        path.mkdir(parents=True, exist_ok=exist_ok)
    except FileExistsError:
        if not exist_ok:
            raise
        raise CoordfitError(f"cannot create the folder {path}: a file has that name") from None
    except NotADirectoryError:
        raise CoordfitError(f"cannot create the folder {path}: a parent of it is a file") from None
    except OSError as exc:
        raise CoordfitError(os_error_message(exc, f"create the folder {path}")) from None


_NAME_CHARS = re.compile(r"[^A-Za-z0-9._+-]+")
# A built-in source (skimage:astronaut, builtin:waves, primitive:torus), not C:\ or a path.
BUILTIN_SOURCE = re.compile(r"^([A-Za-z][\w+-]+):(?![/\\])")
_STEM_LENGTH = 40  # characters of the input's name kept in a run folder's name


def source_stem(source: str | Path | None) -> str:
    """The input's name as a folder-safe word: ``photo`` for ``/data/photo.png``, ``astronaut``
    for ``skimage:astronaut``, ``torus`` for ``primitive:torus``, ``frames`` for a folder."""
    text = str(source or "").rstrip("/\\")
    scheme = BUILTIN_SOURCE.match(text)
    name = text[scheme.end():] if scheme else Path(text).name
    stem = Path(name).stem if "." in name.lstrip(".") else name
    return _NAME_CHARS.sub("_", stem).strip("._-")[:_STEM_LENGTH] or "input"


def check_run_name(name: str) -> str:
    """Refuse a ``--name`` that is not one plain folder name."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith("."):
        raise CoordfitError(f"--name {name!r} must be a plain folder name (no '/', not hidden); "
                            "use --out for a path")
    return name


def new_run_dir(
    kind: str,
    model: str,
    out: str | Path | None = None,
    root: str | Path = "runs",
    *,
    stem: str | None = None,
    name: str | None = None,
) -> Path:
    """The folder of a new run, created; never an existing run's.

    ``out`` if given (must be empty or absent); else ``<root>/<kind>/<model>/<name>/``
    with ``name`` (``--name``), or ``<stem>-<YYYYmmdd-HHMMSS>`` by default (``stem``: the
    input's, see :func:`source_stem`; the bare timestamp without one). A name already
    taken gets ``-2``, ``-3``... (two runs started in one second, or a ``--name`` reused).
    """
    if out is not None:
        if name is not None:
            raise CoordfitError("--name names a folder under runs/<kind>/<model>/ and --out gives the whole "
                                "path; pass one of them")
        return ensure_empty_dir(out)
    if name is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        name = f"{stem}-{stamp}" if stem else stamp
    base = Path(root) / kind / model
    candidate = base / check_run_name(name)
    n = 2
    while True:
        try:
            _mkdir(candidate)
            return candidate
        except FileExistsError:  # taken: never reuse another run's folder
            candidate = base / f"{name}-{n}"
            n += 1


def read_mapping(path: str | Path) -> dict[str, Any]:
    """A config file's mapping: JSON, or YAML (``.yaml``/``.yml``) with PyYAML installed; one line otherwise."""
    path = Path(path)
    if path.suffix.lower() not in (".yaml", ".yml"):
        return read_json(path, expect=dict)
    try:
        import yaml
    except ImportError:
        raise CoordfitError(f"{path}: reading YAML needs PyYAML (pip install pyyaml); "
                            "a JSON config (a run's config.json) needs nothing") from None
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise CoordfitError(f"{path} does not exist") from None
    except yaml.YAMLError as exc:
        raise CoordfitError(f"{path} is not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict):
        raise CoordfitError(f"{path} should hold a mapping of keys to values, not {type(data).__name__}")
    return data
