"""Named presets: a model, its options and training settings, with a one-line description."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import CoordfitError

__all__ = ["Preset", "PRESETS", "get_preset", "register_preset"]


@dataclass(frozen=True)
class Preset:
    name: str
    kind: str  # signal kind it is meant for
    model: str
    description: str
    model_options: dict[str, Any] = field(default_factory=dict)
    train_options: dict[str, Any] = field(default_factory=dict)


PRESETS: dict[str, Preset] = {}


def register_preset(preset: Preset) -> Preset:
    PRESETS[preset.name] = preset
    return preset


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise CoordfitError(f"unknown preset '{name}' (see `coordfit presets`)") from None


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
    Preset("coordx-shape", "shape", "coordx", "CoordX x+y+z on occupancy: 32k-node sub-grids, half near the surface",
           {"split": "x+y+z"}, {"grid_batch": 1 << 15}),
    Preset("coordx-shape-xy+z", "shape", "coordx", "CoordX xy+z on occupancy: random xy nodes x random z values",
           {"split": "xy+z"}, {"grid_batch": 1 << 15}),
    Preset("siren-shape", "shape", "siren", "SIREN 5x256 on occupancy, random points (half near the surface)",
           {}, {"batch_points": 1 << 14}),
):
    register_preset(_p)
