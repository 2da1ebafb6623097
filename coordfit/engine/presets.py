"""Named presets: a model, its options and training settings, with a one-line description.

A preset resolves in the library (:func:`resolve_preset`), so ``coordfit.fit(...,
preset="coordx-image-r2")`` and ``coordfit image --preset coordx-image-r2`` mean the
same thing: the preset's model, model options and training settings, under whatever
the caller chose explicitly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import CoordfitError
from ..core.registry import Registry, config_from_dict
from .config import TrainConfig

__all__ = ["Preset", "PRESETS", "DEFAULT_MODEL", "ResolvedPreset", "get_preset", "list_presets", "register_preset",
           "resolve_preset"]

DEFAULT_MODEL = "coordx"  # the model of a fit that names neither a model nor a preset


@dataclass(frozen=True)
class Preset:
    name: str
    kind: str  # signal kind it is meant for
    model: str
    description: str
    model_options: dict[str, Any] = field(default_factory=dict)
    train_options: dict[str, Any] = field(default_factory=dict)
    source: str | None = None  # the signal it reproduces, fitted when the caller gives none


PRESETS: Registry[Preset] = Registry("preset")


def register_preset(preset: Preset) -> Preset:
    """Add ``preset`` (a name registered twice warns; the later one wins)."""
    return PRESETS.add(preset.name, preset)


def get_preset(name: str) -> Preset:
    return PRESETS.get(name)


def list_presets() -> list[str]:
    """Preset names, in registration order."""
    return PRESETS.names()


@dataclass(frozen=True)
class ResolvedPreset:
    """What a fit runs once a preset (or none) is merged under the caller's choices."""

    kind: str
    model: str
    model_options: dict[str, Any]
    train: TrainConfig
    source: str | None  # the preset's signal, for a fit given none


def resolve_preset(
    name: str | None,
    *,
    kind: str | None = None,
    model: str | None = None,
    model_options: Mapping[str, Any] | None = None,
    train: TrainConfig | Mapping[str, Any] | None = None,
) -> ResolvedPreset:
    """Merge preset ``name`` (None: no preset) under the caller's explicit choices.

    Explicit choices win; the preset fills the rest; then the defaults (an image,
    ``coordx``, :class:`TrainConfig`'s fields). ``train`` is a mapping of the training
    fields the caller set, or a :class:`TrainConfig` whose fields that still hold their
    defaults take the preset's values. A ``kind`` or ``model`` that contradicts the
    preset is refused with one line.
    """
    if isinstance(train, TrainConfig):
        explicit = train.changed()
    else:
        explicit = dict(train or {})
    if name is None:
        return ResolvedPreset(kind or "image", model or DEFAULT_MODEL, dict(model_options or {}),
                              config_from_dict(TrainConfig, explicit, "training"), None)
    p = get_preset(name)
    if kind is not None and kind != p.kind:
        raise CoordfitError(f"preset '{name}' is for {p.kind} signals, not {kind}")
    if model is not None and model != p.model:
        raise CoordfitError(f"preset '{name}' uses model '{p.model}', not '{model}'")
    return ResolvedPreset(p.kind, p.model, {**p.model_options, **(model_options or {})},
                          config_from_dict(TrainConfig, {**p.train_options, **explicit}, "training"), p.source)


# The papers' image setting: the whole 512 x 512 grid every step, Adam 1e-4, 10,000 steps,
# on cameraman. scikit-image's camera() is the post-0.18 photo, not the 2020 papers' one,
# so their PSNRs are not comparable; the settings are.
_PAPER_IMAGE = {"steps": 10_000, "lr": 1e-4, "grid_batch": 512 * 512, "batch_points": 512 * 512}
_CAMERA = "skimage:camera"

for _p in (
    Preset("siren-image", "image", "siren", "SIREN 5x256, w0=30, Adam 1e-4 (the paper's image setting)"),
    Preset("pe-image", "image", "pe-mlp", "ReLU MLP on Gaussian Fourier features, sigma=10 (Tancik et al.)"),
    Preset("nerf-pe-image", "image", "pe-mlp", "ReLU MLP on NeRF frequencies (L by Nyquist)", {"encoding": "nerf"}),
    Preset("coordx-image", "image", "coordx", "CoordX partial split x+y, 2 shared layers, rank 1 (the default)", {"split": "x+y"}),
    Preset("coordx-image-r2", "image", "coordx", "CoordX x+y with feature expansion R=2", {"split": "x+y", "rank": 2}),
    Preset("coordx-image-full", "image", "coordx", "CoordX full split x+y: a rank-16 CP decomposition (fast, blurrier)",
           {"split": "x+y", "full_split": True, "rank": 16}),
    Preset("coordx-pe-image", "image", "coordx", "CoordX with ReLU branches on per-axis NeRF encodings",
           {"split": "x+y", "activation": "relu", "encoding": "nerf"}, {"lr": 1e-3}),
    Preset("siren-image-paper", "image", "siren", "the SIREN paper's image fit: whole 512x512 grid, 10k steps, "
           "Adam 1e-4 (cameraman when no image is given)", {}, _PAPER_IMAGE, _CAMERA),
    Preset("coordx-image-paper", "image", "coordx", "the CoordX paper's image fit, official defaults (partial split "
           "x+y, 2 shared layers, R=1): whole grid, 10k steps, Adam 1e-4 (cameraman)", {"split": "x+y"},
           _PAPER_IMAGE, _CAMERA),
    Preset("coordx-image-full-paper", "image", "coordx", "the official CoordX full split (rank 256), paper image "
           "settings: whole grid, 10k steps, Adam 1e-4 (cameraman)", {"split": "x+y", "full_split": True, "rank": 256},
           _PAPER_IMAGE, _CAMERA),
    Preset("coordx-video-xy+t", "video", "coordx", "CoordX video split xy+t: random frames x random pixels per step (the default)",
           {"split": "xy+t"}),
    Preset("coordx-video-x+y+t", "video", "coordx", "CoordX video split x+y+t: random subsets of every axis per step",
           {"split": "x+y+t"}),
    Preset("siren-video", "video", "siren", "SIREN 5x256 on (t, y, x) with random point batches, Adam 1e-4"),
    Preset("hashgrid-image", "image", "hashgrid", "instant-ngp hash grid L=16 F=2, N_max=size/2, 64x2 MLP; 8192 pixels a step (CPU-sized)",
           {}, {"batch_points": 1 << 13}),
    Preset("splitgrid-image", "image", "splitgrid", "split grid x+y: a 1-D grid per axis, rank-32 outer product, 16-wide MLP",
           {"split": "x+y"}),
    Preset("hashgrid-video", "video", "hashgrid", "instant-ngp hash grid on (t, y, x), T=2^19, random voxel batches",
           {}, {"batch_points": 1 << 13}),
    Preset("splitgrid-video-xy+t", "video", "splitgrid", "split grid xy+t: a 2-D frame grid times a 1-D time grid, rank 32",
           {"split": "xy+t"}),
    Preset("coordx-shape", "shape", "coordx", "CoordX x+y+z on occupancy: 32k-node sub-grids, a quarter of each axis's draws around a surface point",
           {"split": "x+y+z"}, {"grid_batch": 1 << 15}),
    Preset("coordx-shape-xy+z", "shape", "coordx", "CoordX xy+z on occupancy: random xy nodes x random z values",
           {"split": "xy+z"}, {"grid_batch": 1 << 15}),
    Preset("siren-shape", "shape", "siren", "SIREN 5x256 on occupancy, random points (half near the surface)",
           {}, {"batch_points": 1 << 14}),
    Preset("hashgrid-views", "views", "hashgrid", "radiance field for posed views: hash grid with 8 levels (16's PSNR "
           "in half the CPU time), 8192 ray samples a step, 500 steps (docs/views.md)",
           {"levels": 8}, {"steps": 500, "batch_points": 8192}),
):
    register_preset(_p)
