"""Attention backends for the view-synthesis models: full (SDPA) and QuadTree.

Tokens of one sequence are laid out as ``S`` *slabs* (views), each an ``h x w`` grid of
patch tokens, flattened slab-major then row-major: index ``s*h*w + y*w + x``. Full
attention ignores the layout; QuadTree attention builds 2x2 average-pooled pyramids of
queries, keys and values *inside each slab* and refines only the top-K key regions per
query from the coarsest level down (Tang et al., QuadTree Attention, ICLR 2022). It is
written in plain PyTorch: selected keys and values are gathered with indices and
autograd does the scatter backward.

Variants (``level`` 0 is the finest, ``levels - 1`` the coarsest):

* ``quadtree-b``: each level's message is a softmax over that level's candidates (all
  keys at the coarsest level, the 4K children of the parent's top-K below); messages
  are upsampled to the finest queries and mixed with learned per-head level weights,
  ``sum_l softmax(w)_l msg_l``.
* ``quadtree-a``: one softmax over the leaves of the refined tree: at every level the
  candidates that were *not* selected for refinement take part with their pooled key
  (logit + log of their area, standing for the tokens they cover), the selected ones
  hand their weight to their children, and the finest level takes part in full. When
  K covers every key nothing stays coarse and the result is exactly full attention.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from ..core.errors import CoordfitError

__all__ = ["AttentionKind", "ATTENTION_KINDS", "full_attention", "quadtree_attention", "check_quadtree"]

AttentionKind = Literal["full", "quadtree-a", "quadtree-b"]
ATTENTION_KINDS: tuple[str, ...] = ("full", "quadtree-a", "quadtree-b")


def full_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention over every key: q ``[B, H, Nq, D]``, k, v ``[B, H, Nk, D]``."""
    return F.scaled_dot_product_attention(q, k, v)


def check_quadtree(grid: tuple[int, int], levels: int, topk: Sequence[int]) -> None:
    """Raise a clear error when a token grid cannot hold ``levels`` pyramid levels."""
    if levels < 1:
        raise CoordfitError(f"quadtree levels must be >= 1, got {levels}")
    if len(topk) != levels - 1 or any(int(t) < 1 for t in topk):
        raise CoordfitError(
            f"quadtree top-K needs one positive K per level above the finest "
            f"({levels - 1} for {levels} levels), got {list(topk)}"
        )
    f = 2 ** (levels - 1)
    if grid[0] % f or grid[1] % f:
        raise CoordfitError(
            f"a {grid[0]}x{grid[1]} token grid cannot be pooled {levels - 1} times; "
            f"use fewer quadtree levels or an image size divisible by patch*{f}"
        )


def _pool(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """2x2 average pool inside each slab: ``[B, H, S*h*w, D] -> [B, H, S*(h/2)*(w/2), D]``."""
    b, nh, n, d = x.shape
    s = n // (h * w)
    return x.view(b, nh, s, h // 2, 2, w // 2, 2, d).mean(dim=(4, 6)).reshape(b, nh, -1, d)


def _parents(n: int, h: int, w: int, device: torch.device) -> torch.Tensor:
    """For each of ``n`` tokens on slabs of ``h x w``, its parent index one level up."""
    i = torch.arange(n, device=device)
    s, r = i // (h * w), i % (h * w)
    y, x = r // w, r % w
    return s * (h // 2) * (w // 2) + (y // 2) * (w // 2) + x // 2


def _children(idx: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Indices ``[..., K]`` on slabs of ``h x w`` -> their 4 children ``[..., 4K]`` one level down."""
    s, r = idx // (h * w), idx % (h * w)
    y, x = r // w, r % w
    base = s * (4 * h * w) + (2 * y) * (2 * w) + 2 * x
    offsets = torch.tensor([0, 1, 2 * w, 2 * w + 1], device=idx.device)
    return (base[..., None] + offsets).flatten(-2)


def _gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x ``[B, H, N, D]``, idx ``[B, H, M, C]`` -> ``[B, H, M, C, D]``."""
    b, nh, m, c = idx.shape
    flat = idx.reshape(b, nh, m * c, 1).expand(-1, -1, -1, x.shape[-1])
    return x.gather(2, flat).view(b, nh, m, c, x.shape[-1])


def quadtree_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    grid: tuple[int, int],
    levels: int = 3,
    topk: Sequence[int] = (8, 8),
    variant: Literal["a", "b"] = "b",
    level_logits: torch.Tensor | None = None,
    return_levels: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    """QuadTree attention. q ``[B, H, Sq*h*w, D]``, k, v ``[B, H, Sk*h*w, D]``, grid ``(h, w)``.

    ``topk[i]`` is the number of keys kept per query at level ``levels - 1 - i`` (coarsest
    first). ``level_logits`` ``[H, levels]`` (variant B only; zeros when omitted) weight
    the per-level messages. With ``return_levels`` the per-level messages, upsampled to
    the finest queries (finest first), come back too (variant B only).
    Returns ``[B, H, Sq*h*w, D]``.
    """
    check_quadtree(grid, levels, topk)
    if levels == 1:
        out = full_attention(q, k, v)
        return (out, [out]) if return_levels else out
    scale = q.shape[-1] ** -0.5
    sizes = [(grid[0] >> lvl, grid[1] >> lvl) for lvl in range(levels)]
    qs, ks, vs = [q], [k], [v]
    for lvl in range(levels - 1):
        h, w = sizes[lvl]
        qs.append(_pool(qs[-1], h, w))
        ks.append(_pool(ks[-1], h, w))
        vs.append(_pool(vs[-1], h, w))
    # ancestor of every finest query at each level
    ancestors = [torch.arange(q.shape[2], device=q.device)]
    for lvl in range(levels - 1):
        h, w = sizes[lvl]
        ancestors.append(_parents(qs[lvl].shape[2], h, w, q.device)[ancestors[-1]])

    selected: torch.Tensor | None = None  # [B, H, Nq_l+1, K] key indices chosen one level up
    messages: list[torch.Tensor] = []  # variant B, coarsest first
    stats: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # variant A, (max, sum, out)
    for lvl in range(levels - 1, -1, -1):
        ql, kl, vl = qs[lvl], ks[lvl], vs[lvl]
        if selected is None:  # coarsest level: every key
            scores = ql @ kl.transpose(-1, -2) * scale  # [B, H, Nq, Nk]
            cand, vals = None, vl
        else:
            ph, pw = sizes[lvl + 1]
            parent_sel = selected[:, :, _parents(ql.shape[2], *sizes[lvl], q.device)]
            cand = _children(parent_sel, ph, pw)  # [B, H, Nq, 4K]
            scores = (ql[..., None, :] @ _gather(kl, cand).transpose(-1, -2))[..., 0, :] * scale
            vals = _gather(vl, cand)  # [B, H, Nq, 4K, D]
        keep = None
        if lvl > 0:
            top = scores.topk(min(int(topk[levels - 1 - lvl]), scores.shape[-1]), dim=-1).indices
            selected = top if cand is None else cand.gather(-1, top)
            keep = torch.ones_like(scores, dtype=torch.bool).scatter(-1, top, False)
        if variant == "b":
            attn = scores.softmax(-1)
            msg = (attn[..., None, :] @ vals)[..., 0, :] if cand is not None else attn @ vl
            messages.append(msg[:, :, ancestors[lvl]])
        else:
            logits = scores + math.log(4.0**lvl)
            if keep is not None:
                logits = logits.masked_fill(~keep, float("-inf"))
            m = logits.amax(-1, keepdim=True).detach().clamp(min=-1e30)
            p = torch.exp(logits - m)
            o = (p[..., None, :] @ vals)[..., 0, :] if cand is not None else p @ vl
            anc = ancestors[lvl]
            stats.append((m[:, :, anc], p.sum(-1, keepdim=True)[:, :, anc], o[:, :, anc]))

    if variant == "b":
        messages = messages[::-1]  # finest first
        if level_logits is None:
            level_logits = torch.zeros(q.shape[1], levels, device=q.device, dtype=q.dtype)
        wts = level_logits.softmax(-1)  # [H, levels]
        out = sum(wts[None, :, lvl, None, None] * messages[lvl] for lvl in range(levels))
        return (out, messages) if return_levels else out
    if return_levels:
        raise CoordfitError("return_levels is only defined for QuadTree variant B")
    m_all = torch.stack([s[0] for s in stats]).amax(0)
    num = sum(torch.exp(mx - m_all) * o for mx, _, o in stats)
    den = sum(torch.exp(mx - m_all) * sm for mx, sm, _ in stats)
    return num / den
