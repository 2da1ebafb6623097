"""Multiresolution grid encodings, hashgrid, splitgrid and the tcnn backend."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest
import torch

from coordfit.core.errors import CoordfitError
from coordfit.geometry.grid import GridInfo, axis_coords, branch_points, evaluate_grid
from coordfit.models import create_model
from coordfit.models.grid_encoding import PRIMES, GridSpec, MultiresGrid, growth_factor
from coordfit.models.tcnn import TcnnLayout, tcnn_available, tcnn_encoding_config
from coordfit.signals.image import ImageSignal
from coordfit.engine.train import TrainConfig, Trainer

from conftest import smooth_image

IMAGE = GridInfo(("y", "x"), (24, 32), 3, "x+y")
VIDEO = GridInfo(("t", "y", "x"), (5, 12, 10), 3, "xy+t")
SHAPE = GridInfo(("x", "y", "z"), (9, 8, 7), 1, "x+y+z")


def encoding(dims: int, log2_t: int, n_max: float, levels: int = 6, f: int = 2, **kw) -> MultiresGrid:
    torch.manual_seed(0)
    enc = MultiresGrid(dims, GridSpec(levels, f, log2_t, 4, growth_factor(4, n_max, levels)), **kw)
    enc.table.data.normal_()  # features of order 1, so that differences show
    return enc


def points(n: int, dims: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, dims, generator=g) * 2 - 1
    x[:4] = torch.tensor([-1.0, 1.0, 0.0, 1.0]).repeat(dims, 1).T  # edges and centre
    return x


@pytest.mark.parametrize("dims", [1, 2, 3, 4])
def test_encoding_shape_and_range(dims: int) -> None:
    enc = MultiresGrid(dims, GridSpec(levels=5, features_per_level=4, log2_table_size=10, base_resolution=4,
                                                per_level_scale=1.5))
    y = enc(points(200, dims))
    assert y.shape == (200, 20) and enc.out_features == 20
    # a convex combination of entries initialised on U(-1e-4, 1e-4)
    assert 0 < y.abs().max() <= 1e-4
    assert enc.table.abs().max() <= 1e-4


@pytest.mark.parametrize("dims", [1, 2, 3, 4])
def test_rows_within_each_level_and_weights_a_partition_of_unity(dims: int) -> None:
    enc = encoding(dims, log2_t=8, n_max=400 if dims == 1 else 40)
    assert any(enc.hashed) and not all(enc.hashed)  # both kinds of level present
    x = torch.cat([points(300, dims), torch.rand(20, dims) * 4 - 2])  # also points outside [-1, 1]
    rows, w = enc.rows_and_weights(x)
    assert rows.shape == w.shape == (320, enc.config.levels, 2**dims)
    lo = enc.offsets[None, :, None]
    hi = lo + enc.sizes[None, :, None]
    assert ((rows >= lo) & (rows < hi)).all()
    assert rows.max() < enc.table.shape[0]
    assert (w >= 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(320, enc.config.levels))
    for lvl, hashed in enumerate(enc.hashed):
        assert enc.level_sizes[lvl] == (256 if hashed else math.ceil(enc.resolutions[lvl] ** dims / 8) * 8)


@pytest.mark.parametrize("dims", [1, 2, 3, 4])
def test_fast_path_equals_reference_values_and_gradients(dims: int) -> None:
    enc = encoding(dims, log2_t=9, n_max=30)
    x = points(400, dims).requires_grad_(True)
    fast, ref = enc(x), enc.reference(x)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)
    probe = torch.randn_like(fast)
    g_fast = torch.autograd.grad((fast * probe).sum(), [enc.table, x])
    g_ref = torch.autograd.grad((ref * probe).sum(), [enc.table, x])
    torch.testing.assert_close(g_fast[0], g_ref[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(g_fast[1], g_ref[1], rtol=1e-3, atol=1e-3)


def test_gradients_reach_exactly_the_table_rows_used() -> None:
    enc = encoding(2, log2_t=8, n_max=30)
    x = points(50, 2)
    enc(x).square().sum().backward()
    rows, w = enc.rows_and_weights(x)
    used = torch.zeros(enc.table.shape[0], dtype=torch.bool)
    used[rows[w > 0]] = True
    touched = enc.table.grad.abs().sum(-1) > 0
    assert touched.any()
    assert (touched <= used).all() and touched.sum() >= 0.9 * used.sum()


def test_hash_matches_tiny_cuda_nn_formula() -> None:
    enc = encoding(3, log2_t=6, n_max=30, levels=3)
    lvl = enc.config.levels - 1
    assert enc.hashed[lvl]
    v = torch.tensor([[7, 3, 11], [0, 0, 0], [29, 1, 5]])
    want = [((a * PRIMES[0]) ^ (b * PRIMES[1]) ^ (c * PRIMES[2])) % 2**32 % 64 for a, b, c in v.tolist()]
    vert = torch.zeros(3, enc.config.levels, 8, 3, dtype=torch.long)
    vert[:, lvl, 0] = v
    rows = enc.index(vert)[:, lvl, 0] - enc.offsets[lvl]
    assert rows.tolist() == want


@pytest.mark.parametrize("dims,n_max,log2_t", [(2, 12, 14), (3, 8, 18)])
def test_dense_and_hashed_levels_agree(dims: int, n_max: int, log2_t: int) -> None:
    """A level small enough to be dense, forced through the hash into a big table, gives the same values."""
    dense = encoding(dims, log2_t=log2_t, n_max=n_max, levels=3)
    hashed = MultiresGrid(dims, dense.config, hash_all=True)
    assert not any(dense.hashed) and all(hashed.hashed)
    r = max(dense.resolutions)
    # every vertex a point can touch (0..res, the +1 corner included), written to where the hash puts it
    vert = torch.stack(torch.meshgrid(*[torch.arange(r + 1)] * dims, indexing="ij"), -1).reshape(-1, 1, 1, dims)
    vert = vert.expand(-1, dense.config.levels, 1, dims)
    src, dst = dense.index(vert), hashed.index(vert)
    for lvl, res in enumerate(dense.resolutions):
        inside = (vert[:, lvl, 0] <= res).all(-1)
        assert dst[inside, lvl, 0].unique().numel() == int(inside.sum())  # no collisions: a fair comparison
    with torch.no_grad():
        hashed.table.zero_()
        hashed.table[dst.reshape(-1)] = dense.table[src.reshape(-1)]
    x = points(500, dims)
    torch.testing.assert_close(hashed(x), dense(x))


def test_interpolation_exact_at_vertices_and_bilinear_between() -> None:
    enc = encoding(2, log2_t=12, n_max=9, levels=2, f=1)  # level 0: resolution 4
    scale = float(enc.scales[0, 0])
    r = enc.resolutions[0]
    table = enc.table.detach()[:, 0]

    def vertex(i: int, j: int) -> float:  # dim 0 has stride 1, dim 1 stride r (tiny-cuda-nn's layout)
        return float(table[i + j * r])

    def to_x(pos: float) -> float:  # grid position -> coordinate on [-1, 1]
        return (pos - 0.5) / scale * 2 - 1

    verts = [(1, 1), (1, 2), (2, 1), (r - 2, r - 1), (r - 1, r - 1)]  # vertex 0 sits at u < 0
    x = torch.tensor([[to_x(i), to_x(j)] for i, j in verts])
    got = enc(x)[:, 0]
    assert got.tolist() == pytest.approx([vertex(i, j) for i, j in verts], abs=1e-5)
    g = torch.Generator().manual_seed(1)
    pos = torch.rand(40, 2, generator=g) * (r - 1.51) + 0.5  # keep the +1 corner inside the grid
    x = torch.tensor([[to_x(float(p)), to_x(float(q))] for p, q in pos])
    want = []
    for p, q in pos.tolist():
        i, j = math.floor(p), math.floor(q)
        a, b = p - i, q - j
        want.append((1 - a) * (1 - b) * vertex(i, j) + a * (1 - b) * vertex(i + 1, j)
                    + (1 - a) * b * vertex(i, j + 1) + a * b * vertex(i + 1, j + 1))
    assert enc(x)[:, 0].tolist() == pytest.approx(want, abs=1e-5)


def test_defaults_follow_instant_ngp() -> None:
    img = create_model("hashgrid", GridInfo(("y", "x"), (500, 400), 3))
    e = img.encoding.config
    assert (e.levels, e.features_per_level, e.log2_table_size, e.base_resolution) == (16, 2, 24, 16)
    assert e.per_level_scale == pytest.approx((250 / 16) ** (1 / 15))
    assert img.encoding.resolutions[-1] in (250, 251) and not any(img.encoding.hashed)
    assert img.num_params() == img.encoding.table.numel() + (32 * 64 + 64) + (64 * 64 + 64) + (64 * 3 + 3)
    # FLOPs: MLP multiply-adds + 16 levels x 4 corners x (1 weight product + 2 features)
    assert img.flops_per_sample() == 2 * ((32 * 64 + 64 * 64 + 64 * 3) + 16 * 4 * 3)
    vid = create_model("hashgrid", GridInfo(("t", "y", "x"), (250, 272, 640), 3))
    assert vid.encoding.config.log2_table_size == 19 and any(vid.encoding.hashed)
    assert max(vid.encoding.level_sizes) == 2**19
    split = create_model("splitgrid", GridInfo(("t", "y", "x"), (250, 272, 640), 3, "xy+t"))
    assert [enc.in_features for enc in split.encoders] == [2, 1]
    assert split.flops_per_sample() < vid.flops_per_sample()


def test_bad_options_are_one_line_errors() -> None:
    with pytest.raises(CoordfitError, match="1 to 4"):
        create_model("hashgrid", GridInfo(tuple("abcde"), (4,) * 5, 1))
    with pytest.raises(CoordfitError, match="backend"):
        create_model("hashgrid", IMAGE, backend="cuda")
    with pytest.raises(CoordfitError, match="log2-table-size"):
        create_model("splitgrid", IMAGE, log2_table_size=40)
    with pytest.raises(CoordfitError, match="axis"):
        create_model("splitgrid", IMAGE, split="x+t")


SPLITS = [
    (IMAGE, {"split": "x+y"}),
    (IMAGE, {"split": "y+x", "rank": 1, "fuse_before_activation": False}),
    (VIDEO, {"split": "xy+t", "log2_table_size": 6}),
    (VIDEO, {"split": "x+y+t", "fusion": "sum", "rank": 2}),
    (SHAPE, {"split": "x+y+z", "shared_layers": 0}),
    (SHAPE, {"split": "xy+z", "rank": 3}),
]


@pytest.mark.parametrize("info,opts", SPLITS, ids=lambda v: v.get("split", "") if isinstance(v, dict) else "")
def test_splitgrid_grid_path_equals_pointwise(info: GridInfo, opts: dict) -> None:
    torch.manual_seed(0)
    model = create_model("splitgrid", info, width=16, levels=4, **opts)
    for enc in model.encoders:
        torch.nn.init.normal_(enc.table)
    coords = [axis_coords(n) for n in info.shape]
    parts = [branch_points([coords[d] for d in b]) for b in model.branches]
    grid = model.forward_grid(parts)
    mesh = torch.meshgrid(*coords, indexing="ij")
    x = torch.stack([m.reshape(-1) for m in mesh], -1)
    pointwise = model(x).reshape(*info.shape, -1)
    torch.testing.assert_close(evaluate_grid(model, coords, chunk=37), pointwise, rtol=1e-4, atol=1e-5)
    probe = torch.randn_like(pointwise)
    from coordfit.geometry.grid import to_axis_order

    g_grid = torch.autograd.grad((to_axis_order(grid, model.branches, info.shape) * probe).sum(), model.parameters())
    g_point = torch.autograd.grad((pointwise * probe).sum(), model.parameters())
    for a, b in zip(g_grid, g_point):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


def _fit_psnr(name: str, steps: int, **opts) -> float:
    torch.manual_seed(0)
    signal = ImageSignal(smooth_image(32, 40))
    model = create_model(name, signal.info, **opts)
    cfg = TrainConfig(steps=steps, batch_points=512, grid_batch=1 << 12, log_every=10**6, checkpoint_every=0,
                      device="cpu")
    Trainer(model, signal, cfg).run(progress=False)
    return signal.evaluate(model)["psnr"]


def test_hashgrid_fits_a_small_image() -> None:
    assert _fit_psnr("hashgrid", 150, levels=8, width=32) > 40.0  # ~50 dB measured


def test_splitgrid_fits_a_small_image() -> None:
    assert _fit_psnr("splitgrid", 150, levels=8, width=32) > 36.0  # ~42 dB measured


def test_backend_tcnn_without_tinycudann_warns_once_and_runs_its_network_in_torch() -> None:
    if tcnn_available() is None:
        pytest.skip("tinycudann and CUDA are present: the fallback is not reachable here")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")  # Python's own once-per-location filter, no coordfit state
        model = create_model("hashgrid", IMAGE, backend="tcnn", levels=4)
        create_model("hashgrid", IMAGE, backend="tcnn", levels=4)
    assert len([w for w in seen if "backend=tcnn unavailable" in str(w.message)]) == 1
    assert model.backend == "torch" and model.config.backend == "tcnn"
    assert all(lin.bias is None for lin in model.linears())  # tiny-cuda-nn's MLP: no biases
    assert set(model.state_dict()) == {"encoding.table", "mlp.0.weight", "mlp.2.weight", "mlp.4.weight"}
    y = model(points(64, 2))
    assert y.shape == (64, 3) and torch.isfinite(y).all()


def _tcnn_reference(params: torch.Tensor, enc: MultiresGrid, x: torch.Tensor, width: int, layers: int,
                    out: int) -> torch.Tensor:
    """tiny-cuda-nn's NetworkWithInputEncoding read straight from its flat vector: the MLP
    first (row-major [out, in] matrices, input and output widths padded to 16, no biases),
    then the hash table; padded encoding outputs are zeros, padded output rows dropped."""
    pad = lambda n: -(-n // 16) * 16  # noqa: E731
    dims = [pad(enc.out_features)] + [width] * (layers - 1) + [pad(out)]
    at, mats = 0, []
    for a, b in zip(dims[:-1], dims[1:]):
        mats.append(params[at:at + a * b].view(b, a))
        at += a * b
    table = params[at:].view(enc.table.shape)
    vert, w = enc.corners(x)
    feats = (table[enc.index(vert)] * w[..., None]).sum(2).reshape(x.shape[0], -1)
    h = torch.cat([feats, feats.new_zeros(x.shape[0], dims[0] - feats.shape[1])], 1)
    for i, m in enumerate(mats):
        h = h @ m.T
        if i < len(mats) - 1:
            h = h.relu()
    return h[:, :out]


@pytest.mark.parametrize("info,levels,width,layers", [(IMAGE, 5, 16, 3), (VIDEO, 3, 32, 2), (SHAPE, 8, 24, 4)])
def test_tcnn_parameter_vector_converts_both_ways(info: GridInfo, levels: int, width: int, layers: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fallback warning where tinycudann is absent
        model = create_model("hashgrid", info, backend="tcnn", levels=levels, width=width, layers=layers,
                             log2_table_size=7).double()
    layout = model.tcnn_layout
    assert layout.size == sum(p.numel() for p in model.parameters()) + sum(
        (a - b) * c for a, b, c in [(layout.padded[0], layout.dims[0], width), (layout.padded[-1], layout.dims[-1], width)])
    # a synthetic vector as tiny-cuda-nn would hold it (padding entries too): tcnn -> torch
    vec = torch.randn(layout.size, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    model.load_tcnn_params(vec)
    x = points(300, info.in_features).double()
    want = _tcnn_reference(vec, model.encoding, x, width, layers, info.out_features)
    torch.testing.assert_close(model(x), want, rtol=1e-10, atol=1e-10)
    # torch -> tcnn: the same vector back, padding zero, and the same function
    back = model.tcnn_params()
    torch.testing.assert_close(_tcnn_reference(back, model.encoding, x, width, layers, info.out_features), want)
    kept = back != 0
    assert torch.equal(back[kept], vec[kept]) and kept.sum() == sum(p.numel() for p in model.parameters())
    # and a second model loaded from that vector holds the same tensors
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other = create_model("hashgrid", info, backend="tcnn", levels=levels, width=width, layers=layers,
                             log2_table_size=7).double()
    other.load_tcnn_params(back)
    for (k, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(ValueError, match="flat vector"):
        layout.unpack(vec[:-1])
    with pytest.raises(CoordfitError, match="only backend=tcnn"):
        create_model("hashgrid", info, levels=2).tcnn_params()


def test_a_tcnn_run_loads_and_renders_without_tinycudann(tmp_path: Path) -> None:
    import coordfit

    torch.manual_seed(0)
    signal = ImageSignal(smooth_image(16, 20))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = coordfit.fit(signal, "hashgrid", train=TrainConfig(steps=5, device="cpu", log_every=5),
                           out=tmp_path / "run", progress=False, levels=4, backend="tcnn")
        run = coordfit.load(tmp_path / "run")
    assert run.model.config.backend == "tcnn"
    torch.testing.assert_close(run.model.tcnn_params(), fit.model.tcnn_params())
    assert run.render(size=(10, 8)).is_file()


def test_tcnn_encoding_agrees_with_torch() -> None:
    reason = tcnn_available()
    if reason is not None:
        pytest.skip(f"tiny-cuda-nn backend not available: {reason}")
    import tinycudann as tcnn

    for dims, log2_t in ((2, 12), (3, 14)):
        enc = encoding(dims, log2_t=log2_t, n_max=64, levels=8).cuda()
        ref = tcnn.Encoding(dims, tcnn_encoding_config(enc.config), dtype=torch.float32).cuda()
        assert ref.params.numel() == enc.table.numel()
        with torch.no_grad():
            ref.params.copy_(enc.table.reshape(-1))
        x = points(4096, dims).cuda()
        torch.testing.assert_close(ref(((x + 1) * 0.5).contiguous()).float(), enc(x), rtol=1e-3, atol=1e-3)


def test_cli_image_hashgrid(runner, image_png: Path, tmp_path: Path) -> None:
    from coordfit_cli.main import app

    out = tmp_path / "run"
    res = runner.invoke(app, ["image", str(image_png), "--model", "hashgrid", "--out", str(out), "--steps", "60",
                              "--batch-points", "512", "-o", "levels=8", "--device", "cpu", "--no-progress"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "hashgrid" and metrics["steps"] == 60
    assert metrics["psnr"] > 25.0
    res = runner.invoke(app, ["render", str(out), "--size", "20x16", "--device", "cpu"])  # reload, any size
    assert res.exit_code == 0, res.output
    import imageio.v3 as iio

    assert iio.imread(out / "render_20x16.png").shape == (16, 20, 3)
    res = runner.invoke(app, ["image", str(image_png), "--model", "hashgrid", "-o", "levels=0", "--out",
                              str(tmp_path / "bad"), "--steps", "1"])
    assert res.exit_code == 2 and "levels must be positive" in res.output


# -- explicit dense levels (plane and line models) -----------------------------------------

def test_dense_levels_are_read_from_text_lists_and_json() -> None:
    assert GridSpec(dense_levels="64,128").dense_levels == (64, 128)
    assert GridSpec(dense_levels="64x48, 128x48").dense_levels == ((64, 48), (128, 48))
    assert GridSpec.from_dict({"dense_levels": [[8, 4], 16]}).dense_levels == ((8, 4), 16)
    spec = GridSpec(features_per_level=8, dense_levels=(4, 6)).resolve(2, (10, 10))
    assert spec.levels == 2 and json.loads(json.dumps(spec.to_dict()))["dense_levels"] == [4, 6]
    for bad in ("64,1", "64,x", [], "8x4x"):
        with pytest.raises(CoordfitError, match="dense-levels must be"):
            GridSpec.from_dict({"dense_levels": bad})
    with pytest.raises(CoordfitError, match="has 2 axes; this grid has 3"):
        MultiresGrid(3, GridSpec(dense_levels=((4, 4),)))
    with pytest.raises(CoordfitError, match="backend=tcnn"):
        create_model("hashgrid", IMAGE, backend="tcnn", dense_levels="8,16")


def test_dense_levels_layout_and_aligned_corners() -> None:
    torch.manual_seed(0)
    enc = MultiresGrid(2, GridSpec(features_per_level=1, dense_levels=((5, 3), 4)))
    assert enc.level_sizes == [15, 16] and enc.table.shape == (31, 1) and not any(enc.hashed)
    enc.table.data.normal_()
    t = enc.table.detach()[:, 0]
    # vertex (i, j) of level 0 is row i + 5 j; -1 and 1 are the first and last vertices
    corners = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0], [0.0, 0.0], [-0.5, 1.0]])
    got = enc(corners)[:, 0]
    want = [t[0], t[4], t[10], t[14], t[2 + 5], t[1 + 10]]  # (-0.5, 1): u = 0.25 on 5 vertices is vertex 1
    torch.testing.assert_close(got, torch.stack(want))
    # level 1 (4 x 4, offset 15): linear between vertices along each axis
    x = torch.tensor([[-1.0 + 2 / 3 * 0.25, 1.0]])  # u = 1/12 -> pos 0.25 on axis 0, last vertex on axis 1
    torch.testing.assert_close(enc(x)[0, 1], 0.75 * t[15 + 12] + 0.25 * t[15 + 13])


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_dense_levels_fast_path_equals_reference(dims: int) -> None:
    torch.manual_seed(0)
    levels = [(3,) * dims, (5,) * dims, tuple(range(2, 2 + dims))]
    enc = MultiresGrid(dims, GridSpec(features_per_level=4, dense_levels=levels))
    enc.table.data.normal_()
    x = torch.cat([points(300, dims), torch.rand(20, dims) * 4 - 2]).requires_grad_(True)
    fast, ref = enc(x), enc.reference(x)
    torch.testing.assert_close(fast, ref)
    probe = torch.randn_like(fast)
    for a, b in zip(torch.autograd.grad((fast * probe).sum(), [enc.table, x]),
                    torch.autograd.grad((ref * probe).sum(), [enc.table, x])):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


# -- the optimiser -----------------------------------------------------------------------

def test_trainer_steps_fused_adam_and_loads_an_old_runs_optimizer_file(tmp_path: Path) -> None:
    from coordfit.engine.train import make_optimizer
    from coordfit.core.checkpoint import load_optimizer, save_optimizer

    signal = ImageSignal(smooth_image(16, 20))
    model = create_model("hashgrid", signal.info, levels=4, width=16)
    trainer = Trainer(model, signal, TrainConfig(steps=3, batch_points=64, device="cpu", checkpoint_every=0))
    assert type(trainer.optimizer) is torch.optim.Adam and trainer.optimizer.defaults["fused"] is True
    assert trainer.optimizer.defaults["betas"] == (0.9, 0.99) and trainer.optimizer.defaults["eps"] == 1e-15
    # an optimizer file as older coordfit wrote it (torch's default for-each Adam) loads and steps
    old = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.9, 0.99), eps=1e-15)
    model(torch.rand(32, 2) * 2 - 1).sum().backward()
    old.step()
    save_optimizer(tmp_path / "optimizer.safetensors", old)
    new = make_optimizer(model, 1e-2, {"betas": (0.9, 0.99), "eps": 1e-15})
    load_optimizer(tmp_path / "optimizer.safetensors", new)
    for p in model.parameters():
        torch.testing.assert_close(new.state[p]["exp_avg"], old.state[p]["exp_avg"], rtol=0, atol=0)
        assert float(new.state[p]["step"]) == 1
    new.step()
    assert all(float(new.state[p]["step"]) == 2 for p in model.parameters())


def test_grid_adam_steps_touched_rows_as_adam_and_leaves_the_others(tmp_path: Path) -> None:
    from coordfit.engine.train import make_optimizer
    from coordfit.models.grid_adam import GridAdam
    from coordfit.core.checkpoint import load_optimizer, save_optimizer

    torch.manual_seed(0)
    model = create_model("hashgrid", IMAGE, levels=4, width=16)
    twin = create_model("hashgrid", IMAGE, levels=4, width=16)
    twin.load_state_dict(model.state_dict())
    adam = {"betas": (0.9, 0.99), "eps": 1e-15}
    rows, dense = make_optimizer(model, 1e-2, adam, table_rows=True), make_optimizer(twin, 1e-2, adam)
    assert isinstance(rows, GridAdam) and not isinstance(dense, GridAdam)
    R = model.encoding.table.shape[0]
    first, second = torch.arange(R) % 3 != 0, torch.arange(R) % 2 == 0  # the rows each step reaches
    after_first = None
    for reached in (first, second):
        grads = [torch.randn_like(p) for p in model.parameters()]
        grads[0] *= reached[:, None]  # the table: zero gradient on rows no point reached
        for m, opt in ((model, rows), (twin, dense)):
            for p, g in zip(m.parameters(), grads):
                p.grad = g.clone()
            opt.step()
        after_first = model.encoding.table.detach().clone() if after_first is None else after_first
    for a, b in zip(list(model.parameters())[1:], list(twin.parameters())[1:]):  # the MLP: plain Adam
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    table, adam_table = model.encoding.table.detach(), twin.encoding.table.detach()
    both, only_first = first & second, first & ~second
    torch.testing.assert_close(table[both], adam_table[both], rtol=1e-5, atol=1e-6)  # Adam's update
    assert torch.equal(table[only_first], after_first[only_first])  # not reached: kept, no momentum step
    assert not torch.allclose(adam_table[only_first], after_first[only_first])  # (dense Adam moves them)
    save_optimizer(tmp_path / "o.safetensors", rows)  # Adam's state, key for key: it loads into plain Adam
    load_optimizer(tmp_path / "o.safetensors", make_optimizer(twin, 1e-2, adam))


def test_hashgrid_resume_is_bit_exact(tmp_path: Path, image_png: Path) -> None:
    import coordfit

    train = dict(batch_points=300, log_every=5, device="cpu")
    opts = dict(levels=6, width=16, progress=False)
    coordfit.fit(image_png, "hashgrid", train=TrainConfig(steps=12, **train), out=tmp_path / "a", **opts)
    resumed = coordfit.resume(tmp_path / "a", steps=25, progress=False)
    straight = coordfit.fit(image_png, "hashgrid", train=TrainConfig(steps=25, **train), out=tmp_path / "b", **opts)
    assert resumed.metrics["steps"] == 25
    for p, q in zip(resumed.model.parameters(), straight.model.parameters()):
        assert torch.equal(p, q)


def test_grid_adam_rows_by_the_kernel_equal_rows_by_torch_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    from coordfit.models import grid_kernel
    from coordfit.models.grid_adam import GridAdam

    torch.manual_seed(1)
    tables = [torch.nn.Parameter(torch.randn(200, 4)) for _ in range(2)]
    tables[1].data.copy_(tables[0].data)
    opts = [GridAdam([t], [t], lr=1e-2, betas=(0.9, 0.99), eps=1e-15) for t in tables]
    for step in range(3):
        g = torch.randn(200, 4) * (torch.rand(200, 1) < 0.5)
        for i, (t, opt) in enumerate(zip(tables, opts)):
            t.grad = g.clone()
            with monkeypatch.context() as m:
                if i == 1:  # the PyTorch ops, as on CUDA
                    m.setattr(grid_kernel, "cpu_library", lambda: "no compiler (a test)")
                opt.step()
    torch.testing.assert_close(tables[0], tables[1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(opts[0].state[tables[0]]["exp_avg_sq"], opts[1].state[tables[1]]["exp_avg_sq"])
