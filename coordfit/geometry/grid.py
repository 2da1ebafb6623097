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

from ..core.errors import CoordfitError

__all__ = [
    "GridInfo",
    "parse_split",
    "format_split",
    "axis_coords",
    "branch_points",
    "sub_grid_counts",
    "check_generator",
    "flat_to_index",
    "index_coords",
    "sample_branches",
    "gather",
    "to_axis_order",
    "eval_chunk",
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
                    f"(its axes are {', '.join(sorted(names, key=_SPELLING.find))})"
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


_SPELLING = "xyzt"  # the order of axes within a branch as specs spell them: "xy+t", not "yx+t"


def format_split(branches: Sequence[Sequence[int]], axes: Sequence[str]) -> str:
    """The split spec of ``branches``, spelled as the specs are written (``xy+t``).

    >>> format_split(parse_split("xy+t", ("t", "y", "x")), ("t", "y", "x"))
    'xy+t'
    """
    def key(d: int) -> tuple[int, int]:
        return (_SPELLING.find(axes[d]) % (len(_SPELLING) + 1), d)

    return "+".join("".join(axes[d] for d in sorted(b, key=key)) for b in branches)


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


def sub_grid_counts(branches: Sequence[Sequence[int]], shape: Sequence[int], budget: int) -> list[int]:
    """Points per branch of a sub-grid of about ``budget`` points (all of them when the
    whole grid fits the budget); see :func:`_branch_counts`."""
    sizes = _branch_sizes(branches, shape)
    return sizes if math.prod(sizes) <= budget else _branch_counts(sizes, budget)


# A branch of a split model holding at most PERMUTE_RATIO times the points drawn from it
# is permuted on the device: distinct points for O(n_b) <= O(PERMUTE_RATIO * k_b) work,
# where k_b (about budget ** (1 / branches)) is small next to the batch, so the draw stays
# O(batch). A larger branch draws with replacement in O(k_b), and then only about
# k_b / (2 n_b) < 1/32 of its draws repeat another (a repeat repeats a whole slab of the
# sub-grid, so a step loses under 3% of its points). On one CPU thread a permutation costs
# ~7 ns per element: ~0.1 ms at the ratio for a branch of 16k, next to steps of tens of ms.
PERMUTE_RATIO = 16


def check_generator(generator: torch.Generator, device: torch.device | str | None = None) -> torch.device:
    """The device draws are made on: ``generator``'s, which must be ``device`` when given.

    Samplers draw only with the generator passed in (never the global RNG), on the
    device of the signal, so that a run resumes exactly from a saved generator state.
    """
    if not isinstance(generator, torch.Generator):
        raise CoordfitError(f"sampling needs a torch.Generator, got {type(generator).__name__}")
    have = generator.device
    if device is None:
        return have
    want = torch.device(device)
    if have.type != want.type or (None not in (have.index, want.index) and have.index != want.index):
        raise CoordfitError(
            f"the sampling generator is on {have} but the signal is on {want}: "
            f"make it with torch.Generator(device='{want}')"
        )
    return want


def flat_to_index(flat: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """Row-major flat indices ``[k]`` into a ``sizes`` grid -> per-axis indices ``[k, len(sizes)]``.

    Plain integer arithmetic with Python sizes: nothing is copied to the device
    (``torch.unravel_index`` builds its divisors as tensors).
    """
    cols = []
    for s in reversed(sizes[1:]):
        cols.append(flat % s)
        flat = flat // s
    cols.append(flat)
    return torch.stack(cols[::-1], dim=-1)


def index_coords(index: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """Grid indices ``[k, d]`` -> float coordinates ``[k, d]`` on [-1, 1], endpoints
    included; an axis of size one sits at 0 (as :func:`axis_coords`)."""
    cols = [
        index[:, j].float() / (s - 1) * 2.0 - 1.0 if s > 1 else index.new_zeros(len(index), dtype=torch.float32)
        for j, s in enumerate(sizes)
    ]
    return torch.stack(cols, dim=-1)


def _draw(n: int, k: int, split: bool, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """``k`` flat indices into a branch of ``n`` points, on ``device``, in O(k)."""
    if k >= n:
        return torch.arange(n, device=device)
    if split and n <= PERMUTE_RATIO * k:
        flat = torch.randperm(n, generator=generator, device=device)[:k]
    else:
        flat = torch.randint(n, (k,), generator=generator, device=device)
    # split branches are short (about budget ** (1 / branches)): sorted for a few us, they
    # make the gather a little more sequential (~5-10% on one CPU thread). One branch of
    # a whole batch stays unsorted: sorting 16k points costs ~0.9 ms, saving ~0.25 ms.
    return flat.sort().values if split else flat


def sample_branches(
    branches: Sequence[Sequence[int]],
    shape: Sequence[int],
    budget: int,
    generator: torch.Generator,
    device: torch.device | str | None = None,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Draw a random sub-grid of about ``budget`` points on ``device`` (default: the
    generator's; it must be the generator's device).

    Each branch keeps the same fraction ``f = (budget / total) ** (1 / k)`` of its
    points (:func:`sub_grid_counts`); when the whole grid fits the budget it is returned
    in order. The work is O(budget) whatever the grid's size, made on the device with
    ``generator`` only:

    * one branch (unsplit models): ``budget`` points drawn uniformly WITH replacement
      (``torch.randint`` over flat indices; a point may repeat, with probability about
      ``budget / total`` per point), unsorted;
    * several branches (split models): each branch's draws are sorted, and distinct
      when the branch holds at most :data:`PERMUTE_RATIO` times its draw (a device
      permutation), else drawn with replacement.

    Returns ``(coords, index)``: per branch ``[n_b, d_b]`` float coordinates on
    [-1, 1] and ``[n_b, d_b]`` integer grid indices.
    """
    device = check_generator(generator, device)
    split = len(branches) > 1
    coords, index = [], []
    for b, n_b, k in zip(branches, _branch_sizes(branches, shape), sub_grid_counts(branches, shape, budget)):
        bshape = [shape[d] for d in b]
        idx = flat_to_index(_draw(n_b, k, split, generator, device), bshape)  # [k, d_b]
        coords.append(index_coords(idx, bshape))
        index.append(idx)
    return coords, index


def gather(values: torch.Tensor, branches: Sequence[Sequence[int]], index: Sequence[torch.Tensor]) -> torch.Tensor:
    """Target values on a sub-grid: ``values [*shape, C]`` (contiguous) -> ``[n_1, ..., n_k, C]``.

    One ``index_select`` of row-major offsets (the broadcast sum of each branch's
    offsets): on one CPU thread about 3x faster than advanced indexing with one index
    per axis, and no work of the grid's size.
    """
    *shape, c = values.shape
    row = [math.prod(shape[d + 1 :]) for d in range(len(shape))]  # row-major strides of the grid
    k = len(branches)
    offset = torch.zeros((), dtype=torch.long, device=values.device)
    for j, (b, idx) in enumerate(zip(branches, index)):
        view = [1] * k
        view[j] = -1
        offset = offset + sum(idx[:, col] * row[d] for col, d in enumerate(b)).reshape(view)  # [1.., n_j, ..1]
    return values.reshape(-1, c).index_select(0, offset.reshape(-1)).view(*offset.shape, c)


def to_axis_order(out: torch.Tensor, branches: Sequence[Sequence[int]], shape: Sequence[int]) -> torch.Tensor:
    """Full-grid output in branch layout ``[n_1, ..., n_k, C]`` -> ``[*shape, C]``."""
    expanded = [shape[d] for b in branches for d in b]
    order = [d for b in branches for d in b]
    out = out.reshape(*expanded, out.shape[-1])
    perm = [order.index(d) for d in range(len(shape))] + [len(shape)]
    return out.permute(perm).contiguous()


def eval_chunk(device: torch.device | str) -> int:
    """Output points per forward pass of :func:`evaluate_grid` on ``device`` by default.

    On a CPU running one thread (coordfit's CPU setting) a chunk's activations, a few
    ``chunk x width`` float tensors, should stay in the last-level cache: 8,192 points
    rendered 1.3-1.8x faster than 262,144 (CoordX on a clip and on a volume, SIREN on a
    volume; ``examples/bench_render.py``). With more threads (where small chunks lost,
    0.5x at two threads on a busy 2-core machine) and on GPUs: 262,144.
    """
    if torch.device(device).type == "cpu" and torch.get_num_threads() == 1:
        return 1 << 13
    return 1 << 18


@torch.no_grad()
def evaluate_grid(
    model: torch.nn.Module,
    coords: Sequence[torch.Tensor],
    chunk: int | None = None,
) -> torch.Tensor:
    """Run ``model`` over the grid spanned by per-axis ``coords`` -> ``[*shape, C]``.

    Goes through the model's split path (``forward_grid``), chunking the largest branch
    so that at most about ``chunk`` output points (default :func:`eval_chunk`) are live
    at once: a 4096 x 4096 render needs memory for one chunk, not for the whole grid of
    features.
    """
    chunk = chunk or eval_chunk(coords[0].device)
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
