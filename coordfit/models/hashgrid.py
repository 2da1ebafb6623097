"""hashgrid: instant-ngp's multiresolution hash encoding followed by a small ReLU MLP.

Defaults follow instant-ngp: L=16 levels of F=2 features, N_min=16, N_max = max(grid
size) / 2, T=2^24 entries per level for 1-2-D signals (images; every level of a
4096 px image still fits densely, so the table never reaches that size) and T=2^19 for
3-4-D (videos, SDFs), MLP 64 wide x 2 hidden, Adam lr 1e-2, betas (0.9, 0.99),
eps 1e-15.

``backend="tcnn"`` runs the same network through tiny-cuda-nn
(``tcnn.NetworkWithInputEncoding``, fp16 inside, output cast to fp32) when it imports
and CUDA is present; otherwise it warns once and uses the PyTorch path.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from ..errors import CoordfitError
from ..grid import GridInfo
from .base import CoordNet, one_of, positive
from .grid_encoding import MAX_DIMS, GridEncodingConfig, MultiresGrid, growth_factor
from .registry import register_model

__all__ = ["HashGridConfig", "HashGrid", "grid_encoding_config", "tcnn_available"]

BACKENDS = ("torch", "tcnn")


@dataclass
class HashGridConfig:
    levels: int = 16  # L: resolution levels
    features_per_level: int = 2  # F: features per level (tcnn allows 1, 2, 4, 8)
    log2_table_size: int | None = None  # log2 T, entries per hashed level (None: 24 for 1-2-D, 19 for 3-4-D)
    base_resolution: int = 16  # N_min: resolution of the coarsest level
    max_resolution: float | None = None  # N_max: of the finest level (None: max(grid size) / 2)
    per_level_scale: float | None = None  # b: growth per level (None: from N_min, N_max and L)
    width: int = 64  # MLP hidden width
    layers: int = 3  # MLP linear layers (2 hidden + output)
    backend: Literal["torch", "tcnn"] = "torch"  # tcnn: tiny-cuda-nn when present with CUDA, else torch

    def validate(self) -> None:
        positive(self, "levels", "features_per_level", "base_resolution", "max_resolution", "width", "layers")
        one_of(self, "backend", BACKENDS)
        if self.per_level_scale is not None and self.per_level_scale < 1.0:
            raise CoordfitError(f"per-level-scale must be >= 1, got {self.per_level_scale}")
        if self.log2_table_size is not None and not 1 <= self.log2_table_size <= 30:
            raise CoordfitError(f"log2-table-size must be in 1..30, got {self.log2_table_size}")


def grid_encoding_config(c: Any, dims: int, sizes: tuple[int, ...]) -> GridEncodingConfig:
    """Resolve a model config's grid fields for ``dims`` axes of ``sizes`` grid points."""
    if not 1 <= dims <= MAX_DIMS:
        raise CoordfitError(f"grid encodings take 1 to {MAX_DIMS} axes, got {dims}")
    log2_t = c.log2_table_size or (24 if dims <= 2 else 19)
    n_max = c.max_resolution or max(sizes) / 2
    b = c.per_level_scale or growth_factor(c.base_resolution, n_max, c.levels)
    return GridEncodingConfig(c.levels, c.features_per_level, log2_t, c.base_resolution, b)


def relu_mlp(dims: list[int]) -> nn.Sequential:
    """ReLU MLP ``dims[0] -> ... -> dims[-1]``, linear output."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


_warned_tcnn = False


def tcnn_available() -> str | None:
    """None when tiny-cuda-nn can run here, else the reason it cannot."""
    if not torch.cuda.is_available():
        return "no CUDA device"
    try:
        import tinycudann  # noqa: F401
    except Exception as exc:  # ImportError, or a build for another GPU
        return f"tinycudann does not import ({type(exc).__name__}: {exc})"
    return None


def _warn_tcnn(reason: str) -> None:
    global _warned_tcnn
    if not _warned_tcnn:
        warnings.warn(f"backend=tcnn unavailable ({reason}); using the PyTorch hash grid", stacklevel=3)
        _warned_tcnn = True


@register_model(
    "hashgrid",
    description="instant-ngp multiresolution hash grid + 64x2 ReLU MLP (pure PyTorch; tcnn backend optional)",
    config=HashGridConfig,
    lr=1e-2,
    adam={"betas": (0.9, 0.99), "eps": 1e-15},
)
class HashGrid(CoordNet):
    def __init__(self, config: HashGridConfig, info: GridInfo) -> None:
        super().__init__(config, info)
        c = config
        self.encoding_config = grid_encoding_config(c, info.in_features, info.shape)
        enc_out = c.levels * c.features_per_level
        dims = [enc_out] + [c.width] * (c.layers - 1) + [info.out_features]
        self._mlp_macs = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
        self.backend = "torch"
        if c.backend == "tcnn":
            reason = tcnn_available()
            if reason is None:
                self.backend = "tcnn"
                self.net = _tcnn_network(info.in_features, info.out_features, self.encoding_config, c)
            else:
                _warn_tcnn(reason)
        if self.backend == "torch":
            self.encoding = MultiresGrid(info.in_features, self.encoding_config)
            self.mlp = relu_mlp(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, D] -> [N, C]
        if self.backend == "tcnn":
            return self.net(((x + 1.0) * 0.5).clamp(0.0, 1.0)).float()
        return self.mlp(self.encoding(x))

    def flops_per_sample(self) -> float:
        """2 x (MLP multiply-adds + interpolation multiply-adds) per point.

        Interpolation counts, per level and corner, D-1 products for the weight and F
        multiply-adds for the features; index arithmetic is not counted.
        """
        e = self.encoding_config
        k = 1 << self.info.in_features
        interp = e.levels * k * (self.info.in_features - 1 + e.features_per_level)
        return 2.0 * (self._mlp_macs + interp)


def _tcnn_network(n_in: int, n_out: int, enc: GridEncodingConfig, c: HashGridConfig) -> nn.Module:
    import tinycudann as tcnn

    otype = "FullyFusedMLP" if c.width in (16, 32, 64, 128) else "CutlassMLP"
    return tcnn.NetworkWithInputEncoding(
        n_in,
        n_out,
        tcnn_encoding_config(enc),
        {"otype": otype, "activation": "ReLU", "output_activation": "None",
         "n_neurons": c.width, "n_hidden_layers": c.layers - 1},
    )


def tcnn_encoding_config(enc: GridEncodingConfig) -> dict[str, Any]:
    """The tiny-cuda-nn ``HashGrid`` config equal to ``enc`` (same table layout and conventions)."""
    return {"otype": "HashGrid", "n_levels": enc.levels, "n_features_per_level": enc.features_per_level,
            "log2_hashmap_size": enc.log2_table_size, "base_resolution": enc.base_resolution,
            "per_level_scale": enc.per_level_scale}
