"""Multiresolution grid encoding (instant-ngp / tiny-cuda-nn), in plain PyTorch.

Level ``l`` is a grid with ``scale_l = N_min * b**l - 1`` and ``res_l = ceil(scale_l) + 1``
vertices per axis. A level whose ``res_l ** D`` vertices fit the table is stored densely
(index ``sum_d c_d * res_l**d``); a finer level is hashed into ``T = 2**log2_table_size``
entries (``XOR_d c_d * prime_d mod T``, primes 1, 2654435761, 805459861, ...). Each entry
holds ``F`` features, initialised U(-1e-4, 1e-4). A point is (multi)linearly interpolated
from the ``2**D`` vertices around it on every level; the output concatenates the levels.

The conventions follow tiny-cuda-nn exactly, so that its ``HashGrid`` and this module
agree on the same table: inputs on [0, 1] (we map coordfit's [-1, 1] there),
``pos = u * scale_l + 0.5``, each level's rows padded to a multiple of 8 and laid out
level after level in one flat table ``[rows, F]``, indices taken modulo the level size.

Speed on a CPU: all levels and all corners are indexed at once (one ``[N, L, 2**D]``
index tensor into the flat table), and the gather, the interpolation weights and the
sum over corners run in one custom autograd function whose backward is one
``index_add_`` into the table. See ``docs/grids.md`` for the profile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..core.errors import CoordfitError
from ..core.registry import Config

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

    def validate(self) -> None:
        super().validate()
        self.check_positive("levels", "features_per_level", "base_resolution", "max_resolution")
        if self.log2_table_size is not None and not 1 <= self.log2_table_size <= 30:
            raise CoordfitError(f"log2-table-size must be in 1..30, got {self.log2_table_size}")
        if self.per_level_scale is not None and self.per_level_scale < 1.0:
            raise CoordfitError(f"per-level-scale must be >= 1, got {self.per_level_scale}")

    def resolve(self, dims: int, sizes: tuple[int, ...]) -> GridSpec:
        """The grid for ``dims`` axes of ``sizes`` points: T, N_max and b made concrete."""
        log2_t = self.log2_table_size or (24 if dims <= 2 else 19)
        n_max = self.max_resolution or max(sizes) / 2
        b = self.per_level_scale or growth_factor(self.base_resolution, n_max, self.levels)
        return GridSpec(self.levels, self.features_per_level, log2_t, self.base_resolution, b, n_max)


def growth_factor(base_resolution: int, max_resolution: float, levels: int) -> float:
    """instant-ngp's b = exp((ln N_max - ln N_min) / (L - 1)); 1 when N_max <= N_min."""
    if levels <= 1 or max_resolution <= base_resolution:
        return 1.0
    return math.exp((math.log(max_resolution) - math.log(base_resolution)) / (levels - 1))


class MultiresGrid(nn.Module):
    """``[N, D]`` points on [-1, 1] -> ``[N, L * F]`` features (level-major, as tiny-cuda-nn)."""

    def __init__(self, in_features: int, config: GridSpec, hash_all: bool = False) -> None:
        """``config`` with T and b concrete (:meth:`GridSpec.resolve`). ``hash_all`` hashes every
        level into T rows, even those that would fit densely (for tests)."""
        super().__init__()
        if not 1 <= in_features <= MAX_DIMS:
            raise CoordfitError(f"grid encodings take 1 to {MAX_DIMS} input dimensions, got {in_features}")
        config.validate()
        if config.log2_table_size is None or config.per_level_scale is None:
            raise CoordfitError("a grid encoding needs log2_table_size and per_level_scale: resolve() the spec first")
        self.in_features = D = in_features
        self.config = c = config
        T = 1 << c.log2_table_size
        scales, res, sizes, offsets, hashed = [], [], [], [], []
        offset = 0
        for lvl in range(c.levels):
            # float32 arithmetic, as tiny-cuda-nn computes it on the GPU
            scale = float(torch.exp2(torch.tensor(lvl * math.log2(c.per_level_scale))) * c.base_resolution - 1.0)
            r = math.ceil(scale) + 1
            dense = r**D
            size = T if hash_all else min(-(-dense // 8) * 8, T)
            scales.append(scale)
            res.append(r)
            sizes.append(size)
            offsets.append(offset)
            hashed.append(hash_all or dense > T)
            offset += size
        self.resolutions: list[int] = res  # vertices per axis of each level
        self.level_sizes: list[int] = sizes  # table rows of each level
        self.hashed: list[bool] = hashed  # which levels are hashed (a suffix: resolutions grow)
        self.n_dense = hashed.index(True) if any(hashed) else c.levels
        self.table = nn.Parameter(torch.empty(offset, c.features_per_level).uniform_(-1e-4, 1e-4))  # [rows, F]
        bits = torch.tensor([[(k >> d) & 1 for d in range(D)] for k in range(1 << D)])
        self.register_buffer("scales", torch.tensor(scales, dtype=torch.float32), persistent=False)  # [L]
        self.register_buffer("bits", bits, persistent=False)  # [2^D, D] corner offsets
        strides = torch.tensor([[r**d for d in range(D)] for r in res], dtype=torch.long)
        self.register_buffer("strides", strides, persistent=False)  # [L, D] dense strides
        self.register_buffer("sizes", torch.tensor(sizes, dtype=torch.long), persistent=False)  # [L]
        self.register_buffer("offsets", torch.tensor(offsets, dtype=torch.long), persistent=False)  # [L]
        self.register_buffer("primes", torch.tensor(PRIMES[:D], dtype=torch.long), persistent=False)  # [D]

    @property
    def out_features(self) -> int:
        return self.config.levels * self.config.features_per_level

    def extra_repr(self) -> str:
        c = self.config
        return (f"dims={self.in_features}, levels={c.levels}, F={c.features_per_level}, "
                f"T=2^{c.log2_table_size}, res={self.resolutions[0]}..{self.resolutions[-1]}, "
                f"dense_levels={self.n_dense}, rows={self.table.shape[0]:,}")

    # -- the fast path ---------------------------------------------------------------------
    def rows_and_weights(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [N, D]`` -> table rows ``[N, L, 2^D]`` and interpolation weights ``[N, L, 2^D]``.

        Corner ``k`` has offset bit ``d`` = ``(k >> d) & 1``. Work is done per dimension on
        ``[N, L, 2]`` pairs (vertex below / above) and combined by outer products, so no
        tensor ``[N, L, 2^D, D]`` is ever built.
        """
        u = ((x + 1.0) * 0.5).clamp(0.0, 1.0)
        pos = u[:, None, :] * self.scales[:, None] + 0.5  # [N, L, D]
        base = pos.floor()
        frac = pos - base
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
        rows, w = self.rows_and_weights(x)
        return _Interpolate.apply(self.table, rows, w.to(self.table.dtype)).reshape(x.shape[0], self.out_features)

    # -- the reference: every corner spelled out, a plain gather --------------------------
    def corners(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [N, D]`` -> vertex coordinates ``[N, L, 2^D, D]`` (long) and weights ``[N, L, 2^D]``."""
        u = ((x + 1.0) * 0.5).clamp(0.0, 1.0)
        pos = u[:, None, :] * self.scales[:, None] + 0.5  # [N, L, D]
        base = pos.floor()
        frac = (pos - base)[:, :, None, :]  # [N, L, 1, D]
        vert = base.long()[:, :, None, :] + self.bits  # [N, L, 2^D, D]
        return vert, torch.where(self.bits.bool(), frac, 1.0 - frac).prod(-1)

    def index(self, vert: torch.Tensor) -> torch.Tensor:
        """Vertex coordinates ``[N, L, 2^D, D]`` -> rows of the flat table ``[N, L, 2^D]``."""
        out = torch.empty(vert.shape[:-1], dtype=torch.long, device=vert.device)
        for lvl, (r, size, off) in enumerate(zip(self.resolutions, self.level_sizes, self.offsets.tolist())):
            v = vert[:, lvl]
            if self.hashed[lvl]:
                h = torch.zeros_like(v[..., 0])
                for d in range(self.in_features):
                    h = h ^ ((v[..., d] * PRIMES[d]) & 0xFFFFFFFF)
                idx = h % size
            else:
                idx = sum(v[..., d] * r**d for d in range(self.in_features)) % size
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
