"""Sampling: O(batch) draws on the signal's device with the generator passed in (no work
of the grid's size, no host sync), uniform over every branch, the whole grid in order
when it fits, exact targets, and the shape sampler's surface-biased mixture."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import chi2
from torch.overrides import TorchFunctionMode

from coordfit.geometry import grid
from coordfit.core.errors import CoordfitError
from coordfit.geometry.grid import axis_coords, branch_points, check_generator, gather, parse_split, sample_branches
from coordfit.signals import ShapeSignal, VideoSignal
from coordfit.signals import shape as shape_mod

# calls that read a tensor on the host or build one there
HOST_CALLS = {"__bool__", "__float__", "__int__", "__index__", "item", "tolist", "numpy", "cpu", "to", "tensor",
              "as_tensor", "from_numpy"}


def _tensors(x) -> list[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, (tuple, list)):
        return [t for item in x for t in _tensors(item)]
    return []


class _Calls(TorchFunctionMode):
    """Records every torch call made inside the block: its name and the most elements it
    allocated (a view of an input, such as a reshape of the whole grid, allocates none)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, int]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in _tensors([args, list((kwargs or {}).values())])}
        n = max((o.numel() for o in _tensors(out) if o.untyped_storage().data_ptr() not in inputs), default=0)
        self.calls.append((getattr(func, "__name__", str(func)), n))
        return out

    @property
    def largest(self) -> int:
        return max(n for _, n in self.calls)

    @property
    def host(self) -> list[str]:
        return sorted({name for name, _ in self.calls if name in HOST_CALLS})


def _chi2_p(counts: torch.Tensor) -> float:
    """p-value of ``counts`` under a uniform distribution over its cells."""
    expected = counts.sum() / counts.numel()
    stat = float(((counts - expected) ** 2 / expected).sum())
    return float(chi2.sf(stat, counts.numel() - 1))


@pytest.fixture(scope="module")
def sphere64() -> ShapeSignal:
    return ShapeSignal.load("primitive:sphere", label_resolution=64, resolution=16, eval_points=500)


# -- O(batch): no work of the grid's size, nothing on the host ------------------------------------
@pytest.mark.parametrize("spec", ["xy+t", "x+y+t", "t+yx", "tyx"])
def test_a_video_draw_does_no_work_of_the_grids_size(one_thread, spec: str) -> None:
    s = VideoSignal(torch.rand(16, 128, 128, 3))  # 262,144 points, 1024x the budget
    branches = parse_split(spec, s.axes)
    g = torch.Generator().manual_seed(0)
    with _Calls() as rec:
        parts, target = s.sample(branches, 256, g)
    assert 128 <= target.numel() // 3 <= 512
    assert rec.largest <= 4 * 256 * 3, sorted(rec.calls, key=lambda c: -c[1])[:3]
    assert rec.host == []


@pytest.mark.parametrize("spec", ["x+y+z", "xy+z", "xyz"])
def test_a_shape_draw_does_no_work_of_the_lattices_size(one_thread, sphere64: ShapeSignal, spec: str) -> None:
    g = torch.Generator().manual_seed(0)
    with _Calls() as rec:
        sphere64.sample(parse_split(spec, sphere64.axes), 256, g)
    assert rec.largest <= 4 * 256 * 3, sorted(rec.calls, key=lambda c: -c[1])[:3]  # the lattice holds 262,144
    assert rec.host == []


def test_unsplit_draw_is_the_same_work_on_a_grid_64x_larger(one_thread) -> None:
    calls = []
    for shape in [(8, 32, 32), (8, 256, 256)]:
        with _Calls() as rec:
            sample_branches(parse_split("tyx", "tyx"), shape, 500, torch.Generator().manual_seed(0))
        calls.append(rec.calls)
    assert calls[0] == calls[1] and max(n for _, n in calls[0]) == 3 * 500


# -- uniform draws -----------------------------------------------------------------------------
def test_unsplit_draws_are_uniform_with_replacement() -> None:
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(5, 7)
    repeats = 0
    for _ in range(500):
        (c,), (idx,) = sample_branches([(0, 1)], (5, 7), 20, g)
        assert c.shape == idx.shape == (20, 2)
        counts.index_put_((idx[:, 0], idx[:, 1]), torch.ones(20), accumulate=True)
        repeats += len(idx) - len(idx.unique(dim=0))
    assert _chi2_p(counts.reshape(-1)) > 1e-3 and counts.min() > 0
    assert repeats > 0  # with replacement, as documented


@pytest.mark.parametrize(("shape", "axes", "spec", "budget"), [
    ((24, 30), "yx", "x+y", 100),  # 11 of 30 x, 9 of 24 y: both permuted on the device (distinct)
    ((4, 30, 40), "tyx", "xy+t", 60),  # 60 of 1200 xy: with replacement; 1 of 4 t: permuted
    ((50, 3, 4), "tyx", "t+yx", 90),  # 30 of 50 t, 3 of 12 yx: permuted, the branches out of axis order
])
def test_split_draws_are_uniform_per_branch_and_cover_it(shape, axes: str, spec: str, budget: int) -> None:
    branches = parse_split(spec, axes)
    sizes = [math.prod(shape[d] for d in b) for b in branches]
    g = torch.Generator().manual_seed(0)
    counts = [torch.zeros(n) for n in sizes]
    for _ in range(400):
        coords, index = sample_branches(branches, shape, budget, g)
        for j, (b, n, idx, c) in enumerate(zip(branches, sizes, index, coords)):
            flat = sum(idx[:, col] * math.prod(shape[d] for d in b[col + 1 :]) for col in range(len(b)))
            assert torch.equal(flat, flat.sort().values)  # sorted: near-sequential gathers
            if n <= grid.PERMUTE_RATIO * len(flat):
                assert len(flat.unique()) == len(flat)  # a permuted branch: distinct points
            counts[j] += torch.bincount(flat, minlength=n).float()
            for col, d in enumerate(b):  # coordinates: the indices on [-1, 1], endpoints exact
                torch.testing.assert_close(c[:, col], axis_coords(shape[d])[idx[:, col]], rtol=0, atol=1e-6)
                assert (c[idx[:, col] == 0, col] == -1.0).all() and (c[idx[:, col] == shape[d] - 1, col] == 1.0).all()
    for j, cnt in enumerate(counts):
        assert cnt.min() > 0, f"branch {j} never drew some of its points"
        assert _chi2_p(cnt) > 1e-3, f"branch {j} is not uniform"


# -- the whole grid, coordinates, targets ------------------------------------------------------------
@pytest.mark.parametrize("spec", ["t+y+x", "tyx", "yx+t"])
def test_the_whole_grid_in_order_when_it_fits(spec: str) -> None:
    shape = (3, 1, 5)  # a singleton y axis sits at 0
    branches = parse_split(spec, "tyx")
    coords, index = sample_branches(branches, shape, 15, torch.Generator().manual_seed(0))
    for b, c in zip(branches, coords):
        ref = branch_points([axis_coords(shape[d]) for d in b])
        assert torch.equal(c, ref), (b, c, ref)
    values = torch.rand(*shape, 2)
    out = gather(values, branches, index)
    torch.testing.assert_close(grid.to_axis_order(out, branches, shape), values, rtol=0, atol=0)


@pytest.mark.parametrize("spec", ["xy+t", "t+yx", "x+t+y", "tyx"])
def test_gather_equals_per_axis_indexing(spec: str) -> None:
    shape = (6, 7, 9)
    branches = parse_split(spec, "tyx")
    values = torch.rand(*shape, 3)
    _, index = sample_branches(branches, shape, 60, torch.Generator().manual_seed(3))
    per_axis = [None] * 3
    for j, (b, idx) in enumerate(zip(branches, index)):
        view = [1] * len(branches)
        view[j] = -1
        for col, d in enumerate(b):
            per_axis[d] = idx[:, col].reshape(view)
    torch.testing.assert_close(gather(values, branches, index), values[tuple(per_axis)], rtol=0, atol=0)


# -- the generator: the one passed in, on the signal's device ----------------------------------------
def _draws(signal, spec: str, seed: int) -> list[torch.Tensor]:
    parts, target = signal.sample(parse_split(spec, signal.axes), 300, torch.Generator().manual_seed(seed))
    return [*parts, target]


@pytest.mark.parametrize("spec", ["xy+t", "tyx", "x+y+z", "xyz"])
def test_draws_use_only_the_generator_passed_in(sphere64: ShapeSignal, spec: str) -> None:
    s = sphere64 if "z" in spec else VideoSignal(torch.rand(6, 20, 30, 3))
    torch.manual_seed(1)
    before = torch.get_rng_state()
    a = _draws(s, spec, seed=5)
    assert torch.equal(torch.get_rng_state(), before)  # the global RNG is left alone
    torch.manual_seed(2)
    b = _draws(s, spec, seed=5)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, _draws(s, spec, seed=6)))
    # a saved generator state replays the next draw exactly (what a resumed run relies on)
    g = torch.Generator().manual_seed(7)
    s.sample(parse_split(spec, s.axes), 300, g)
    state = g.get_state()
    nxt = s.sample(parse_split(spec, s.axes), 300, g)
    again = s.sample(parse_split(spec, s.axes), 300, torch.Generator().set_state(state))
    assert all(torch.equal(x, y) for x, y in zip([*nxt[0], nxt[1]], [*again[0], again[1]]))


def test_a_generator_on_another_device_is_one_clear_error() -> None:
    with pytest.raises(CoordfitError, match="generator is on cpu but the signal is on cuda"):
        check_generator(torch.Generator(), "cuda")
    with pytest.raises(CoordfitError, match="needs a torch.Generator"):
        check_generator(None, "cpu")  # type: ignore[arg-type]
    assert check_generator(torch.Generator(), None) == torch.device("cpu")
    video = VideoSignal(torch.rand(2, 4, 4, 3)).to("meta")
    with pytest.raises(CoordfitError, match="signal is on meta"):
        video.sample(parse_split("xy+t", video.axes), 8, torch.Generator())


def test_shape_to_moves_labels_and_anchors() -> None:
    s = ShapeSignal.load("primitive:sphere", label_resolution=12, resolution=12, eval_points=200).to("meta")
    assert s.labels.device.type == s.anchors.device.type == "meta" and s.device.type == "meta"
    with pytest.raises(CoordfitError, match="signal is on meta"):
        s.sample(parse_split("x+y+z", s.axes), 100, torch.Generator())


# -- quality: a 0-dim tensor, no host sync ---------------------------------------------------------------
def test_quality_is_a_tensor_read_without_a_host_sync(sphere64: ShapeSignal) -> None:
    video = VideoSignal(torch.rand(2, 4, 4, 3))
    pred, target = torch.full((5, 3), 0.5), torch.full((5, 3), 0.7)
    logits, labels = torch.tensor([[1.0], [2.0], [-1.0], [-3.0]]), torch.tensor([[1.0], [0.0], [1.0], [0.0]])
    outside, empty = torch.full((3, 1), -1.0), torch.zeros(3, 1)
    with _Calls() as rec:
        psnr = video.quality(pred, target)
        iou = sphere64.quality(logits, labels)
        none = sphere64.quality(outside, empty)
    assert rec.host == []
    assert psnr.dim() == iou.dim() == 0
    assert float(psnr) == pytest.approx(10 * torch.log10(torch.tensor(4.0 / 0.04)).item(), rel=1e-5)
    assert float(iou) == pytest.approx(1 / 3) and float(none) == 1.0  # both masks empty: a perfect 1


# -- the shape sampler's two ways of drawing the block ----------------------------------------------------
def test_block_draw_with_replacement_follows_the_mixture(monkeypatch) -> None:
    s = ShapeSignal.load("primitive:sphere", label_resolution=48, resolution=16, eval_points=500, block_fraction=0.6)
    monkeypatch.setattr(shape_mod, "PERMUTE_RATIO", 0)  # every branch draws with replacement
    anchor = torch.tensor([0.9, -0.3, 0.0])  # near the lattice's end: the Gaussian is truncated there
    idx = s._block_draw((0,), 40_000, anchor, torch.Generator().manual_seed(0))[:, 0]
    freq = torch.bincount(idx, minlength=48).float() / len(idx)
    w = torch.exp(-0.5 * ((axis_coords(48) - 0.9) / s.options.block_sigma) ** 2)
    expected = 0.4 / 48 + 0.6 * w / w.sum()
    assert 0.5 * float((freq - expected).abs().sum()) < 0.03  # total variation


@pytest.mark.parametrize("spec", ["x+y+z", "xy+z"])
def test_surface_bias_holds_whether_branches_permute_or_not(monkeypatch, spec: str) -> None:
    def near_share(block_fraction: float) -> float:
        s = ShapeSignal.load("primitive:sphere", label_resolution=48, resolution=16, eval_points=500,
                             block_fraction=block_fraction)
        branches, g, near = parse_split(spec, s.axes), torch.Generator().manual_seed(0), []
        for _ in range(30):
            parts, target = s.sample(branches, 3000, g)
            pts = torch.zeros(target.numel(), 3)
            mesh = torch.meshgrid(*[torch.arange(p.shape[0]) for p in parts], indexing="ij")
            for b, p, m in zip(branches, parts, mesh):
                pts[:, list(b)] = p[m.reshape(-1)]
            near.append(float(((pts.norm(dim=1) - 0.95).abs() < 0.1).float().mean()))
        return sum(near) / len(near)

    uniform, permuted = near_share(0.0), near_share(1.0)  # at R=48 every branch here is permuted
    monkeypatch.setattr(shape_mod, "PERMUTE_RATIO", 0)  # now every branch draws with replacement
    replaced = near_share(1.0)
    assert permuted > uniform + 0.04 and replaced > uniform + 0.04, (uniform, permuted, replaced)
