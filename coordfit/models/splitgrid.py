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

from dataclasses import dataclass
from typing import Literal

from ..core.errors import CoordfitError
from ..geometry.grid import GridInfo
from .fusion import SplitNet
from .grid_encoding import GridSpec, MultiresGrid
from .registry import register_model

__all__ = ["SplitGridConfig", "SplitGrid"]


@dataclass
class SplitGridConfig(GridSpec):
    """Each branch's grid takes the :class:`GridSpec` options, resolved for the branch's own
    axes (``log2_table_size`` None: 24 for 1-2-D branches, 19 for 3-D; ``max_resolution``
    None: the largest of its axis sizes / 2)."""

    split: str | None = None  # branches, e.g. "x+y", "xy+t", "x+y+z" (None: the signal's default)
    width: int = 16  # hidden width W of branch and post-fusion layers
    rank: int = 32  # R: each branch emits W*R features; the product is summed over R
    shared_layers: int = 0  # layers shared by all branches after each branch's own first layer
    post_layers: int = 2  # linear layers after the fusion (hidden + output)
    fusion: Literal["prod", "sum"] = "prod"  # outer product (CoordX) or outer sum
    fuse_before_activation: bool = True  # fuse the last branch layer's pre-activations, ReLU after

    def validate(self) -> None:
        super().validate()
        self.check_positive("width", "rank", "post_layers")
        if self.shared_layers < 0:
            raise CoordfitError(f"shared-layers must be >= 0, got {self.shared_layers}")


@register_model(
    "splitgrid",
    description="CoordX split with a multiresolution grid per branch (2-D xy x 1-D t...), outer-product fusion, ReLU MLP",
    config=SplitGridConfig,
    lr=1e-2,
    adam={"betas": (0.9, 0.99), "eps": 1e-15},
    splittable=True,
    grid=True,
)
class SplitGrid(SplitNet):
    def __init__(self, config: SplitGridConfig, info: GridInfo) -> None:
        super().__init__(config, info)
        c = config
        self._set_split(c.split)
        W, R = c.width, c.rank

        def encoder(j: int, b: tuple[int, ...]) -> MultiresGrid:
            return MultiresGrid(len(b), c.resolve(len(b), tuple(info.shape[d] for d in b)))

        # the first layer's output, then the shared layers; the last emits W*R features
        self._build_layers(encoder, [W] * c.shared_layers + [W * R], [W] * c.post_layers + [info.out_features],
                           "relu", pre_act=not c.fuse_before_activation, post_act=c.fuse_before_activation)
        self._fused_width = W
