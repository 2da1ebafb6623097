"""ReLU MLP on a positional encoding: NeRF frequencies or Gaussian Fourier features."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ..core.errors import CoordfitError
from ..geometry.grid import GridInfo
from ..core.registry import Config
from .base import CoordNet
from .layers import make_encoding, mlp
from .registry import register_model


@dataclass
class PEMLPConfig(Config):
    encoding: Literal["fourier", "nerf"] = "fourier"  # Gaussian Fourier features or NeRF log-linear
    width: int = 256  # hidden features
    layers: int = 5  # linear layers in total, input and output included
    frequencies: int | None = None  # NeRF: number of octaves L (None: by Nyquist, 7 at 512 px)
    features: int = 256  # Fourier: rows of B (the encoding has 2x as many features)
    sigma: float = 10.0  # Fourier: std of B, for coordinates on [0, 1]
    seed: int = 0  # Fourier: seed of B

    def validate(self) -> None:
        super().validate()
        self.check_positive("width", "layers", "frequencies", "features", "sigma")
        if self.layers < 2:
            raise CoordfitError(f"pe-mlp needs at least 2 layers, got {self.layers}")


@register_model(
    "pe-mlp",
    description="ReLU MLP on a positional encoding (Fourier features sigma=10, or NeRF frequencies)",
    config=PEMLPConfig,
    lr=1e-3,
)
class PEMLP(CoordNet):
    def __init__(self, config: PEMLPConfig, info: GridInfo) -> None:
        super().__init__(config, info)
        c = config
        self.encoding = make_encoding(c.encoding, info.in_features, info.shape, c.frequencies, c.features, c.sigma, c.seed)
        dims = [self.encoding.out_features] + [c.width] * (c.layers - 1) + [info.out_features]
        self.net = mlp(dims, "relu", last_activation=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, D] -> [N, C]
        return self.net(self.encoding(x))
