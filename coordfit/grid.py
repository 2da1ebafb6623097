"""Coordinate grids, split specs and split-aware sampling.

A signal lives on a grid with named axes (an image on ``("y", "x")``, a video on
``("t", "y", "x")``, a volume on ``("x", "y", "z")``). A *split spec* such as
``"x+y"`` or ``"xy+t"`` groups those axes into branches. Every model exposes its
branches as tuples of input dimensions (an unsplit model has one branch holding all
axes), and everything here works in that one vocabulary:

* a *batch* is, per branch, a list of points ``[n_b, d_b]`` plus their integer grid
  indices ``[n_b, d_b]``; the model's ``forward_grid`` returns ``[n_1, ..., n_k, C]``
  (the outer product of the branch point lists);
* :func:`sample_branches` draws a random sub-grid (split models) or random points
  (one branch), :func:`gather` pulls the matching target values, and
  :func:`evaluate_grid` runs a model over a whole grid in memory-bounded chunks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .errors import CoordfitError

__all__ = [
    "GridInfo",
    "parse_split",
    "format_split",
    "axis_coords",
    "branch_points",
    "sample_branches",
    "gather",
    "to_axis_order",
    "evaluate_grid",
]


def parse_split(spec: str, axes: Sequence[str]) -> list[tuple[int, ...]]:
    """Parse ``"x+y"``/``"xy+t"`` into branches of axis positions in ``axes``.

    Every axis must appear exactly once. Axis order inside a branch follows ``axes``.

    >>> parse_split("x+y", ("y", "x"))
    [(1,), (0,)]
    """
    spec = spec.replace(" ", "")
    if not spec:
        raise CoordfitError("the split spec is empty")
    names = list(axes)
    seen: set[str] = set()
    branches: list[tuple[int, ...]] = []
    for part in spec.split("+"):
        if not part:
            raise CoordfitError(f"split '{spec}' has an empty branch")
        dims = []
        for ch in part:
            if ch not in names:
                raise CoordfitError(
                    f"split '{spec}' names axis '{ch}', which this signal lacks "
                    f"(its axes are {'+'.join(axes)})"
                )
            if ch in seen:
                raise CoordfitError(f"split '{spec}' names axis '{ch}' twice")
            seen.add(ch)
            dims.append(names.index(ch))
        branches.append(tuple(sorted(dims)))
    missing = [a for a in names if a not in seen]
    if missing:
        raise CoordfitError(f"split '{spec}' leaves out axis {', '.join(missing)}")
    return branches


def format_split(branches: Sequence[Sequence[int]], axes: Sequence[str]) -> str:
    return "+".join("".join(axes[d] for d in b) for b in branches)


def axis_coords(n: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``n`` coordinates on [-1, 1], endpoints included (one point sits at 0)."""
    if n == 1:
        return torch.zeros(1, device=device)
    return torch.linspace(-1.0, 1.0, n, device=device)


def branch_points(coords: Sequence[torch.Tensor]) -> torch.Tensor:
    """Cartesian product of per-axis coordinates: ``[prod n_a, len(coords)]``."""
    if len(coords) == 1:
        return coords[0][:, None]
    mesh = torch.meshgrid(*coords, indexing="ij")
    return torch.stack([m.reshape(-1) for m in mesh], dim=-1)


def _branch_sizes(branches: Sequence[Sequence[int]], shape: Sequence[int]) -> list[int]:
    return [math.prod(shape[d] for d in b) for b in branches]


def _branch_counts(sizes: Sequence[int], budget: int) -> list[int]:
    """Points per branch for a sub-grid of about ``budget`` points.

    Every branch keeps the same fraction of its points; a branch that would get less
    than one point (e.g. the t branch of a one-frame video) is pinned at one and the
    others share the budget among themselves, so the sub-grid stays near ``budget``.
    """
    counts = [1] * len(sizes)
    free = list(range(len(sizes)))
    while free:
        frac = (budget / math.prod(sizes[j] for j in free)) ** (1.0 / len(free))
        pinned = [j for j in free if sizes[j] * frac < 1.0]
        if not pinned:
            for j in free:
                counts[j] = max(1, min(sizes[j], round(sizes[j] * frac)))
            break
        free = [j for j in free if j not in pinned]
    return counts


def sample_branches(
    branches: Sequence[Sequence[int]],
    shape: Sequence[int],
    budget: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Draw a random sub-grid of about ``budget`` points.

    Each branch keeps the same fraction ``f = (budget / total) ** (1 / k)`` of its
    points, drawn without replacement (see :func:`_branch_counts`); with one branch this is a random point batch,
    and when the whole grid fits the budget the whole grid is returned (in order).

    Returns ``(coords, index)``: per branch ``[n_b, d_b]`` float coordinates on
    [-1, 1] and ``[n_b, d_b]`` integer grid indices.
    """
    sizes = _branch_sizes(branches, shape)
    full = math.prod(sizes) <= budget
    counts = sizes if full else _branch_counts(sizes, budget)
    coords, index = [], []
    for b, n_b, k in zip(branches, sizes, counts):
        bshape = [shape[d] for d in b]
        if full:
            flat = torch.arange(n_b)
        else:
            flat = torch.randperm(n_b, generator=generator)[:k].sort().values
        idx = torch.stack(torch.unravel_index(flat, bshape), dim=-1)  # [n_b, d_b]
        denom = torch.tensor([max(s - 1, 1) for s in bshape], dtype=torch.float32)
        c = idx.float() / denom * 2.0 - 1.0
        c[:, torch.tensor(bshape) == 1] = 0.0
        coords.append(c.to(device))
        index.append(idx.to(device))
    return coords, index


def gather(values: torch.Tensor, branches: Sequence[Sequence[int]], index: Sequence[torch.Tensor]) -> torch.Tensor:
    """Target values on a sub-grid: ``values [*shape, C]`` -> ``[n_1, ..., n_k, C]``."""
    k = len(branches)
    per_axis: list[torch.Tensor | None] = [None] * (values.dim() - 1)
    for j, (b, idx) in enumerate(zip(branches, index)):
        view = [1] * k
        view[j] = -1
        for col, d in enumerate(b):
            per_axis[d] = idx[:, col].reshape(view)
    return values[tuple(per_axis)]


def to_axis_order(out: torch.Tensor, branches: Sequence[Sequence[int]], shape: Sequence[int]) -> torch.Tensor:
    """Full-grid output in branch layout ``[n_1, ..., n_k, C]`` -> ``[*shape, C]``."""
    expanded = [shape[d] for b in branches for d in b]
    order = [d for b in branches for d in b]
    out = out.reshape(*expanded, out.shape[-1])
    perm = [order.index(d) for d in range(len(shape))] + [len(shape)]
    return out.permute(perm).contiguous()


@torch.no_grad()
def evaluate_grid(
    model: torch.nn.Module,
    coords: Sequence[torch.Tensor],
    chunk: int = 1 << 18,
) -> torch.Tensor:
    """Run ``model`` over the grid spanned by per-axis ``coords`` -> ``[*shape, C]``.

    Goes through the model's split path (``forward_grid``), chunking the largest branch
    so that at most about ``chunk`` output points are live at once: a 4096 x 4096
    render needs memory for one chunk, not for the whole grid of features.
    """
    branches = model.branches  # type: ignore[attr-defined]
    shape = [len(c) for c in coords]
    parts = [branch_points([coords[d] for d in b]) for b in branches]
    sizes = [p.shape[0] for p in parts]
    big = max(range(len(parts)), key=lambda j: sizes[j])
    rest = math.prod(sizes) // sizes[big]
    step = max(1, chunk // max(rest, 1))
    pieces = []
    for start in range(0, sizes[big], step):
        chunk_parts = list(parts)
        chunk_parts[big] = parts[big][start : start + step]
        pieces.append(model.forward_grid(chunk_parts))  # type: ignore[attr-defined]
    out = torch.cat(pieces, dim=big)
    return to_axis_order(out, branches, shape)


class GridInfo:
    """What a model needs to know of its signal: axis names, grid sizes, channels.

    ``default_split`` is the signal kind's usual split for split models ("x+y" for
    images, "xy+t" for video, "x+y+z" for shapes).
    """

    __slots__ = ("axes", "shape", "out_features", "default_split")

    def __init__(
        self,
        axes: Sequence[str],
        shape: Sequence[int],
        out_features: int,
        default_split: str | None = None,
    ) -> None:
        if len(axes) != len(shape):
            raise CoordfitError(f"axes {tuple(axes)} and shape {tuple(shape)} differ in length")
        self.axes = tuple(axes)
        self.shape = tuple(int(s) for s in shape)
        self.out_features = int(out_features)
        self.default_split = default_split or "+".join(self.axes)

    @property
    def in_features(self) -> int:
        return len(self.axes)

    def to_dict(self) -> dict:
        return {
            "axes": list(self.axes),
            "shape": list(self.shape),
            "out_features": self.out_features,
            "default_split": self.default_split,
        }

    @classmethod
    def from_dict(cls, d: dict) -> GridInfo:
        return cls(d["axes"], d["shape"], d["out_features"], d.get("default_split"))

    def __repr__(self) -> str:
        return f"GridInfo(axes={self.axes}, shape={self.shape}, out_features={self.out_features})"
