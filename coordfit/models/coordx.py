"""CoordX (Liang et al., ICLR 2022): a split MLP fused by an outer product.

Each branch of the split spec (``x+y``, ``xy+t``, ``x+y+z``...) has its own first layer;
the next ``shared_layers`` layers are shared by all branches and run on each branch's
own points; the branch features are fused by an element-wise product broadcast over the
grid (an outer product), summed over the rank R, and the remaining layers run on the
fused grid. On an H x W image the layers before fusion run on H + W points, not H x W.

``full_split=True`` moves every layer before the fusion: the network becomes a rank-R
CP decomposition ``f_c(x, y) = sum_r a_cr(x) b_cr(y)``.

Fidelity to the official code (github.com/nexuslrf/CoordX): the same parameter counts
and, from the same weights, the same outputs (tests/test_models.py holds a reference
written from its forward). The shared layers before the fusion add their bias divided
by the number of branches, as its ``BatchLinear`` does (``shared_bias="whole"`` adds
all of it, as coordfit did before); with ``fuse_before_activation`` the activation acts
on the ``M*R`` product before the rank sum. ``rank=R`` widens only the last pre-fusion
layer to ``M*R`` (the official ``--fusion_size R --aug_reduce_param``); ``widen="all"``
widens every pre-fusion layer, the official default for ``--fusion_size R``. The
official full split uses rank 256; coordfit's ``rank`` defaults to 1 for both splits
(one meaning, no hidden dependency between options): pass ``rank=256`` or use the
``coordx-image-full-paper`` preset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from ..core.errors import CoordfitError
from ..geometry.grid import GridInfo
from ..core.registry import Config
from .fusion import SplitNet
from .layers import make_encoding
from .registry import register_model


@dataclass
class CoordXConfig(Config):
    split: str | None = None  # branches, e.g. "x+y", "xy+t", "x+y+z" (None: the signal's default)
    width: int = 256  # hidden features M
    layers: int = 5  # linear layers from a coordinate to the output (as SIREN's 5)
    shared_layers: int = 2  # shared layers after each branch's first layer, before fusion
    full_split: bool = False  # put every layer before the fusion (rank-R CP decomposition)
    rank: int = 1  # R, summed over after the product (the official full split uses 256; coordfit keeps 1 for both)
    widen: Literal["last", "all"] = "last"  # pre-fusion layers M*R wide: the last (official --aug_reduce_param) or all
    shared_bias: Literal["divided", "whole"] = "divided"  # shared pre-fusion layers add bias / branches (official) or all of it
    fusion: Literal["prod", "sum"] = "prod"  # outer product (CoordX) or outer sum
    fuse_before_activation: bool = False  # fuse pre-activations of the last pre-fusion layer
    activation: Literal["sine", "relu"] = "sine"  # SIREN branches, or ReLU on an encoding
    encoding: Literal["none", "nerf", "fourier"] = "none"  # per-branch positional encoding
    frequencies: int | None = None  # NeRF encoding octaves (None: by Nyquist)
    features: int = 128  # Fourier encoding rows of B per branch
    sigma: float = 10.0  # Fourier encoding std, coordinates on [0, 1]
    w0: float = 30.0  # sine frequency factor
    seed: int = 0  # seed of the Fourier matrices

    # Runs saved before ``shared_bias`` existed were fitted with the whole bias.
    saved_defaults: ClassVar[dict[str, object]] = {"shared_bias": "whole"}

    def validate(self) -> None:
        super().validate()
        self.check_positive("width", "layers", "rank", "features", "sigma", "w0", "frequencies")
        if self.shared_layers < 0:
            raise CoordfitError(f"shared-layers must be >= 0, got {self.shared_layers}")
        if self.layers < 2:
            raise CoordfitError(f"coordx needs at least 2 layers, got {self.layers}")
        if not self.full_split and self.shared_layers > self.layers - 2:
            raise CoordfitError(
                f"shared-layers={self.shared_layers} leaves no output layer with layers={self.layers} "
                f"(at most {self.layers - 2}; or use full_split=true)"
            )
        if self.full_split and self.widen == "all":
            raise CoordfitError("widen=all applies to a partial split; a full split's rank widens its output layer")


@register_model(
    "coordx",
    description="CoordX split MLP: per-branch first layer, shared layers, outer-product fusion",
    config=CoordXConfig,
    lr=1e-4,
    splittable=True,
)
class CoordX(SplitNet):
    def __init__(self, config: CoordXConfig, info: GridInfo) -> None:
        super().__init__(config, info)
        c = config
        self._set_split(c.split)
        M, C, R = c.width, info.out_features, c.rank
        if c.full_split:
            pre_dims, fused_width = [M] * (c.layers - 1) + [C * R], C
            post_dims: list[int] = []
        else:
            pre_dims, fused_width = [M * R if c.widen == "all" else M] * (c.shared_layers + 1), M
            pre_dims[-1] = M * R
            post_hidden = c.layers - 2 - c.shared_layers
            post_dims = [M] * (post_hidden + 1) + [C]

        def encoder(j: int, b: tuple[int, ...]):
            sizes = tuple(info.shape[d] for d in b)
            return make_encoding(c.encoding, len(b), sizes, c.frequencies, c.features, c.sigma, c.seed + j)

        # The activation follows the last pre-fusion layer, unless it is deferred past the
        # fusion (fuse_before_activation) or that layer is the output (full split).
        self._build_layers(
            encoder, pre_dims, post_dims, c.activation, c.w0,
            pre_act=not (c.full_split or c.fuse_before_activation),
            post_act=c.fuse_before_activation and not c.full_split,
            shared_bias_scale=1.0 / len(self.branches) if c.shared_bias == "divided" else 1.0,
        )
        self._fused_width = fused_width
        self._act_before_rank_sum = True  # the official order: activation on the W*R product, then the rank sum
