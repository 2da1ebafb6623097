"""QuadTree attention against its reference, full softmax attention (values and gradients)."""

import pytest
import torch

from coordfit.core.errors import CoordfitError
from coordfit.nvs import NVSConfig, create_model
from coordfit.nvs.attention import full_attention, quadtree_attention


pytestmark = pytest.mark.usefixtures("one_thread")

ALL = 10**6  # a top-K that covers every key


def _qkv(sq=2, sk=3, grid=(8, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    n = grid[0] * grid[1]
    shape = lambda s: (2, 2, s * n, 16)  # noqa: E731
    q = torch.randn(*shape(sq), generator=g, dtype=torch.float64).requires_grad_()
    k = torch.randn(*shape(sk), generator=g, dtype=torch.float64).requires_grad_()
    v = torch.randn(*shape(sk), generator=g, dtype=torch.float64).requires_grad_()
    return q, k, v


def _grads(out, *xs):
    w = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    return torch.autograd.grad((out * w).sum(), xs)


@pytest.mark.parametrize("levels", [2, 3, 4])
def test_quadtree_a_full_topk_equals_full_attention(levels):
    q, k, v = _qkv()
    ref = full_attention(q, k, v)
    out = quadtree_attention(q, k, v, (8, 8), levels, [ALL] * (levels - 1), variant="a")
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=0)
    for g_out, g_ref in zip(_grads(out, q, k, v), _grads(ref, q, k, v)):
        torch.testing.assert_close(g_out, g_ref, atol=1e-10, rtol=0)


@pytest.mark.parametrize("levels", [2, 3])
def test_quadtree_b_full_topk_finest_message_equals_full_attention(levels):
    q, k, v = _qkv(sq=1, sk=2)
    ref = full_attention(q, k, v)
    logits = torch.randn(2, levels, dtype=torch.float64)
    out, msgs = quadtree_attention(
        q, k, v, (8, 8), levels, [ALL] * (levels - 1), variant="b", level_logits=logits, return_levels=True
    )
    torch.testing.assert_close(msgs[0], ref, atol=1e-10, rtol=0)
    for g_out, g_ref in zip(_grads(msgs[0], q, k, v), _grads(ref, q, k, v)):
        torch.testing.assert_close(g_out, g_ref, atol=1e-10, rtol=0)
    # the output mixes the level messages with softmax(level_logits) per head
    w = logits.softmax(-1)
    mix = sum(w[None, :, i, None, None] * msgs[i] for i in range(levels))
    torch.testing.assert_close(out, mix)
    # all weight on the finest level gives full attention exactly
    one_hot = torch.full((2, levels), -1e9, dtype=torch.float64)
    one_hot[:, 0] = 0
    exact = quadtree_attention(q, k, v, (8, 8), levels, [ALL] * (levels - 1), variant="b", level_logits=one_hot)
    torch.testing.assert_close(exact, ref, atol=1e-10, rtol=0)


@pytest.mark.parametrize("variant", ["a", "b"])
def test_quadtree_small_topk_is_sparse_not_full(variant):
    # the equality above is not vacuous: with few keys the result differs from full attention
    q, k, v = _qkv()
    ref = full_attention(q, k, v)
    out = quadtree_attention(q, k, v, (8, 8), 3, [2, 2], variant=variant)
    assert (out - ref).abs().max() > 1e-2
    # and gradients reach q, k and v through the gather
    assert all(g.abs().sum() > 0 for g in _grads(out, q, k, v))


def test_quadtree_topk_selects_the_strongest_region():
    # one key region matches the query far better than all others: A with K=1 must find it
    q = torch.zeros(1, 1, 16, 4, dtype=torch.float64)
    q[..., 0] = 1.0
    k = torch.zeros(1, 1, 16, 4, dtype=torch.float64)
    hot = [10, 11, 14, 15]  # the bottom-right 2x2 region of a 4x4 grid
    k[0, 0, hot, 0] = 30.0
    v = torch.arange(16, dtype=torch.float64).view(1, 1, 16, 1).expand(1, 1, 16, 4).contiguous()
    out = quadtree_attention(q, k, v, (4, 4), 2, [1], variant="a")
    torch.testing.assert_close(out, full_attention(q, k, v), atol=1e-6, rtol=0)
    torch.testing.assert_close(out[0, 0, :, 0], torch.full((16,), 12.5, dtype=torch.float64), atol=1e-4, rtol=0)


def test_quadtree_model_with_full_topk_equals_full_model():
    base = dict(width=32, head_dim=16, depth=2, patch=4, quadtree_levels=2, quadtree_topk=[ALL])
    torch.manual_seed(0)
    full = create_model("lvsm", NVSConfig(**base)).double()
    quad = create_model("lvsm", NVSConfig(**base, attention="quadtree-a")).double()
    quad.load_state_dict(full.state_dict())
    g = torch.Generator().manual_seed(1)
    imgs = torch.rand(1, 2, 3, 16, 16, generator=g, dtype=torch.float64)
    from coordfit.geometry.cameras import look_at

    c2w = look_at(torch.tensor([[3.0, 0, 1], [0, 3.0, 1], [2.0, 2.0, 1]], dtype=torch.float64),
                  torch.zeros(3, 3, dtype=torch.float64))[None]
    k = torch.tensor([16.0, 16, 8, 8], dtype=torch.float64).expand(1, 3, 4)
    a = full(imgs, c2w[:, :2], k[:, :2], c2w[:, 2:], k[:, 2:])
    b = quad(imgs, c2w[:, :2], k[:, :2], c2w[:, 2:], k[:, 2:])
    torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def test_quadtree_rejects_grids_that_cannot_be_pooled():
    q, k, v = _qkv(grid=(6, 6))
    with pytest.raises(CoordfitError, match="cannot be pooled"):
        quadtree_attention(q, k, v, (6, 6), 3, [4, 4])
    with pytest.raises(CoordfitError, match="one positive K per level"):
        quadtree_attention(q, k, v, (6, 6), 2, [4, 4])
