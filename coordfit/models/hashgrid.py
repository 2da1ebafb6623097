"""hashgrid: instant-ngp's multiresolution hash encoding followed by a small ReLU MLP.

Defaults follow instant-ngp: L=16 levels of F=2 features, N_min=16, N_max = max(grid
size) / 2, T=2^24 entries per level for 1-2-D signals (images; every level of a
4096 px image still fits densely, so the table never reaches that size) and T=2^19 for
3-4-D (videos, SDFs), MLP 64 wide x 2 hidden, Adam lr 1e-2, betas (0.9, 0.99),
eps 1e-15.

``backend="tcnn"`` is tiny-cuda-nn's network: its MLP has no biases and starts from its
Xavier-uniform init. On CUDA with ``tinycudann`` importable it runs through
``tcnn.NetworkWithInputEncoding`` (fp16 inside, output cast to fp32); elsewhere the
same network runs in PyTorch, after one warning. The parameters are coordfit's either
way (see :mod:`coordfit.models.tcnn`), so such a run loads and renders without
tiny-cuda-nn.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..core.errors import CoordfitError
from ..geometry.grid import GridInfo
from .base import CoordNet
from .grid_encoding import GridSpec, MultiresGrid
from .layers import mlp
from .registry import register_model
from .tcnn import TcnnLayout, TcnnMismatch, TcnnNetwork, tcnn_available

__all__ = ["HashGridConfig", "HashGrid"]


@dataclass
class HashGridConfig(GridSpec):
    width: int = 64  # MLP hidden width
    layers: int = 3  # MLP linear layers (2 hidden + output)
    backend: Literal["torch", "tcnn"] = "torch"  # tcnn: tiny-cuda-nn's bias-free MLP, run by tinycudann on CUDA

    def validate(self) -> None:
        super().validate()
        self.check_positive("width", "layers")
        if self.backend == "tcnn" and self.dense_levels is not None:
            raise CoordfitError("backend=tcnn has tiny-cuda-nn's level ladder only: drop dense-levels or use backend=torch")


@register_model(
    "hashgrid",
    description="instant-ngp multiresolution hash grid + 64x2 ReLU MLP (fused grid kernel; tcnn backend optional)",
    config=HashGridConfig,
    lr=1e-2,
    adam={"betas": (0.9, 0.99), "eps": 1e-15},
    grid=True,
)
class HashGrid(CoordNet):
    def __init__(self, config: HashGridConfig, info: GridInfo) -> None:
        super().__init__(config, info)
        c = config
        spec = c.resolve(info.in_features, info.shape)
        self.encoding = MultiresGrid(info.in_features, spec)
        dims = [self.encoding.out_features] + [c.width] * (c.layers - 1) + [info.out_features]
        self.mlp = mlp(dims, "relu", last_activation=False, bias=c.backend == "torch")
        self._tcnn: TcnnNetwork | None = None
        self.tcnn_layout: TcnnLayout | None = None
        if c.backend == "tcnn":
            self._set_up_tcnn(spec, dims)

    def _set_up_tcnn(self, spec: GridSpec, dims: list[int]) -> None:
        """tiny-cuda-nn's network: its init, its layout, and tinycudann where it can run."""
        for lin in self.linears():
            nn.init.xavier_uniform_(lin.weight)  # tiny-cuda-nn's init of its MLPs
        self.tcnn_layout = TcnnLayout(tuple(dims), tuple(self.encoding.table.shape))
        reason = tcnn_available()
        if reason is None:
            try:
                self._tcnn = TcnnNetwork(self.info.in_features, self.info.out_features, spec, self.config.width,
                                         self.config.layers, self.tcnn_layout)
            except TcnnMismatch as exc:
                reason = str(exc)
        if reason is not None:
            # one fixed location (the registry's build call): Python's default filter shows it once
            warnings.warn(f"backend=tcnn unavailable ({reason}); running its network in PyTorch", stacklevel=3)

    @property
    def backend(self) -> str:
        """What evaluates the network on CUDA inputs: ``tcnn`` or ``torch``."""
        return "tcnn" if self._tcnn is not None else "torch"

    def linears(self) -> list[nn.Linear]:
        return [m for m in self.mlp if isinstance(m, nn.Linear)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, D] -> [N, C]
        if self._tcnn is not None and x.is_cuda:
            return self._tcnn(((x + 1.0) * 0.5).clamp(0.0, 1.0), self.tcnn_params())
        return self.mlp(self.encoding(x))

    # -- tiny-cuda-nn's parameter vector, both ways (backend=tcnn) --------------------------
    def tcnn_params(self) -> torch.Tensor:
        """This model's parameters as tiny-cuda-nn's flat vector (differentiable)."""
        return self._layout().pack([lin.weight for lin in self.linears()], self.encoding.table)

    @torch.no_grad()
    def load_tcnn_params(self, params: torch.Tensor) -> None:
        """Set the parameters from a tiny-cuda-nn vector (as ``tcnn.NetworkWithInputEncoding.params``)."""
        weights, table = self._layout().unpack(params.detach().to(self.encoding.table))
        for lin, w in zip(self.linears(), weights):
            lin.weight.copy_(w)
        self.encoding.table.copy_(table)

    def _layout(self) -> TcnnLayout:
        if self.tcnn_layout is None:
            raise CoordfitError("only backend=tcnn has tiny-cuda-nn's parameter layout (its MLP has no biases)")
        return self.tcnn_layout
