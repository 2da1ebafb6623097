"""CoordX fusion: per-branch features ``[n_b, W * R]`` -> fused features, by outer product or sum.

Shared by every split model (``coordx``, ``splitgrid``). The pointwise form fuses rows
that belong to the same point; the grid form broadcasts each branch over its own grid
axis. Both reduce the rank R (features ``[W, R]`` summed over R) and agree exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from .base import CoordNet

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

    Subclasses build those modules and set ``_fused_width`` (W); ``config`` carries
    ``rank`` and ``fusion``. Both evaluation paths live here so they stay equal.
    """

    _fused_width: int

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
        return self._finish(fuse_points(feats, self._fused_width, self.config.rank, self.config.fusion))

    def forward_grid(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:  # -> [n_1, ..., n_k, C]
        feats = self.branch_features(parts)
        return self._finish(fuse_grid(feats, self._fused_width, self.config.rank, self.config.fusion))

    def _finish(self, fused: torch.Tensor) -> torch.Tensor:  # fused features [..., W] -> [..., C]
        return self.post(self.post_act(fused))
