"""Multiresolution grid encoding (instant-ngp / tiny-cuda-nn): a fused kernel, and its PyTorch reference.

Level ``l`` is a grid with ``scale_l = N_min * b**l - 1`` and ``res_l = ceil(scale_l) + 1``
vertices per axis. A level whose ``res_l ** D`` vertices fit the table is stored densely
(index ``sum_d c_d * res_l**d``); a finer level is hashed into ``T = 2**log2_table_size``
entries (``XOR_d c_d * prime_d mod T``, primes 1, 2654435761, 805459861, ...). Each entry
holds ``F`` features, initialised U(-1e-4, 1e-4). A point is (multi)linearly interpolated
from the ``2**D`` vertices around it on every level; the output concatenates the levels.

**Explicit dense levels** (``GridSpec.dense_levels``, for plane and line models such as
K-Planes and TensoRF) replace that ladder: level ``l`` has the given vertices ``r_{l,d}``
per axis (one number for every axis, or one per axis), is stored densely (index
``sum_d c_d * prod_{e<d} r_{l,e}``, no padding, never hashed), and is sampled with
aligned corners: ``pos = u * (r - 1)``, so the first and last vertices sit on -1 and 1.

The conventions follow tiny-cuda-nn exactly, so that its ``HashGrid`` and this module
agree on the same table: inputs on [0, 1] (we map coordfit's [-1, 1] there),
``pos = u * scale_l + 0.5``, each level's rows padded to a multiple of 8 and laid out
level after level in one flat table ``[rows, F]``, indices taken modulo the level size.

``forward`` runs the fused kernel of :mod:`coordfit.models.grid_kernel` (C++ on the CPU,
Triton on CUDA) for fp32 inputs, and :meth:`MultiresGrid.torch_forward` elsewhere: all
levels and corners indexed at once (one ``[N, L, 2**D]`` index tensor into the flat
table), the weighted sum in one custom autograd function whose backward is one
``index_add_``. :meth:`MultiresGrid.reference` spells every corner out (the tests'
oracle). See ``docs/grids.md`` for the measurements.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..core.errors import CoordfitError
from ..core.registry import Config
from . import grid_kernel

__all__ = ["GridSpec", "MultiresGrid", "PRIMES", "growth_factor"]

# tiny-cuda-nn's coherent prime hash factors, one per input dimension.
PRIMES = (1, 2654435761, 805459861, 3674653429, 2097192037, 1434869437, 2165219737)
MAX_DIMS = 4


@dataclass
class GridSpec(Config):
    """The multiresolution grid options every grid model shares (hashgrid, splitgrid).

    ``None`` means "from the signal": :meth:`resolve` fills it for the axes a grid encodes.
    """

    levels: int = 16  # L: resolution levels
    features_per_level: int = 2  # F: features stored per table entry (tcnn allows 1, 2, 4, 8)
    log2_table_size: int | None = None  # log2 T, entries per hashed level (None: 24 for 1-2-D, 19 for 3-4-D)
    base_resolution: int = 16  # N_min: grid resolution of the coarsest level
    per_level_scale: float | None = None  # b: growth per level (None: from N_min, N_max and L)
    max_resolution: float | None = None  # N_max: of the finest level (None: max(grid size) / 2)
    dense_levels: Sequence[int | Sequence[int]] | None = None
    """Explicit dense levels instead of the ladder above: each level's vertices per axis, one number
    or one per axis (e.g. 64,128,256 or 64x48,128x48); every level dense, never hashed, corners
    aligned on -1 and 1. Sets the number of levels; base/max resolution, scale and T are unused."""

    def __post_init__(self) -> None:
        if self.dense_levels is not None:
            self.dense_levels = _parse_dense_levels(self.dense_levels)

    def validate(self) -> None:
        super().validate()
        self.check_positive("levels", "features_per_level", "base_resolution", "max_resolution")
        if self.dense_levels is not None:
            levels = self.dense_levels
            flat = [r for lvl in levels for r in (lvl if isinstance(lvl, tuple) else (lvl,))]
            if (not isinstance(levels, tuple) or not levels
                    or not all(isinstance(r, int) and not isinstance(r, bool) and r >= 2 for r in flat)):
                raise CoordfitError(f"dense-levels must be one or more levels of whole numbers >= 2 (vertices per "
                                    f"axis, e.g. 64,128 or 64x48,128x48), got {self.dense_levels!r}")
        if self.log2_table_size is not None and not 1 <= self.log2_table_size <= 30:
            raise CoordfitError(f"log2-table-size must be in 1..30, got {self.log2_table_size}")
        if self.per_level_scale is not None and self.per_level_scale < 1.0:
            raise CoordfitError(f"per-level-scale must be >= 1, got {self.per_level_scale}")

    def resolve(self, dims: int, sizes: tuple[int, ...]) -> GridSpec:
        """The grid for ``dims`` axes of ``sizes`` points: T, N_max and b made concrete
        (with ``dense_levels``: the number of levels)."""
        if self.dense_levels is not None:
            return GridSpec(len(self.dense_levels), self.features_per_level, dense_levels=self.dense_levels)
        log2_t = self.log2_table_size or (24 if dims <= 2 else 19)
        n_max = self.max_resolution or max(sizes) / 2
        b = self.per_level_scale or growth_factor(self.base_resolution, n_max, self.levels)
        return GridSpec(self.levels, self.features_per_level, log2_t, self.base_resolution, b, n_max)


def _parse_dense_levels(value: object) -> object:
    """``"64,128"`` / ``"64x48,128x48"`` / lists (JSON) -> ``(64, 128)`` / ``((64, 48), (128, 48))``.
    Unreadable values are kept as given, for :meth:`GridSpec.validate` to refuse in one line."""
    def number(v: object) -> object:
        if isinstance(v, str) and v.strip().isdigit():
            return int(v)
        return v

    def level(v: object) -> object:
        if isinstance(v, str) and "x" in v.lower():
            v = v.lower().split("x")
        if isinstance(v, list | tuple):
            return tuple(number(r) for r in v)
        return number(v)

    if isinstance(value, str):
        value = [p for p in value.replace(" ", "").split(",") if p]
    if isinstance(value, list | tuple):
        return tuple(level(v) for v in value)
    return value


def growth_factor(base_resolution: int, max_resolution: float, levels: int) -> float:
    """instant-ngp's b = exp((ln N_max - ln N_min) / (L - 1)); 1 when N_max <= N_min."""
    if levels <= 1 or max_resolution <= base_resolution:
        return 1.0
    return math.exp((math.log(max_resolution) - math.log(base_resolution)) / (levels - 1))


class MultiresGrid(nn.Module):
    """``[N, D]`` points on [-1, 1] -> ``[N, L * F]`` features (level-major, as tiny-cuda-nn)."""

    def __init__(self, in_features: int, config: GridSpec, hash_all: bool = False) -> None:
        """``config`` with T and b concrete (:meth:`GridSpec.resolve`), or with ``dense_levels``.
        ``hash_all`` hashes every level into T rows, even those that would fit densely (for tests)."""
        super().__init__()
        if not 1 <= in_features <= MAX_DIMS:
            raise CoordfitError(f"grid encodings take 1 to {MAX_DIMS} input dimensions, got {in_features}")
        config.validate()
        self.in_features = D = in_features
        if config.dense_levels is not None:
            if hash_all:
                raise CoordfitError("explicit dense levels are never hashed (hash_all)")
            config = GridSpec(len(config.dense_levels), config.features_per_level, dense_levels=config.dense_levels)
            levels = [_explicit_level(r, D) for r in config.dense_levels]
        elif config.log2_table_size is None or config.per_level_scale is None:
            raise CoordfitError("a grid encoding needs log2_table_size and per_level_scale: resolve() the spec first")
        else:
            levels = [_ladder_level(config, lvl, D, hash_all) for lvl in range(config.levels)]
        self.config = config
        offsets = [sum(lv.size for lv in levels[:i]) for i in range(len(levels))]
        self.resolutions: list[int] = [max(lv.res) for lv in levels]  # vertices per axis of each level (largest)
        self.level_sizes: list[int] = [lv.size for lv in levels]  # table rows of each level
        self.hashed: list[bool] = [lv.hashed for lv in levels]  # which levels are hashed (a suffix: resolutions grow)
        self.n_dense = self.hashed.index(True) if any(self.hashed) else len(levels)
        rows = sum(self.level_sizes)
        self.table = nn.Parameter(torch.empty(rows, config.features_per_level).uniform_(-1e-4, 1e-4))  # [rows, F]
        bits = torch.tensor([[(k >> d) & 1 for d in range(D)] for k in range(1 << D)])
        strides = [[math.prod(lv.res[:d]) for d in range(D)] for lv in levels]

        def buffer(name: str, value: list, dtype: torch.dtype) -> None:
            self.register_buffer(name, torch.tensor(value, dtype=dtype), persistent=False)

        buffer("scales", [list(lv.scale) for lv in levels], torch.float32)  # [L, D] grid units per unit of u
        buffer("shifts", [lv.shift for lv in levels], torch.float32)  # [L] 0.5 (tiny-cuda-nn) or 0 (explicit)
        buffer("cell_max", [[lv.cell_max(d) for d in range(D)] for lv in levels], torch.long)  # [L, D] last cell
        self.register_buffer("bits", bits, persistent=False)  # [2^D, D] corner offsets
        buffer("strides", strides, torch.long)  # [L, D] dense strides
        buffer("sizes", self.level_sizes, torch.long)  # [L]
        buffer("offsets", offsets, torch.long)  # [L]
        buffer("primes", list(PRIMES[:D]), torch.long)  # [D]
        self._clamped = any(lv.explicit for lv in levels)
        # the fused kernel's view of the levels (grid_kernel.py): size, offset, hashed, strides, last cells
        buffer("kernel_meta", [[lv.size, off, int(lv.hashed), *st, *(lv.cell_max(d) for d in range(D))]
                               for lv, off, st in zip(levels, offsets, strides)], torch.long)  # [L, 3 + 2D]
        buffer("kernel_fmeta", [[*lv.scale, lv.shift] for lv in levels], torch.float32)  # [L, D + 1]
        self.kernel = True  # False: always the PyTorch path (benchmarks, debugging)

    @property
    def out_features(self) -> int:
        return self.config.levels * self.config.features_per_level

    def extra_repr(self) -> str:
        c = self.config
        table = "explicit dense levels" if c.dense_levels is not None else f"T=2^{c.log2_table_size}"
        return (f"dims={self.in_features}, levels={c.levels}, F={c.features_per_level}, {table}, "
                f"res={self.resolutions[0]}..{self.resolutions[-1]}, dense_levels={self.n_dense}, "
                f"rows={self.table.shape[0]:,}")

    def _cells(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [N, D]`` -> each level's cell (its lowest vertex, float) and the fraction across it, ``[N, L, D]``."""
        u = ((x + 1.0) * 0.5).clamp(0.0, 1.0)
        pos = u[:, None, :] * self.scales + self.shifts[:, None]  # [N, L, D]
        base = pos.floor()
        if self._clamped:  # explicit levels: u = 1 lies in the last cell, at fraction 1
            base = torch.minimum(base, self.cell_max.to(base.dtype))
        return base, pos - base

    # -- the fast path ---------------------------------------------------------------------
    def rows_and_weights(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [N, D]`` -> table rows ``[N, L, 2^D]`` and interpolation weights ``[N, L, 2^D]``.

        Corner ``k`` has offset bit ``d`` = ``(k >> d) & 1``. Work is done per dimension on
        ``[N, L, 2]`` pairs (vertex below / above) and combined by outer products, so no
        tensor ``[N, L, 2^D, D]`` is ever built.
        """
        base, frac = self._cells(x)
        cell = base.long()  # [N, L, D]
        w = _outer([torch.stack((1.0 - frac[..., d], frac[..., d]), -1) for d in range(self.in_features)], torch.mul)
        nd, pieces = self.n_dense, []
        if nd > 0:
            s = self.strides[:nd]  # [nd, D]
            pairs = [torch.stack((c, c + 1), -1) * s[:, d, None] for d, c in enumerate(cell[:, :nd].unbind(-1))]
            rows = _outer(pairs, torch.add) % self.sizes[:nd, None]
            pieces.append(rows + self.offsets[:nd, None])
        if nd < len(self.hashed):
            # uint32 products: only the low log2(T) bits survive the mask, so int64 is exact
            pairs = [torch.stack((c, c + 1), -1) * int(p) for c, p in zip(cell[:, nd:].unbind(-1), PRIMES)]
            rows = _outer(pairs, torch.bitwise_xor) & ((1 << self.config.log2_table_size) - 1)
            pieces.append(rows + self.offsets[nd:, None])
        rows = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)
        return rows, w

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, D] -> [N, L * F]
        """The fused kernel (:mod:`coordfit.models.grid_kernel`) where it runs, else :meth:`torch_forward`."""
        if self.kernel:
            out = grid_kernel.encode(x, self.table, self.kernel_meta, self.kernel_fmeta)
            if out is not None:
                return out
        return self.torch_forward(x)

    def torch_forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, D] -> [N, L * F]
        """The PyTorch path: any device and dtype, the fallback of the kernel."""
        rows, w = self.rows_and_weights(x)
        return _Interpolate.apply(self.table, rows, w.to(self.table.dtype)).reshape(x.shape[0], self.out_features)

    # -- the reference: every corner spelled out, a plain gather --------------------------
    def corners(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [N, D]`` -> vertex coordinates ``[N, L, 2^D, D]`` (long) and weights ``[N, L, 2^D]``."""
        base, frac = self._cells(x)
        frac = frac[:, :, None, :]  # [N, L, 1, D]
        vert = base.long()[:, :, None, :] + self.bits  # [N, L, 2^D, D]
        return vert, torch.where(self.bits.bool(), frac, 1.0 - frac).prod(-1)

    def index(self, vert: torch.Tensor) -> torch.Tensor:
        """Vertex coordinates ``[N, L, 2^D, D]`` -> rows of the flat table ``[N, L, 2^D]``."""
        out = torch.empty(vert.shape[:-1], dtype=torch.long, device=vert.device)
        for lvl, (size, off) in enumerate(zip(self.level_sizes, self.offsets.tolist())):
            v = vert[:, lvl]
            if self.hashed[lvl]:
                h = torch.zeros_like(v[..., 0])
                for d in range(self.in_features):
                    h = h ^ ((v[..., d] * PRIMES[d]) & 0xFFFFFFFF)
                idx = h % size
            else:
                idx = sum(v[..., d] * int(self.strides[lvl, d]) for d in range(self.in_features)) % size
            out[:, lvl] = idx + off
        return out

    def reference(self, x: torch.Tensor) -> torch.Tensor:  # [N, D] -> [N, L * F]
        vert, w = self.corners(x)
        feats = self.table[self.index(vert)]  # [N, L, 2^D, F]
        return (feats * w[..., None]).sum(2).reshape(x.shape[0], self.out_features)

    def macs_per_point(self) -> float:
        """Interpolation work per point: 2^D corners x (D-1 weight products + F multiply-adds) per level."""
        k = 1 << self.in_features
        return self.config.levels * k * (self.in_features - 1 + self.config.features_per_level)


@dataclass(frozen=True)
class _Level:
    """One level's geometry: ``pos_d = u_d * scale_d + shift``, vertices ``0..res_d - 1`` (+1 corner)."""

    res: tuple[int, ...]  # vertices per axis
    scale: tuple[float, ...]  # grid units per unit of u, per axis
    shift: float  # 0.5 on tiny-cuda-nn's ladder, 0 for explicit levels (aligned corners)
    size: int  # table rows
    hashed: bool
    explicit: bool  # explicit dense level: the cell is clamped to the last one, so u = 1 stays inside

    def cell_max(self, d: int) -> int:
        return self.res[d] - 2 if self.explicit else 1 << 40


def _ladder_level(c: GridSpec, lvl: int, dims: int, hash_all: bool) -> _Level:
    """tiny-cuda-nn's level ``lvl``: ``scale = N_min * b**lvl - 1``, dense while it fits T rows."""
    # float32 arithmetic, as tiny-cuda-nn computes it on the GPU
    scale = float(torch.exp2(torch.tensor(lvl * math.log2(c.per_level_scale))) * c.base_resolution - 1.0)
    r = math.ceil(scale) + 1
    T = 1 << c.log2_table_size
    size = T if hash_all else min(-(-r**dims // 8) * 8, T)
    return _Level((r,) * dims, (scale,) * dims, 0.5, size, hash_all or r**dims > T, False)


def _explicit_level(res: int | tuple[int, ...], dims: int) -> _Level:
    """An explicit dense level of ``res`` vertices per axis (one for all, or one per axis)."""
    res = (res,) * dims if isinstance(res, int) else tuple(res)
    if len(res) != dims:
        raise CoordfitError(f"dense level {'x'.join(map(str, res))} has {len(res)} axes; this grid has {dims}")
    scale = tuple(float(r - 1) for r in res)
    return _Level(res, scale, 0.0, math.prod(res), False, True)


def _outer(pairs: list[torch.Tensor], op) -> torch.Tensor:
    """Per-dimension pairs ``[..., 2]`` -> all ``2^D`` combinations ``[..., 2^D]`` (bit d of k picks pair d)."""
    out = pairs[0]
    for p in pairs[1:]:
        out = op(p[..., :, None], out[..., None, :]).flatten(-2)
    return out


# A row of F float32 features read as one wider element: a 1-D gather is ~5x faster on a
# CPU than ``index_select`` of short rows.
_ROW_DTYPES = {1: torch.float32, 2: torch.float64, 4: torch.complex128}


def _gather_rows(table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:  # [R, F], [M] -> [M, F]
    wide = _ROW_DTYPES.get(table.shape[1]) if table.dtype == torch.float32 and table.is_contiguous() else None
    if wide is None or table.device.type != "cpu":
        return table.index_select(0, rows)
    return table.view(wide).view(-1).index_select(0, rows).view(torch.float32).view(-1, table.shape[1])


class _Interpolate(torch.autograd.Function):
    """``sum_k w[n,l,k] * table[rows[n,l,k]]`` -> ``[N, L, F]``; backward by one ``index_add_``.

    Autograd's own backward for a gather (index_put with accumulate, or embedding_bag's)
    sorts the indices; a plain ``index_add_`` into a zero table is several times faster
    on a CPU.
    """

    @staticmethod
    def forward(ctx, table: torch.Tensor, rows: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        feats = _gather_rows(table, rows.reshape(-1)).view(*rows.shape, table.shape[1])  # [N, L, K, F]
        ctx.save_for_backward(rows, w, feats if ctx.needs_input_grad[2] else None)
        ctx.table_rows = table.shape[0]
        return torch.einsum("nlkf,nlk->nlf", feats, w)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # grad [N, L, F]
        rows, w, feats = ctx.saved_tensors
        g_table = g_w = None
        if ctx.needs_input_grad[0]:
            src = (grad[:, :, None, :] * w[..., None]).reshape(-1, grad.shape[-1])
            g_table = grad.new_zeros(ctx.table_rows, grad.shape[-1]).index_add_(0, rows.reshape(-1), src)
        if ctx.needs_input_grad[2]:
            g_w = torch.einsum("nlkf,nlf->nlk", feats, grad)
        return g_table, None, g_w
