"""CoordX fusion: per-branch features ``[n_b, W * R]`` -> fused features, by outer product or sum.

Shared by every split model (``coordx``, ``splitgrid``). The pointwise form fuses rows
that belong to the same point; the grid form broadcasts each branch over its own grid
axis. Both reduce the rank R (features ``[W, R]`` summed over R) and agree exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import nn

from .base import CoordNet
from .layers import Sine, macs, mlp

__all__ = ["fuse_points", "fuse_grid", "SplitNet"]

Fusion = Literal["prod", "sum"]


def fuse_points(feats: Sequence[torch.Tensor], width: int, rank: int, fusion: Fusion = "prod") -> torch.Tensor:
    """Per branch ``[N, W * R]`` (row i = point i) -> ``[N, W]``."""
    fused = feats[0]
    for f in feats[1:]:
        fused = fused * f if fusion == "prod" else fused + f
    return _reduce_rank(fused, width, rank)


def fuse_grid(feats: Sequence[torch.Tensor], width: int, rank: int, fusion: Fusion = "prod") -> torch.Tensor:
    """Per branch ``[n_b, W * R]`` -> the outer-product grid ``[n_1, ..., n_k, W]``."""
    k = len(feats)
    if fusion == "prod" and rank > 1:
        letters = "abcdefgh"[:k]
        eq = ",".join(f"{l}mr" for l in letters) + "->" + letters + "m"
        return torch.einsum(eq, *[f.view(f.shape[0], width, rank) for f in feats])
    fused = None
    for j, f in enumerate(feats):
        view = [1] * k + [f.shape[-1]]
        view[j] = f.shape[0]
        f = f.view(view)
        fused = f if fused is None else (fused * f if fusion == "prod" else fused + f)
    return _reduce_rank(fused, width, rank)


def _reduce_rank(fused: torch.Tensor, width: int, rank: int) -> torch.Tensor:
    if rank == 1:
        return fused
    return fused.reshape(*fused.shape[:-1], width, rank).sum(-1)


class SplitNet(CoordNet):
    """A split model: per-branch ``encoders`` and ``first`` layers, ``shared`` layers run
    once on every branch's points, fusion, then ``post_act`` and ``post`` on the fused grid.

    Subclasses call :meth:`_build_layers` and set ``_fused_width`` (W); ``config`` carries
    ``rank`` and ``fusion``. Both evaluation paths live here so they stay equal.
    """

    _fused_width: int
    _act_before_rank_sum: bool = False  # post_act on the W*R product, then the rank sum (CoordX's order)

    def _build_layers(
        self,
        encoder: Callable[[int, tuple[int, ...]], nn.Module | None],
        pre_dims: list[int],
        post_dims: list[int],
        activation: Literal["sine", "relu"],
        w0: float = 30.0,
        pre_act: bool = True,
        post_act: bool = False,
        shared_bias_scale: float = 1.0,
    ) -> None:
        """Per branch ``j``: ``encoder(j, dims)`` (None: raw coordinates), then a first layer
        to ``pre_dims[0]``; the shared layers ``pre_dims``; the post-fusion layers ``post_dims``
        (none: the fused features are the output).

        ``pre_act``: the last pre-fusion layer ends with the activation; ``post_act``: the
        activation runs after the fusion instead (fuse pre-activations). The shared layers'
        bias enters scaled by ``shared_bias_scale``.
        """
        self.encoders = nn.ModuleList()
        self.first = nn.ModuleList()
        for j, b in enumerate(self.branches):  # encoder and first layer in turn: the init order of the RNG
            enc = encoder(j, b)
            self.encoders.append(enc if enc is not None else nn.Identity())
            d_in = enc.out_features if enc is not None else len(b)
            self.first.append(mlp([d_in, pre_dims[0]], activation, w0, first=True,
                                  last_activation=pre_act or len(pre_dims) > 1))
        self.shared = (mlp(pre_dims, activation, w0, first=False, last_activation=pre_act, bias_scale=shared_bias_scale)
                       if len(pre_dims) > 1 else nn.Sequential())
        self.post_act = (Sine(w0) if activation == "sine" else nn.ReLU()) if post_act else nn.Identity()
        self.post = mlp(post_dims, activation, w0, first=False, last_activation=False) if post_dims else nn.Sequential()

    def flops_per_sample(self, shape: Sequence[int] | None = None) -> float:
        """FLOPs per output sample on a whole grid of ``shape``: branch work amortised over the grid.

        Per branch point: the encoding and the branch layers (first and shared); per
        output point: the fusion (W*R products per extra branch, plus the rank sum) and
        the post-fusion layers. 2 FLOPs per multiply-add.
        """
        shape = tuple(shape or self.info.shape)
        n_total = math.prod(shape)
        n_branch = [math.prod(shape[d] for d in b) for b in self.branches]
        pre = sum(n * (macs(enc) + macs(first) + macs(self.shared))
                  for n, enc, first in zip(n_branch, self.encoders, self.first))
        fuse_width = self._fused_width * self.config.rank
        fuse = n_total * fuse_width * (len(self.branches) - 1 + (self.config.rank > 1))
        return (2.0 * (pre + n_total * macs(self.post)) + fuse) / n_total

    def branch_features(self, parts: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Per branch ``[n_b, d_b]`` -> pre-fusion features ``[n_b, W*R]`` (shared layers run once)."""
        hs = [first(enc(p)) for p, enc, first in zip(parts, self.encoders, self.first)]
        sizes = [h.shape[0] for h in hs]
        h = torch.cat(hs, dim=0)
        if len(self.shared):
            h = self.shared(h)
        return list(h.split(sizes, dim=0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, D] -> [N, C]
        feats = self.branch_features([x[:, list(b)] for b in self.branches])
        return self.post(self._fuse(feats, fuse_points))

    def forward_grid(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:  # -> [n_1, ..., n_k, C]
        return self.post(self._fuse(self.branch_features(parts), fuse_grid))

    def _fuse(self, feats: list[torch.Tensor], fuse: Callable[..., torch.Tensor]) -> torch.Tensor:
        """Fused features ``[..., W]``, ``post_act`` applied (before the rank sum where asked)."""
        W, R, op = self._fused_width, self.config.rank, self.config.fusion
        if self._act_before_rank_sum and R > 1:
            return _reduce_rank(self.post_act(fuse(feats, W * R, 1, op)), W, R)
        return self.post_act(fuse(feats, W, R, op))
