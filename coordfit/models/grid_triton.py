"""The multiresolution grid encoding on CUDA, in Triton (imported only for CUDA inputs).

The same arithmetic as the CPU kernel (``kernels/grid_cpu.cpp``) and the PyTorch
reference, in float32 with multiply-adds left unfused (``enable_fp_fusion=False``) so
that each point falls in the same cell. Forward and the table's gradient run one program
per (block of points, level); the table's gradient is summed with atomic adds (the
order, and so the last bits, vary between runs); the gradient of ``x`` runs one program
per block of points and loops over the levels (deterministic).

Triton compiles each (D, F) on its first call. ``TRITON_INTERPRET=1`` runs these kernels
on the CPU (slowly): ``tests/test_grid_kernel.py`` does so where Triton is installed, so
the CUDA source is checked against the reference even on machines without a GPU.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

__all__ = ["forward", "backward"]


# tiny-cuda-nn's primes (axis 0's is 1)
P1 = tl.constexpr(2654435761)
P2 = tl.constexpr(805459861)
P3 = tl.constexpr(3674653429)


@triton.jit
def _pick(k: tl.constexpr, d: tl.constexpr, a, b):
    """``b`` where bit ``d`` of corner ``k`` is set, else ``a`` (resolved at compile time)."""
    if (k >> d) & 1:
        return b
    else:
        return a


@triton.jit
def _axis(x_ptr, n, mask, d: tl.constexpr, D: tl.constexpr, meta_ptr, fmeta_ptr, lvl, prime: tl.constexpr):
    """Axis ``d`` of one level for a block of points: fraction, d pos / d x, dense and hashed
    terms of the vertex below and above."""
    M: tl.constexpr = 3 + 2 * D
    xd = tl.load(x_ptr + n * D + d, mask=mask, other=0.0)
    scale = tl.load(fmeta_ptr + lvl * (D + 1) + d)
    shift = tl.load(fmeta_ptr + lvl * (D + 1) + D)
    stride = tl.load(meta_ptr + lvl * M + 3 + d)
    cmax = tl.load(meta_ptr + lvl * M + 3 + D + d)
    raw = (xd + 1.0) * 0.5
    u = tl.minimum(tl.maximum(raw, 0.0), 1.0)
    dpos = tl.where((raw >= 0.0) & (raw <= 1.0), scale * 0.5, 0.0)
    pos = u * scale + shift
    base = tl.minimum(tl.floor(pos), cmax.to(tl.float32))
    frac = pos - base
    c = base.to(tl.int64)
    lo = c * stride
    hlo = (c * prime) & 0xFFFFFFFF
    hhi = ((c + 1) * prime) & 0xFFFFFFFF
    return frac, dpos, lo, lo + stride, hlo, hhi


@triton.jit
def _level_axes(x_ptr, n, mask, D: tl.constexpr, meta_ptr, fmeta_ptr, lvl):
    f0, p0, l0, h0, a0, b0 = _axis(x_ptr, n, mask, 0, D, meta_ptr, fmeta_ptr, lvl, 1)
    f1, p1, l1, h1, a1, b1 = f0, p0, l0, h0, a0, b0  # unused beyond D (dropped at compile time)
    f2, p2, l2, h2, a2, b2 = f0, p0, l0, h0, a0, b0
    f3, p3, l3, h3, a3, b3 = f0, p0, l0, h0, a0, b0
    if D > 1:
        f1, p1, l1, h1, a1, b1 = _axis(x_ptr, n, mask, 1, D, meta_ptr, fmeta_ptr, lvl, P1)
    if D > 2:
        f2, p2, l2, h2, a2, b2 = _axis(x_ptr, n, mask, 2, D, meta_ptr, fmeta_ptr, lvl, P2)
    if D > 3:
        f3, p3, l3, h3, a3, b3 = _axis(x_ptr, n, mask, 3, D, meta_ptr, fmeta_ptr, lvl, P3)
    return (f0, f1, f2, f3, p0, p1, p2, p3, l0, h0, l1, h1, l2, h2, l3, h3,
            a0, b0, a1, b1, a2, b2, a3, b3)


@triton.jit
def _corner(k: tl.constexpr, D: tl.constexpr, f0, f1, f2, f3, l0, h0, l1, h1, l2, h2, l3, h3,
           a0, b0, a1, b1, a2, b2, a3, b3, size, offset, hashed):
    """Corner ``k``'s weight and table row."""
    w = _pick(k, 0, 1.0 - f0, f0)
    idx = _pick(k, 0, l0, h0)
    h = _pick(k, 0, a0, b0)
    if D > 1:
        w = w * _pick(k, 1, 1.0 - f1, f1)
        idx += _pick(k, 1, l1, h1)
        h = h ^ _pick(k, 1, a1, b1)
    if D > 2:
        w = w * _pick(k, 2, 1.0 - f2, f2)
        idx += _pick(k, 2, l2, h2)
        h = h ^ _pick(k, 2, a2, b2)
    if D > 3:
        w = w * _pick(k, 3, 1.0 - f3, f3)
        idx += _pick(k, 3, l3, h3)
        h = h ^ _pick(k, 3, a3, b3)
    idx = tl.where(idx >= size, idx - size, idx)  # the +1 corner past the last vertex wraps
    row = tl.where(hashed, h & (size - 1), idx) + offset
    return w, row


@triton.jit
def _level_head(meta_ptr, lvl, D: tl.constexpr):
    M: tl.constexpr = 3 + 2 * D
    return tl.load(meta_ptr + lvl * M), tl.load(meta_ptr + lvl * M + 1), tl.load(meta_ptr + lvl * M + 2) != 0


@triton.jit
def _table_kernel(x_ptr, table_ptr, grad_ptr, meta_ptr, fmeta_ptr, out_ptr, N, L, D: tl.constexpr, F: tl.constexpr,
                  BLOCK: tl.constexpr, BACKWARD: tl.constexpr):
    """One block of points on one level: the forward (``out [N, L * F]``), or with ``BACKWARD``
    the table's gradient (``out [rows, F]``, atomic adds of ``w * grad``)."""
    lvl = tl.program_id(1)
    n = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = n < N
    fo = tl.arange(0, F)
    size, offset, hashed = _level_head(meta_ptr, lvl, D)
    (f0, f1, f2, f3, p0, p1, p2, p3, l0, h0, l1, h1, l2, h2, l3, h3,
     a0, b0, a1, b1, a2, b2, a3, b3) = _level_axes(x_ptr, n, mask, D, meta_ptr, fmeta_ptr, lvl)
    at = n[:, None] * (L * F) + lvl * F + fo[None, :]  # this level's features of each point
    if BACKWARD:
        g = tl.load(grad_ptr + at, mask=mask[:, None], other=0.0)
    acc = tl.zeros([BLOCK, F], dtype=tl.float32)
    for k in tl.static_range(1 << D):
        w, row = _corner(k, D, f0, f1, f2, f3, l0, h0, l1, h1, l2, h2, l3, h3, a0, b0, a1, b1, a2, b2, a3, b3,
                         size, offset, hashed)
        if BACKWARD:
            tl.atomic_add(out_ptr + row[:, None] * F + fo[None, :], w[:, None] * g, mask=mask[:, None])
        else:
            acc += w[:, None] * tl.load(table_ptr + row[:, None] * F + fo[None, :], mask=mask[:, None], other=0.0)
    if not BACKWARD:
        tl.store(out_ptr + at, acc, mask=mask[:, None])


@triton.jit
def _dweight(k: tl.constexpr, d: tl.constexpr, D: tl.constexpr, f0, f1, f2, f3):
    """d w_k / d frac_d: +-1 times the other axes' factors."""
    dw = _pick(k, d, -1.0, 1.0) + f0 * 0.0
    if d != 0:
        dw = dw * _pick(k, 0, 1.0 - f0, f0)
    if D > 1 and d != 1:
        dw = dw * _pick(k, 1, 1.0 - f1, f1)
    if D > 2 and d != 2:
        dw = dw * _pick(k, 2, 1.0 - f2, f2)
    if D > 3 and d != 3:
        dw = dw * _pick(k, 3, 1.0 - f3, f3)
    return dw


@triton.jit
def _backward_x_kernel(x_ptr, table_ptr, grad_ptr, meta_ptr, fmeta_ptr, gx_ptr, N, L, D: tl.constexpr,
               F: tl.constexpr, BLOCK: tl.constexpr):
    n = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = n < N
    fo = tl.arange(0, F)
    g0 = tl.zeros([BLOCK], dtype=tl.float32)
    g1 = tl.zeros([BLOCK], dtype=tl.float32)
    g2 = tl.zeros([BLOCK], dtype=tl.float32)
    g3 = tl.zeros([BLOCK], dtype=tl.float32)
    for lvl in range(L):
        size, offset, hashed = _level_head(meta_ptr, lvl, D)
        (f0, f1, f2, f3, p0, p1, p2, p3, l0, h0, l1, h1, l2, h2, l3, h3,
         a0, b0, a1, b1, a2, b2, a3, b3) = _level_axes(x_ptr, n, mask, D, meta_ptr, fmeta_ptr, lvl)
        g = tl.load(grad_ptr + n[:, None] * (L * F) + lvl * F + fo[None, :], mask=mask[:, None], other=0.0)
        for k in tl.static_range(1 << D):
            w, row = _corner(k, D, f0, f1, f2, f3, l0, h0, l1, h1, l2, h2, l3, h3, a0, b0, a1, b1, a2, b2, a3,
                            b3, size, offset, hashed)
            vals = tl.load(table_ptr + row[:, None] * F + fo[None, :], mask=mask[:, None], other=0.0)
            gt = tl.sum(vals * g, axis=1)  # d loss / d w_k
            g0 += gt * _dweight(k, 0, D, f0, f1, f2, f3) * p0
            if D > 1:
                g1 += gt * _dweight(k, 1, D, f0, f1, f2, f3) * p1
            if D > 2:
                g2 += gt * _dweight(k, 2, D, f0, f1, f2, f3) * p2
            if D > 3:
                g3 += gt * _dweight(k, 3, D, f0, f1, f2, f3) * p3
    tl.store(gx_ptr + n * D, g0, mask=mask)
    if D > 1:
        tl.store(gx_ptr + n * D + 1, g1, mask=mask)
    if D > 2:
        tl.store(gx_ptr + n * D + 2, g2, mask=mask)
    if D > 3:
        tl.store(gx_ptr + n * D + 3, g3, mask=mask)



_BLOCK = 128


def _interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _launch(kernel, grid, *args, **meta) -> None:
    options = {} if _interpreted() else {"enable_fp_fusion": False}  # same cells as the CPU and the reference
    kernel[grid](*args, **meta, **options)


def forward(x: torch.Tensor, table: torch.Tensor, meta: torch.Tensor, fmeta: torch.Tensor, out: torch.Tensor) -> None:
    """``out [N, L * F]`` from ``x [N, D]`` (N > 0; contiguous fp32 CUDA tensors)."""
    (N, D), (L, F) = x.shape, (meta.shape[0], table.shape[1])
    _launch(_table_kernel, (-(-N // _BLOCK), L), x, table, out, meta, fmeta, out, N, L, D=D, F=F, BLOCK=_BLOCK,
            BACKWARD=False)


def backward(x: torch.Tensor, table: torch.Tensor, grad: torch.Tensor, meta: torch.Tensor, fmeta: torch.Tensor,
             g_table: torch.Tensor | None, g_x: torch.Tensor | None) -> None:
    """Add the table's gradient into ``g_table`` (zeros) and write the input's into ``g_x``, where given."""
    (N, D), (L, F) = x.shape, (meta.shape[0], table.shape[1])
    if g_table is not None:
        _launch(_table_kernel, (-(-N // _BLOCK), L), x, table, grad, meta, fmeta, g_table, N, L, D=D, F=F,
                BLOCK=_BLOCK, BACKWARD=True)
    if g_x is not None:
        _launch(_backward_x_kernel, (-(-N // _BLOCK),), x, table, grad, meta, fmeta, g_x, N, L, D=D, F=F, BLOCK=_BLOCK)
