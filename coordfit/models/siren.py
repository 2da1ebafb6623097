"""SIREN (Sitzmann et al. 2020): an MLP with sine activations."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..grid import GridInfo
from .base import CoordNet, positive
from .layers import mlp
from .registry import register_model


@dataclass
class SirenConfig:
    width: int = 256  # hidden features
    layers: int = 5  # linear layers in total, input and output included
    w0: float = 30.0  # frequency factor of every sine layer

    def validate(self) -> None:
        positive(self, "width", "layers", "w0")
        if self.layers < 2:
            from ..errors import CoordfitError

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

    def flops_per_sample(self) -> float:
        return 2.0 * sum(m.in_features * m.out_features for m in self.net if isinstance(m, torch.nn.Linear))
