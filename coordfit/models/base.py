"""The interface every coordinate network implements."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from ..geometry.grid import GridInfo, format_split, parse_split
from .layers import macs

__all__ = ["CoordNet"]


class CoordNet(nn.Module):
    """A network from coordinates on [-1, 1] to signal values.

    * ``forward(x)``: points ``[N, D]`` -> ``[N, C]`` (D = number of signal axes, in the
      signal's axis order).
    * ``forward_grid(parts)``: per branch points ``[n_b, d_b]`` -> ``[n_1, ..., n_k, C]``,
      the outer product grid. Split models override it with their fast path; the
      default expands the grid and calls ``forward``.
    * ``branches``: the input dimensions of each branch; one branch for unsplit models.
    """

    registry_name: ClassVar[str] = "?"

    def __init__(self, config: Any, info: GridInfo) -> None:
        super().__init__()
        self.config = config
        self.info = info
        self.branches: list[tuple[int, ...]] = [tuple(range(info.in_features))]

    @property
    def split(self) -> str:
        return format_split(self.branches, self.info.axes)

    def _set_split(self, spec: str | None) -> None:
        self.branches = parse_split(spec or self.info.default_split, self.info.axes)

    def forward_grid(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(parts) == 1:
            return self(parts[0])
        sizes = [p.shape[0] for p in parts]
        mesh = torch.meshgrid(*[torch.arange(n, device=parts[0].device) for n in sizes], indexing="ij")
        x = parts[0].new_zeros(math.prod(sizes), self.info.in_features)
        for b, p, m in zip(self.branches, parts, mesh):
            x[:, list(b)] = p[m.reshape(-1)]
        return self(x).reshape(*sizes, -1)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_sample(self, shape: Sequence[int] | None = None) -> float:
        """FLOPs per output sample when a whole grid of ``shape`` (default: the signal's) is
        evaluated at once, 2 per multiply-add (see :func:`~coordfit.models.layers.macs`).

        An unsplit model runs every layer on every point, so ``shape`` does not matter;
        split models (:class:`~coordfit.models.fusion.SplitNet`) amortise their branch work
        over the grid.
        """
        return 2.0 * macs(self)

    def extra_repr(self) -> str:
        return f"split={self.split}, params={self.num_params():,}"
