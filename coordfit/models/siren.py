"""SIREN (Sitzmann et al. 2020): an MLP with sine activations."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.errors import CoordfitError
from ..geometry.grid import GridInfo
from ..core.registry import Config
from .base import CoordNet
from .layers import mlp
from .registry import register_model


@dataclass
class SirenConfig(Config):
    width: int = 256  # hidden features
    layers: int = 5  # linear layers in total, input and output included
    w0: float = 30.0  # frequency factor of every sine layer

    def validate(self) -> None:
        super().validate()
        self.check_positive("width", "layers", "w0")
        if self.layers < 2:
            raise CoordfitError(f"siren needs at least 2 layers, got {self.layers}")


@register_model(
    "siren",
    description="SIREN: sine-activated MLP (w0=30), the standard INR baseline",
    config=SirenConfig,
    lr=1e-4,
)
class Siren(CoordNet):
    def __init__(self, config: SirenConfig, info: GridInfo) -> None:
        super().__init__(config, info)
        c = config
        dims = [info.in_features] + [c.width] * (c.layers - 1) + [info.out_features]
        self.net = mlp(dims, "sine", w0=c.w0, last_activation=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, D] -> [N, C]
        return self.net(x)
