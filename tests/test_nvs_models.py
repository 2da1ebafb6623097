"""Models: registry smoke tests, KV cache == full recompute, views never mix in the input stream."""

import pytest
import torch

from coordfit.core.errors import CoordfitError
from coordfit.nvs import NVSConfig, create_model, list_models, load_model, save_model
from coordfit.nvs.attention import ATTENTION_KINDS
from coordfit.nvs.procedural import ProceduralConfig, make_scene


pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(width=32, head_dim=16, depth=2, patch=4, quadtree_levels=2, quadtree_topk=[4])


@pytest.fixture(scope="module")
def views():
    s = make_scene(5, ProceduralConfig(size=16, views=8))
    return s.images[None], s.c2w[None], s.fxfycxcy[None]  # [1, 8, ...]


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_every_model_and_backend_renders_and_trains(name, kind, views):
    torch.manual_seed(0)
    model = create_model(name, NVSConfig(**TINY, attention=kind, cross_attention=kind))
    imgs, c2w, k = views
    out = model(imgs[:, :3], c2w[:, :3], k[:, :3], c2w[:, 3:5], k[:, 3:5])
    assert out.shape == (1, 2, 3, 16, 16)
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    ((out - imgs[:, 3:5]) ** 2).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no gradient for {missing}"


def _double_model(**extra):
    torch.manual_seed(0)
    return create_model("efficient-lvsm", NVSConfig(**{**TINY, **extra})).double().eval()


@pytest.mark.parametrize("cross", ["full", "quadtree-b"])
def test_kv_cache_add_views_equals_full_recompute(cross, views):
    model = _double_model(cross_attention=cross)
    imgs, c2w, k = (t.double() for t in views)
    cache = None
    for lo, hi in [(0, 2), (2, 3), (3, 5)]:  # add views in uneven chunks
        cache = model.add_views(cache, imgs[:, lo:hi], c2w[:, lo:hi], k[:, lo:hi])
    assert cache.num_views == 5
    incremental = model.render(cache, c2w[:, 5:], k[:, 5:])
    full = model(imgs[:, :5], c2w[:, :5], k[:, :5], c2w[:, 5:], k[:, 5:])
    torch.testing.assert_close(incremental, full, atol=1e-12, rtol=0)
    # and the cache really depends on the added views: dropping one changes the render
    fewer = model(imgs[:, :4], c2w[:, :4], k[:, :4], c2w[:, 5:], k[:, 5:])
    assert (fewer - full).abs().max() > 1e-6


def test_kv_cache_fp32_within_tolerance_and_unseen_view_counts(views):
    torch.manual_seed(0)
    model = create_model("efficient-lvsm", NVSConfig(**TINY)).eval()
    imgs, c2w, k = views
    cache = model.add_views(None, imgs[:, :1], c2w[:, :1], k[:, :1])
    for i in range(1, 7):  # 7 input views, one at a time
        cache = model.add_views(cache, imgs[:, i : i + 1], c2w[:, i : i + 1], k[:, i : i + 1])
    with torch.no_grad():
        incremental = model.render(cache, c2w[:, 7:], k[:, 7:])
        full = model(imgs[:, :7], c2w[:, :7], k[:, :7], c2w[:, 7:], k[:, 7:])
    torch.testing.assert_close(incremental, full, atol=1e-5, rtol=0)


def test_kv_cache_refuses_views_of_another_size(views):
    model = _double_model()
    imgs, c2w, k = (t.double() for t in views)
    cache = model.add_views(None, imgs[:, :2], c2w[:, :2], k[:, :2])
    small = torch.nn.functional.interpolate(imgs[0, 2:3], size=(8, 8))[None]
    with pytest.raises(CoordfitError, match="cache holds"):
        model.add_views(cache, small, c2w[:, 2:3], k[:, 2:3])


def test_intra_view_attention_never_mixes_views(views):
    model = _double_model()
    imgs, c2w, k = (t.double() for t in views)
    imgs = imgs[:, :3]
    feats = model.input_features(imgs, c2w[:, :3], k[:, :3])
    poked = imgs.clone()
    poked[:, 1] = 1 - poked[:, 1]
    feats2 = model.input_features(poked, c2w[:, :3], k[:, :3])
    for a, b in zip(feats, feats2):  # every layer
        assert torch.equal(a[:, [0, 2]], b[:, [0, 2]])
        assert (a[:, 1] - b[:, 1]).abs().max() > 1e-3
    # the target stream does see every view
    out = model(imgs, c2w[:, :3], k[:, :3], c2w[:, 3:4], k[:, 3:4])
    out2 = model(poked, c2w[:, :3], k[:, :3], c2w[:, 3:4], k[:, 3:4])
    assert (out - out2).abs().max() > 1e-4


@pytest.mark.parametrize("kind", ["full", "quadtree-b"])
def test_target_views_never_mix(kind, views):
    # a target renders the same alone or beside others (targets share only the inputs)
    model = _double_model(attention=kind, cross_attention=kind)
    imgs, c2w, k = (t.double() for t in views)
    alone = model(imgs[:, :2], c2w[:, :2], k[:, :2], c2w[:, 2:3], k[:, 2:3])
    together = model(imgs[:, :2], c2w[:, :2], k[:, :2], c2w[:, 2:5], k[:, 2:5])
    torch.testing.assert_close(together[:, :1], alone, atol=1e-12, rtol=0)


def test_lvsm_input_tokens_do_mix_views(views):
    # the contrast that makes the test above meaningful: LVSM's full attention mixes views,
    # so one target's render changes with any input view
    torch.manual_seed(0)
    model = create_model("lvsm", NVSConfig(**TINY)).double()
    imgs, c2w, k = (t.double() for t in views)
    out = model(imgs[:, :2], c2w[:, :2], k[:, :2], c2w[:, 2:3], k[:, 2:3])
    poked = imgs[:, :2].clone()
    poked[:, 0] = 1 - poked[:, 0]
    assert (model(poked, c2w[:, :2], k[:, :2], c2w[:, 2:3], k[:, 2:3]) - out).abs().max() > 1e-4


def test_save_and_load_model_round_trip(tmp_path, views):
    model = create_model("efficient-lvsm", NVSConfig(**TINY, attention="quadtree-b"))
    path = save_model(tmp_path / "m.safetensors", model)
    back, info = load_model(path)
    assert info["model"] == "efficient-lvsm" and info["config"]["attention"] == "quadtree-b"
    imgs, c2w, k = views
    with torch.no_grad():
        a = model.eval()(imgs[:, :2], c2w[:, :2], k[:, :2], c2w[:, 2:3], k[:, 2:3])
        b = back(imgs[:, :2], c2w[:, :2], k[:, :2], c2w[:, 2:3], k[:, 2:3])
    assert torch.equal(a, b)
    with pytest.raises(CoordfitError, match="does not exist"):
        load_model(tmp_path / "none.safetensors")
    with pytest.raises(CoordfitError, match="unknown view-synthesis model"):
        create_model("nerf")
    with pytest.raises(CoordfitError, match="not divisible by patch"):
        model(imgs[:, :2, :, :15, :15], c2w[:, :2], k[:, :2], c2w[:, 2:3], k[:, 2:3])
