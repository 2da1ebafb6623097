"""Registry-wide smoke tests, parameter parity, CoordX split path == pointwise path."""

from __future__ import annotations

import math

import pytest
import torch

from coordfit.core.errors import CoordfitError
from coordfit.geometry.grid import GridInfo, axis_coords, branch_points, evaluate_grid, parse_split
from coordfit.models import create_model, list_models, make_config, model_entry
from coordfit.models.layers import SineLinear, siren_init_

IMAGE = GridInfo(("y", "x"), (12, 10), 3, "x+y")
VIDEO = GridInfo(("t", "y", "x"), (4, 6, 5), 3, "xy+t")


def small(name: str) -> dict:
    """Options that make any registered model small enough for a quick test."""
    fields = make_config(name).__dataclass_fields__
    return {k: v for k, v in {"width": 32, "features": 16}.items() if k in fields}


@pytest.mark.parametrize("info", [IMAGE, VIDEO], ids=["image", "video"])
@pytest.mark.parametrize("name", list_models())
def test_every_model_forward_shapes_and_gradients(name: str, info: GridInfo) -> None:
    torch.manual_seed(0)
    model = create_model(name, info, **small(name))
    x = torch.rand(50, info.in_features) * 2 - 1
    y = model(x)
    assert y.shape == (50, info.out_features)
    assert torch.isfinite(y).all()
    parts = [branch_points([axis_coords(info.shape[d]) for d in b]) for b in model.branches]
    grid = model.forward_grid(parts)
    assert grid.shape == (*[p.shape[0] for p in parts], info.out_features)
    (y.square().mean() + grid.square().mean()).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: no gradient reaches {pname}"
        assert torch.isfinite(p.grad).all()
        assert p.grad.abs().sum() > 0, f"{name}: zero gradient at {pname}"


def test_param_counts_match_reference() -> None:
    rgb = GridInfo(("y", "x"), (512, 512), 3, "x+y")
    assert create_model("siren", rgb).num_params() == 198_915
    assert create_model("coordx", rgb).num_params() == 199_171
    # the official code's counts (SplitFCBlock, 256 wide, 3 hidden layers, 2 before the fusion):
    # --fusion_size 2 --aug_reduce_param, --fusion_size 2, and the full split (last_layer_features 256)
    assert create_model("coordx", rgb, rank=2).num_params() == 264_963
    assert create_model("coordx", rgb, rank=2, widen="all").num_params() == 593_923
    assert create_model("coordx", rgb, full_split=True, rank=256).num_params() == 395_776


COORDX_VARIANTS = [
    {},
    {"rank": 2},
    {"full_split": True, "rank": 4},
    {"fusion": "sum"},
    {"fuse_before_activation": True, "rank": 3},
    {"shared_layers": 0},
    {"activation": "relu", "encoding": "nerf"},
    {"activation": "relu", "encoding": "fourier", "features": 8},
    {"rank": 2, "widen": "all"},
    {"shared_bias": "whole", "fusion": "sum"},
]


@pytest.mark.parametrize("info,split", [(IMAGE, "x+y"), (IMAGE, "yx"), (VIDEO, "xy+t"), (VIDEO, "x+y+t"), (VIDEO, "t+xy")])
@pytest.mark.parametrize("variant", COORDX_VARIANTS, ids=lambda v: ",".join(f"{k}={x}" for k, x in v.items()) or "default")
def test_coordx_split_path_equals_pointwise(info: GridInfo, split: str, variant: dict) -> None:
    torch.manual_seed(0)
    model = create_model("coordx", info, split=split, width=32, **variant).double()
    coords = [axis_coords(n).double() for n in info.shape]
    grid = evaluate_grid(model, coords)  # through forward_grid, in axis order
    pts = branch_points(coords)  # every point, axis order
    with torch.no_grad():
        ref = model(pts).reshape(*info.shape, info.out_features)
    torch.testing.assert_close(grid, ref, rtol=1e-9, atol=1e-9)

    # gradients agree too (same loss on the same points through both paths)
    parts = [branch_points([coords[d] for d in b]) for b in model.branches]
    out_grid = model.forward_grid(parts)
    g1 = torch.autograd.grad(out_grid.square().sum(), list(model.parameters()), allow_unused=True)
    flat = torch.stack(torch.meshgrid(*[torch.arange(p.shape[0]) for p in parts], indexing="ij"), -1).reshape(-1, len(parts))
    x = torch.zeros(flat.shape[0], info.in_features, dtype=torch.float64)
    for j, b in enumerate(model.branches):
        x[:, list(b)] = parts[j][flat[:, j]]
    g2 = torch.autograd.grad(model(x).square().sum(), list(model.parameters()), allow_unused=True)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def _official_coordx(model, x: torch.Tensor) -> torch.Tensor:
    """The official CoordX forward on points (SplitFCBlock without split_coord), written
    from its source and fed ``model``'s weights: each branch's own first layer and sine;
    the shared layers before the fusion add their bias divided by the number of branches
    (BatchLinear.num_input); the last one fuses after its activation, or before it with
    fuse_before_activation, or is the output layer (full split); the product (or sum)
    over branches, then the [F, R] features summed over R; then the remaining layers."""
    c = model.config
    k = len(model.branches)
    sine = lambda h: torch.sin(30.0 * h)  # noqa: E731
    lin = lambda h, m, div=1: h @ m.weight.T + m.bias / div  # noqa: E731
    first = [next(m for m in f.modules() if isinstance(m, torch.nn.Linear)) for f in model.first]
    shared = [m for m in model.shared.modules() if isinstance(m, torch.nn.Linear)]
    post = [m for m in model.post.modules() if isinstance(m, torch.nn.Linear)]
    hs = torch.stack([sine(lin(x[:, list(b)], f)) for b, f in zip(model.branches, first)], -2)  # [N, k, M*s]
    for m in shared[:-1]:
        hs = sine(lin(hs, m, k))
    hs = lin(hs, shared[-1], k)
    if not (c.fuse_before_activation or c.full_split):
        hs = sine(hs)
    h = hs.prod(-2) if c.fusion == "prod" else hs.sum(-2)
    if c.fuse_before_activation:
        h = sine(h)
    h = h.reshape(h.shape[0], model.info.out_features if c.full_split else c.width, -1).sum(-1)
    for i, m in enumerate(post):
        h = lin(h, m) if i == len(post) - 1 else sine(lin(h, m))
    return h


OFFICIAL_VARIANTS = [{}, {"rank": 2}, {"rank": 2, "widen": "all"}, {"fusion": "sum"},
                     {"fuse_before_activation": True, "rank": 3}, {"full_split": True, "rank": 4},
                     {"shared_layers": 1, "layers": 4}]


@pytest.mark.parametrize("info,split", [(IMAGE, "x+y"), (VIDEO, "xy+t"), (VIDEO, "x+y+t")])
@pytest.mark.parametrize("variant", OFFICIAL_VARIANTS, ids=lambda v: ",".join(f"{k}={x}" for k, x in v.items()) or "default")
def test_coordx_equals_the_official_forward(info: GridInfo, split: str, variant: dict) -> None:
    torch.manual_seed(0)
    model = create_model("coordx", info, split=split, width=16, **variant).double()
    for p in model.parameters():  # biases of order 1, so that dividing them or not shows
        torch.nn.init.uniform_(p, -1.0, 1.0) if p.dim() == 1 else None
    coords = [axis_coords(n).double() for n in info.shape]
    pts = branch_points(coords)
    with torch.no_grad():
        want = _official_coordx(model, pts)
        torch.testing.assert_close(model(pts), want, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(evaluate_grid(model, coords).reshape(want.shape), want, rtol=1e-10, atol=1e-10)
        whole = create_model("coordx", info, split=split, width=16, shared_bias="whole", **variant).double()
        whole.load_state_dict(model.state_dict())
        assert (whole(pts) - want).abs().max() > 1e-3  # coordfit's former whole bias is not the official model


def test_evaluate_grid_chunking_does_not_change_values() -> None:
    torch.manual_seed(0)
    for name in ("coordx", "siren"):
        model = create_model(name, IMAGE, width=16)
        coords = [axis_coords(37), axis_coords(23)]
        whole = evaluate_grid(model, coords, chunk=10**9)
        tiny = evaluate_grid(model, coords, chunk=50)
        torch.testing.assert_close(whole, tiny)


def test_sine_linear_equals_reference_formula() -> None:
    torch.manual_seed(0)
    layer = SineLinear(5, 7, w0=30.0)
    siren_init_(layer, 30.0, first=False)
    x = torch.randn(11, 5)
    ref = torch.sin(30.0 * (x @ layer.weight.T + layer.bias))
    torch.testing.assert_close(layer(x), ref, rtol=1e-5, atol=1e-5)
    bound = math.sqrt(6 / 5) / 30
    assert layer.weight.abs().max() <= bound


def test_siren_first_layer_init_range() -> None:
    model = create_model("siren", GridInfo(("y", "x"), (8, 8), 1))
    first = model.net[0]
    assert first.weight.abs().max() <= 1 / 2 and first.weight.abs().max() > 0.3


@pytest.mark.parametrize(
    "spec,message",
    [("x+z", "lacks"), ("x+x", "twice"), ("x", "leaves out"), ("x++y", "empty"), ("", "empty")],
)
def test_bad_split_specs(spec: str, message: str) -> None:
    with pytest.raises(CoordfitError, match=message):
        parse_split(spec, ("y", "x"))


def test_parse_split_orders_branch_dims_by_signal_axes() -> None:
    assert parse_split("x+y", ("y", "x")) == [(1,), (0,)]
    assert parse_split("xy+t", ("t", "y", "x")) == [(1, 2), (0,)]


@pytest.mark.parametrize(
    "name,options,message",
    [
        ("nope", {}, "unknown model"),
        ("siren", {"width": 0}, "width must be positive"),
        ("siren", {"width": -3}, "width must be positive"),
        ("siren", {"bogus": 1}, "no option 'bogus'"),
        ("coordx", {"fusion": "concat"}, "must be one of"),
        ("coordx", {"shared_layers": 4}, "leaves no output layer"),
        ("coordx", {"full_split": True, "widen": "all"}, "partial split"),
        ("coordx", {"shared_bias": "half"}, "shared-bias must be one of"),
        ("pe-mlp", {"width": "wide"}, "must be int"),
    ],
)
def test_bad_model_options(name: str, options: dict, message: str) -> None:
    with pytest.raises(CoordfitError, match=message):
        create_model(name, IMAGE, **options)


def test_registry_entries_have_descriptions_and_rates() -> None:
    for name in list_models():
        e = model_entry(name)
        assert e.description and e.lr > 0


def test_runs_saved_before_shared_bias_load_with_the_whole_bias(tmp_path, image_png) -> None:
    import json

    import coordfit
    from coordfit.engine.train import TrainConfig

    run = tmp_path / "r"
    coordfit.fit(image_png, "coordx", train=TrainConfig(steps=3), out=run, progress=False, width=16)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model_config"]["shared_bias"] == "divided"
    fresh = coordfit.load(run).model
    del cfg["model_config"]["shared_bias"]  # as a run written before the option existed
    (run / "config.json").write_text(json.dumps(cfg))
    old = coordfit.load(run).model
    assert (fresh.config.shared_bias, old.config.shared_bias) == ("divided", "whole")
    coords = [axis_coords(9), axis_coords(7)]
    assert not torch.allclose(evaluate_grid(fresh, coords), evaluate_grid(old, coords))  # the same weights, the old bias
