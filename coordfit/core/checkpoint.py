"""Checkpoints: safetensors for tensors, JSON for everything else; a checkpoint is one unit.

A checkpoint is a set of files at the top of the run folder -- ``model.safetensors``
(weights, with the model name in the safetensors metadata), ``optimizer.safetensors``
and ``train_state.json`` for the coordinate trainer -- and ``checkpoint.json``, the
record of the set: its step and the size and sha256 of every file. Nothing is pickled,
so loading never executes code.

How a set is replaced as one unit (:func:`write_checkpoint`):

1. The new files are written into a fresh hidden folder ``.checkpoint-staging-*`` and
   flushed to disk. A failure here (a full disk, ``kill -9``) leaves the previous set
   as it was; the half-written folder is a stale temporary that :func:`clean_stale`
   removes on resume.
2. The new record, naming that folder, is written atomically as
   ``.checkpoint-pending-*.json`` (named after the folder). That rename is the commit
   point.
3. The files are renamed from the folder over the old ones, then the pending record is
   renamed to ``checkpoint.json``. Renames allocate no space, so this works on a full
   disk; a crash inside it is finished by the next reader, which rolls forward. Each
   rename moves one named file once, so a reader finishing a commit at the same time as
   the writer changes nothing: whoever comes second finds the file gone and moves on.

Readers (:func:`open_checkpoint`: resume, ``coordfit render``, :func:`coordfit.load`)
finish an interrupted commit, then check each file against the record: weights of one
step beside the state of another, a truncated file or one copied in by hand are refused
in one line (a reader that meets a commit in flight looks again). So a reader sees the
old set or the new set, never a mix. The files keep
their names at the top of the run folder, where runs written before ``checkpoint.json``
keep them too (those load unverified), so tools that read ``model.safetensors`` work as
before. (Swapping whole folders instead would need two renames with a moment between
them where no checkpoint exists: POSIX cannot rename a folder over a non-empty one.)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import os
import re
import shutil
import time
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from .errors import CoordfitError
from .io import atomic_write, fsync_dir, is_temporary, os_error_message, read_json, write_json

__all__ = [
    "Checkpoint",
    "write_checkpoint",
    "open_checkpoint",
    "find_checkpoint",
    "clean_stale",
    "save_weights",
    "load_weights",
    "weights_metadata",
    "save_optimizer",
    "load_optimizer",
    "save_train_state",
    "load_train_state",
    "encode_rng",
    "decode_rng",
]

RECORD = "checkpoint.json"
FORMAT = "coordfit-checkpoint-v1"
_STAGING = ".checkpoint-staging-"  # + tempfile's random part
_PENDING = re.compile(r"^\.checkpoint-pending-([a-z0-9_]+)\.json$")  # named after its staging folder


# -- the unit ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Checkpoint:
    """The checkpoint of a run folder, checked against its record (see the module doc)."""

    run_dir: Path
    step: int | None  # None: a run from before checkpoint.json without a readable train_state.json
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {bytes, sha256}; {} if unrecorded

    def has(self, name: str) -> bool:
        return name in self.files if self.files else (self.run_dir / name).is_file()

    def path(self, name: str) -> Path:
        """The file ``name`` of this checkpoint; one line if the checkpoint has none."""
        if not self.has(name):
            raise CoordfitError(f"the checkpoint in {self.run_dir} has no {name}")
        return self.run_dir / name


def write_checkpoint(run_dir: str | Path, step: int, write: Callable[[Path], Any]) -> Checkpoint:
    """Make the files ``write(folder)`` writes the run's checkpoint of ``step``, as one unit.

    On a failure (a full disk, no permission) the previous checkpoint stays whole and the
    error is one line that says which step it keeps.
    """
    run_dir = Path(run_dir)
    _roll_forward(run_dir)
    staging: Path | None = None
    try:
        staging = Path(tempfile.mkdtemp(prefix=_STAGING, dir=run_dir))
        write(staging)
        names = sorted(p.name for p in staging.iterdir() if p.is_file() and not p.name.startswith("."))
        record = {"format": FORMAT, "step": int(step), "staging": staging.name,
                  "files": {name: _describe(staging / name) for name in names}}
        fsync_dir(staging)
        write_json(_pending_path(run_dir, staging.name), record)  # the commit point
    except BaseException as exc:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        cause = exc if isinstance(exc, OSError) else exc.__cause__
        if isinstance(cause, OSError):
            why = os_error_message(cause, f"save the checkpoint of step {step} in {run_dir}")
            raise CoordfitError(f"{why}; {_what_is_kept(run_dir)}") from None
        raise
    fsync_dir(run_dir)
    _roll_forward(run_dir)
    return Checkpoint(run_dir, int(step), record["files"])


def find_checkpoint(run_dir: str | Path, verify: bool = True) -> Checkpoint | None:
    """The run's checkpoint (None if it has none), every file checked against the record."""
    run_dir = Path(run_dir)
    record_path = run_dir / RECORD
    for attempt in range(5):
        _roll_forward(run_dir)
        if not record_path.is_file():
            break
        raw = record_path.read_bytes()
        record = _read_record(record_path)
        problem = _verify(run_dir, record) if verify else None
        if problem is None:
            return Checkpoint(run_dir, record["step"], record["files"])
        in_flight = _pending_records(run_dir) or not record_path.is_file() or record_path.read_bytes() != raw
        if not in_flight:
            raise CoordfitError(problem)
        time.sleep(0.05 * (attempt + 1))  # a writer is committing the next checkpoint: look again
    else:
        raise CoordfitError(problem)
    if (run_dir / "model.safetensors").is_file():  # a run from before checkpoint.json
        return Checkpoint(run_dir, _legacy_step(run_dir / "train_state.json"))
    return None


def _legacy_step(path: Path) -> int | None:
    """The step of an unrecorded checkpoint; None when its state is absent or unreadable
    (the weights still render; a resume reads the state itself and says what is wrong)."""
    try:
        return load_train_state(path)["step"] if path.is_file() else None
    except CoordfitError:
        return None


def open_checkpoint(run_dir: str | Path) -> Checkpoint:
    """:func:`find_checkpoint`, refusing a folder without one in one line."""
    ckpt = find_checkpoint(run_dir)
    if ckpt is None:
        raise CoordfitError(f"{run_dir} holds no checkpoint (no {RECORD} or model.safetensors)")
    return ckpt


def clean_stale(run_dir: str | Path) -> list[Path]:
    """Remove what killed writers left in ``run_dir``: hidden temporaries and staging folders."""
    run_dir = Path(run_dir)
    _roll_forward(run_dir)
    removed = []
    for path in sorted(run_dir.iterdir()):
        if path.is_dir() and path.name.startswith(_STAGING):
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_file() and is_temporary(path):
            path.unlink(missing_ok=True)
        else:
            continue
        removed.append(path)
    return removed


def _verify(run_dir: Path, record: dict[str, Any]) -> str | None:
    """Why the files in ``run_dir`` are not the set ``record`` describes, or None."""
    where = f"the checkpoint of step {record['step']} in {run_dir}"
    for name, want in record["files"].items():
        path = run_dir / name
        if not path.is_file():
            return f"{where} is incomplete: {name} is missing"
        if _describe(path) != want:
            return (f"{where} is torn: {name} is not the file saved with it (its size or sha256 differs "
                    f"from {RECORD}); refusing to use it")
    return None


def _describe(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _read_record(path: Path) -> dict[str, Any]:
    record = read_json(path, expect=dict, keys=("format", "step", "files"))
    files = record["files"]
    ok = (
        record["format"] == FORMAT
        and isinstance(record["step"], int) and not isinstance(record["step"], bool) and record["step"] >= 0
        and isinstance(files, dict)
        and all(isinstance(v, dict) and set(v) == {"bytes", "sha256"} and Path(k).name == k and not k.startswith(".")
                for k, v in files.items())
        and (path.name == RECORD or _is_staging_name(record.get("staging")))
    )
    if not ok:
        raise CoordfitError(f"{path} is not a {FORMAT} record; the checkpoint cannot be trusted")
    return record


def _what_is_kept(run_dir: Path) -> str:
    try:
        kept = find_checkpoint(run_dir, verify=False)
    except CoordfitError:
        kept = None
    if kept is None or kept.step is None:
        return "there is no earlier checkpoint"
    return f"the checkpoint of step {kept.step} is kept"


def _is_staging_name(name: Any) -> bool:
    return isinstance(name, str) and name.startswith(_STAGING) and Path(name).name == name


def _pending_path(run_dir: Path, staging_name: str) -> Path:
    return run_dir / f".checkpoint-pending-{staging_name[len(_STAGING):]}.json"


def _pending_records(run_dir: Path) -> list[Path]:
    return sorted(p for p in run_dir.glob(".checkpoint-pending-*.json") if _PENDING.match(p.name))


def _roll_forward(run_dir: Path) -> None:
    """Finish commits that a crash left half done (renames only: works on a full disk)."""
    for pending in _pending_records(run_dir):
        try:
            record = _read_record(pending)
        except CoordfitError:
            if not pending.exists():  # finished meanwhile by the writer or another reader
                continue
            raise
        if _pending_path(run_dir, record["staging"]) != pending:
            raise CoordfitError(f"{pending} names another staging folder ({record['staging']})")
        staging = run_dir / record["staging"]
        try:
            for name in record["files"]:
                _move(staging / name, run_dir / name)
            _move(pending, run_dir / RECORD)
            fsync_dir(run_dir)
        except OSError as exc:
            raise CoordfitError(os_error_message(exc, f"finish saving the checkpoint in {run_dir}")) from None
        shutil.rmtree(staging, ignore_errors=True)


def _move(src: Path, dst: Path) -> None:
    try:
        os.replace(src, dst)
    except FileNotFoundError:  # moved already, by whoever else finished the same commit
        pass


# -- the files -------------------------------------------------------------------------
def save_weights(path: str | Path, module: torch.nn.Module, model_name: str) -> Path:
    """Write ``module``'s state dict to ``path`` with ``model_name`` in the metadata."""
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    meta = {"model": model_name, "format": "coordfit-weights-v1"}
    return atomic_write(path, lambda p: save_file(state, str(p), metadata=meta))


def weights_metadata(path: str | Path) -> dict[str, str]:
    path = Path(path)
    if not path.is_file():
        raise CoordfitError(f"{path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise CoordfitError(f"{path} is not a safetensors checkpoint ({exc})") from None


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CoordfitError(f"{path} is not a readable safetensors file ({exc})") from None


def load_weights(path: str | Path, module: torch.nn.Module, model_name: str) -> None:
    """Load weights saved by :func:`save_weights` into ``module``.

    Refuses, with a one-line :class:`CoordfitError`, weights saved by another model or
    whose tensor names or shapes do not fit ``module``.
    """
    meta = weights_metadata(path)
    saved = meta.get("model")
    if saved is not None and saved != model_name:
        raise CoordfitError(f"{path} holds weights of model '{saved}', not '{model_name}'")
    state = _load_tensors(Path(path))
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if missing or extra:
        raise CoordfitError(
            f"{path} does not fit model '{model_name}' "
            f"(missing {missing[:3]}, unexpected {extra[:3]})"
        )
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise CoordfitError(
                f"{path} does not fit model '{model_name}': {key} has shape "
                f"{tuple(value.shape)}, the model expects {tuple(own[key].shape)}"
            )
    module.load_state_dict(state)


def save_optimizer(path: str | Path, optimizer: torch.optim.Optimizer) -> Path:
    """Flatten an optimizer's state into safetensors; hyper-parameters go in metadata."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, pstate in sd["state"].items():
        for name, value in pstate.items():
            key = f"{pid}.{name}"
            if torch.is_tensor(value):
                tensors[key] = value.detach().contiguous().cpu()
            else:
                scalars[key] = value
    meta = {"param_groups": json.dumps(sd["param_groups"]), "scalars": json.dumps(scalars)}
    if not tensors:  # safetensors needs at least one tensor
        tensors["__empty__"] = torch.zeros(1)
    return atomic_write(path, lambda p: save_file(tensors, str(p), metadata=meta))


def load_optimizer(path: str | Path, optimizer: torch.optim.Optimizer) -> None:
    """Load the state :func:`save_optimizer` wrote into ``optimizer``; one line for a file
    that holds no optimizer state or one whose groups do not fit ``optimizer``."""
    meta = weights_metadata(path)
    tensors = _load_tensors(Path(path))
    tensors.pop("__empty__", None)
    try:
        groups = json.loads(meta["param_groups"])
        scalars = json.loads(meta.get("scalars", "{}"))
    except (KeyError, json.JSONDecodeError):
        raise CoordfitError(f"{path} holds no optimizer state (its metadata lacks param_groups)") from None
    if not (isinstance(groups, list) and all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups)
            and isinstance(scalars, dict)):
        raise CoordfitError(f"{path} holds no optimizer state (param_groups is not a list of groups)")
    state: dict[int, dict[str, Any]] = {}
    for key, value in [*tensors.items(), *scalars.items()]:
        pid, dot, name = key.partition(".")
        if not (dot and pid.isdigit() and name):
            raise CoordfitError(f"{path}: '{key}' is not an optimizer state entry (<param>.<name>)")
        state.setdefault(int(pid), {})[name] = value
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except ValueError as exc:  # torch: other group count or sizes than this optimizer's
        raise CoordfitError(f"{path} does not fit this optimizer ({exc})") from None


def save_train_state(path: str | Path, state: dict[str, Any]) -> Path:
    return write_json(path, state)


def load_train_state(path: str | Path) -> dict[str, Any]:
    """Read a train state; refuses, in one line, one without a whole non-negative ``step``
    or with a ``seconds`` that is not a finite non-negative number."""
    state = read_json(path, expect=dict, keys=("step",))
    step = state["step"]
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CoordfitError(f"{path}: step must be a whole number >= 0, got {step!r}")
    seconds = state.get("seconds", 0.0)
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or not (math.isfinite(seconds) and seconds >= 0):
        raise CoordfitError(f"{path}: seconds must be a number >= 0, got {seconds!r}")
    return state


def encode_rng(generator: torch.Generator) -> str:
    """A generator's state as base64 text (for train_state.json)."""
    return base64.b64encode(generator.get_state().numpy().tobytes()).decode()


def decode_rng(text: Any, generator: torch.Generator, where: str | Path) -> torch.Tensor:
    """The state :func:`encode_rng` wrote, checked to fit ``generator``; one line if not."""
    try:
        raw = base64.b64decode(text, validate=True) if isinstance(text, str) else b""
    except (binascii.Error, ValueError):
        raw = b""
    size = generator.get_state().numel()
    if len(raw) != size:
        raise CoordfitError(f"{where}: rng is not the base64 state of a random generator ({size} bytes)")
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).clone()
