"""splitgrid: CoordX branches that start from multiresolution grids instead of sine layers.

Each branch of the split spec encodes only its own axes with a multiresolution grid
(1-D levels for a single axis such as ``t``, a 2-D dense or hashed grid for a group
such as ``xy``), then its own Linear + ReLU and ``shared_layers`` layers shared by all
branches, the last one emitting ``W * R`` features. The branch features are fused by
the CoordX outer product (summed over the rank R), and a small ReLU MLP maps the fused
grid to the output. On a ``T x H x W`` video split ``xy+t`` the grids and branch layers
run on ``H*W + T`` points per sub-grid, not ``T*H*W``; only the product and the small
post-fusion MLP run per output point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from torch import nn

from ..errors import CoordfitError
from ..grid import GridInfo
from .base import one_of, positive
from .fusion import SplitNet
from .grid_encoding import MultiresGrid
from .hashgrid import grid_encoding_config, relu_mlp
from .registry import register_model

__all__ = ["SplitGridConfig", "SplitGrid"]


@dataclass
class SplitGridConfig:
    split: str | None = None  # branches, e.g. "x+y", "xy+t", "x+y+z" (None: the signal's default)
    levels: int = 16  # L: grid levels per branch
    features_per_level: int = 2  # F: features per level
    log2_table_size: int | None = None  # log2 T per hashed level (None: 24 for 1-2-D branches, 19 for 3-D)
    base_resolution: int = 16  # N_min: coarsest level
    max_resolution: float | None = None  # N_max (None: per branch, max of its axis sizes / 2)
    per_level_scale: float | None = None  # b (None: from N_min, N_max and L)
    width: int = 16  # hidden width W of branch and post-fusion layers
    rank: int = 32  # R: each branch emits W*R features; the product is summed over R
    shared_layers: int = 0  # layers shared by all branches after each branch's own first layer
    post_layers: int = 2  # linear layers after the fusion (hidden + output)
    fusion: Literal["prod", "sum"] = "prod"  # outer product (CoordX) or outer sum
    fuse_before_activation: bool = True  # fuse the last branch layer's pre-activations, ReLU after

    def validate(self) -> None:
        positive(self, "levels", "features_per_level", "base_resolution", "max_resolution", "width", "rank",
                 "post_layers")
        one_of(self, "fusion", ("prod", "sum"))
        if self.shared_layers < 0:
            raise CoordfitError(f"shared-layers must be >= 0, got {self.shared_layers}")
        if self.per_level_scale is not None and self.per_level_scale < 1.0:
            raise CoordfitError(f"per-level-scale must be >= 1, got {self.per_level_scale}")
        if self.log2_table_size is not None and not 1 <= self.log2_table_size <= 30:
            raise CoordfitError(f"log2-table-size must be in 1..30, got {self.log2_table_size}")


@register_model(
    "splitgrid",
    description="CoordX split with a multiresolution grid per branch (2-D xy x 1-D t...), outer-product fusion, ReLU MLP",
    config=SplitGridConfig,
    lr=1e-2,
    adam={"betas": (0.9, 0.99), "eps": 1e-15},
    splittable=True,
)
class SplitGrid(SplitNet):
    def __init__(self, config: SplitGridConfig, info: GridInfo) -> None:
        super().__init__(config, info)
        c = config
        self._set_split(c.split)
        W, R = c.width, c.rank
        self.encoders = nn.ModuleList()
        self.first = nn.ModuleList()
        pre_dims = [W] * c.shared_layers + [W * R]  # the first layer's output, then the shared layers
        for b in self.branches:
            enc = MultiresGrid(len(b), grid_encoding_config(c, len(b), tuple(info.shape[d] for d in b)))
            self.encoders.append(enc)
            last = len(pre_dims) == 1
            layers: list[nn.Module] = [nn.Linear(enc.out_features, pre_dims[0])]
            if not (last and c.fuse_before_activation):
                layers.append(nn.ReLU())
            self.first.append(nn.Sequential(*layers))
        shared: list[nn.Module] = []
        for i, (a, b_) in enumerate(zip(pre_dims[:-1], pre_dims[1:])):
            shared.append(nn.Linear(a, b_))
            if i < len(pre_dims) - 2 or not c.fuse_before_activation:
                shared.append(nn.ReLU())
        self.shared = nn.Sequential(*shared)
        self.post_act = nn.ReLU() if c.fuse_before_activation else nn.Identity()
        self.post = relu_mlp([W] * c.post_layers + [info.out_features])
        self._fused_width = W

    def flops_per_sample(self, shape: Sequence[int] | None = None) -> float:
        """FLOPs per output sample on a whole grid of ``shape``: branch work amortised over the grid.

        Per branch point: grid interpolation (see ``MultiresGrid.macs_per_point``) and the
        branch layers; per output point: the fusion (W*R products per extra branch, plus
        the rank sum) and the post-fusion MLP. 2 FLOPs per multiply-add.
        """
        shape = tuple(shape or self.info.shape)
        n_total = math.prod(shape)
        n_branch = [math.prod(shape[d] for d in b) for b in self.branches]

        def macs(seq: nn.Module) -> int:
            return sum(m.in_features * m.out_features for m in seq.modules() if isinstance(m, nn.Linear))

        pre = sum(n * (enc.macs_per_point() + macs(first) + macs(self.shared))
                  for n, enc, first in zip(n_branch, self.encoders, self.first))
        W, R = self.config.width, self.config.rank
        fuse = n_total * W * R * (len(self.branches) - 1 + (R > 1))
        return (2.0 * (pre + n_total * macs(self.post)) + fuse) / n_total
