"""Run configs read back: to resume a run, or to start one again (``--config``).

``config.json`` records what a run was fitted on (``signal``), with which model
(``model``, ``model_config``, ``grid``) and how (``train``: every value resolved), and a
sha256 of the source file (``source_sha256``). A resume reads it through
:func:`read_run_config`, refusing a damaged file in one line, and checks with
:func:`check_signal` that the source still holds what the run was fitted on: a different
size is refused, different content warned.

A new run can start from a config file (:func:`read_config_file`, JSON or YAML): a run
folder's ``config.json`` as it is, or a hand-written file with any of its parts. It
becomes a :class:`RunSpec`, under which explicit choices go (:meth:`RunSpec.overridden`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.checkpoint import clean_stale, find_checkpoint
from ..core.checks import check_run_folder
from ..core.errors import CoordfitError
from ..core.io import BUILTIN_SOURCE, read_json, read_mapping

__all__ = ["read_run_config", "source_sha256", "check_signal", "discard_if_unstarted", "RunSpec", "read_config_file"]

_TYPES = {"model": str, "model_config": dict, "grid": dict, "signal": dict, "train": dict}


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """``run_dir/config.json``, refused in one line unless it is a coordfit run config."""
    check_run_folder(run_dir)
    path = Path(run_dir) / "config.json"
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
def discard_if_unstarted(run_dir: Path | None, keep_folder: bool = False) -> Iterator[None]:
    """On a failure before the run's first checkpoint, remove what the run wrote (config,
    logs, curves, temporaries) and then the folder if empty (unless ``keep_folder``: one
    the user made), so the same ``--out`` works again."""
    try:
        yield
    except BaseException:
        if run_dir is not None and run_dir.is_dir() and not _has_checkpoint(run_dir):
            clean_stale(run_dir)
            for name in ("config.json", "log.csv", "log.jsonl", "curves.png"):  # log.jsonl: nvs train
                (run_dir / name).unlink(missing_ok=True)
            shutil.rmtree(run_dir / "tensorboard", ignore_errors=True)
            if not keep_folder and not any(run_dir.iterdir()):
                run_dir.rmdir()
        raise


def _has_checkpoint(run_dir: Path) -> bool:
    try:
        return find_checkpoint(run_dir, verify=False) is not None
    except CoordfitError:  # a damaged record still marks a checkpoint: keep everything
        return True


# -- starting a run from a config file -----------------------------------------------
# config.json's keys; "grid", "split" (also in model_config), "coordfit_version" and
# "created" describe the run and are not choices; "preset" only in hand-written files.
_SPEC_KEYS = ("signal", "model", "model_config", "train", "preset")
_RECORD_KEYS = ("coordfit_version", "grid", "split", "source_sha256")


@dataclass
class RunSpec:
    """What a config file asks for; every part optional (None or empty: the usual default)."""

    kind: str | None = None  # signal kind: image, video, shape
    source: str | None = None  # the signal's path or built-in name
    signal_options: dict[str, Any] = field(default_factory=dict)  # the signal's load options
    model: str | None = None
    model_options: dict[str, Any] = field(default_factory=dict)  # the model's config fields
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields
    preset: str | None = None
    source_sha256: str | None = None  # of the source when the config was written (a run's)
    path: Path | None = None  # the file it was read from, for messages

    def overridden(
        self,
        *,
        kind: str | None = None,
        source: str | None = None,
        model: str | None = None,
        preset: str | None = None,
        model_options: Mapping[str, Any] | None = None,
        train: Mapping[str, Any] | None = None,
        signal_options: Mapping[str, Any] | None = None,
    ) -> RunSpec:
        """This spec under explicit choices (None/empty: not chosen): each given value wins.

        The config's model options apply only to its own model: choosing another model
        drops them. A ``kind`` other than the config's is refused in one line.
        """
        where = self.path or "the config"
        if kind is not None and self.kind is not None and kind != self.kind:
            raise CoordfitError(f"{where} is a config for coordfit {self.kind}, not {kind}; "
                                f"start it with: coordfit {self.kind} --config {where}")
        same_model = model is None or model == self.model
        return dataclasses.replace(
            self,
            kind=kind or self.kind,
            source=source if source is not None else self.source,
            model=model or self.model,
            preset=preset or self.preset,
            model_options={**(self.model_options if same_model else {}), **(model_options or {})},
            train={**self.train, **(train or {})},
            signal_options={**self.signal_options, **(signal_options or {})},
            source_sha256=self.source_sha256 if source is None else None,
        )

    def check_source(self, signal: Any) -> None:
        """Warn when the source a run's config names has changed since that run."""
        if self.source_sha256 is not None and source_sha256(signal.meta()) != self.source_sha256:
            warnings.warn(f"{signal.meta().get('source')} changed since {self.path} was written (other content); "
                          "this run fits the new content", stacklevel=2)


def read_config_file(path: str | Path) -> RunSpec:
    """Read a run config (``.json``, or ``.yaml``/``.yml`` with PyYAML installed) as a :class:`RunSpec`.

    A run folder (its ``config.json``) is accepted too. Relative signal paths are read
    from the config file's folder. Anything malformed is one :class:`CoordfitError` line
    (the training settings are checked where they are used, with this file named).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    data = read_mapping(path)
    known = _SPEC_KEYS + _RECORD_KEYS
    unknown = [k for k in data if k not in known]
    if unknown:
        raise CoordfitError(f"{path}: unknown key(s) {', '.join(map(repr, unknown))} "
                            f"(a run config has {', '.join(_SPEC_KEYS)})")
    signal = _part(data, "signal", dict, path)
    model_options = dict(_part(data, "model_config", dict, path))
    if model_options.get("split") is None and isinstance(data.get("split"), str):
        model_options["split"] = data["split"]  # configs before model_config recorded the split
    if "coordfit_version" in data and isinstance(data.get("model"), str):  # a run's: fields it predates
        model_options = {**_saved_defaults(data["model"]), **model_options}  # as it was fitted
    train = dict(_part(data, "train", dict, path))
    if "target_psnr" in train:  # configs of older coordfit
        train.setdefault("target", train.pop("target_psnr"))
    for key in ("model", "preset"):
        _part(data, key, str, path)
    options = signal.get("options", {})
    if not isinstance(options, dict):
        raise CoordfitError(f"{path}: 'signal' options should be an object")
    source = signal.get("source")
    if source is not None and not isinstance(source, str):
        raise CoordfitError(f"{path}: the signal's 'source' should be text, not {type(source).__name__}")
    return RunSpec(kind=signal.get("kind"), source=_relative_to(source, path.parent), signal_options=dict(options),
                   model=data.get("model"), model_options=model_options, train=train, preset=data.get("preset"),
                   source_sha256=data.get("source_sha256"), path=path)


def _saved_defaults(model: str) -> dict[str, Any]:
    """The model's options for runs saved before they existed (see ``create_saved_model``)."""
    from ..models.registry import saved_defaults

    try:
        return saved_defaults(model)
    except CoordfitError:  # an unknown model is refused where the run starts
        return {}


def _part(data: dict[str, Any], key: str, kind: type, path: Path) -> Any:
    value = data.get(key, kind())
    if not isinstance(value, kind):
        raise CoordfitError(f"{path}: '{key}' should be {'text' if kind is str else 'an object'}, "
                            f"not {type(value).__name__}")
    return value


def _relative_to(source: str | None, folder: Path) -> str | None:
    """A relative file path in a config is read from the config's folder; built-ins stay."""
    if source is None or BUILTIN_SOURCE.match(source) or Path(source).is_absolute():
        return source
    return str((folder / source).resolve())
