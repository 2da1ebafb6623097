"""CoordX fusion: per-branch features ``[n_b, W * R]`` -> fused features, by outer product or sum.

Shared by every split model (``coordx``, ``splitgrid``). The pointwise form fuses rows
that belong to the same point; the grid form broadcasts each branch over its own grid
axis. Both reduce the rank R (features ``[W, R]`` summed over R) and agree exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

__all__ = ["fuse_points", "fuse_grid"]

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
