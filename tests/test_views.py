"""`coordfit views`: fitting posed views through the one loop, the prior, outputs, every bad input."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

import coordfit
from coordfit.engine.presets import PRESETS
from coordfit.signals.views.signal import ViewsSignal
from coordfit_cli.main import app

# Small everything: 16 px views, few samples per ray, a small hash grid.
FAST_SIGNAL = {"samples_front": 1, "samples_inner": 12, "samples_outer": 3}
FAST_MODEL = {"levels": 6, "log2_table_size": 14, "width": 32}
FAST_CLI = ["--set", "samples_front=1", "--set", "samples_inner=8", "--set", "samples_outer=3", "--batch-points", "768",
            "-m", "hashgrid", "-o", "levels=4", "-o", "log2_table_size=12", "-o", "width=16", "--device", "cpu",
            "--no-progress"]


@pytest.fixture
def scene_json(tmp_path: Path) -> Path:
    from coordfit.nvs import save_scene
    from coordfit.signals.views.data import read_views

    return save_scene(read_views("procedural:1000000007,views=4,size=16"), tmp_path / "scene")


@pytest.fixture
def tiny_prior(tmp_path: Path) -> Path:
    """An untrained 16 px Efficient-LVSM saved as a view-synthesis checkpoint."""
    from coordfit.nvs import NVSConfig, create_model, save_model

    torch.manual_seed(0)
    model = create_model("efficient-lvsm", NVSConfig(width=32, depth=1, head_dim=16))
    return save_model(tmp_path / "prior" / "tiny.safetensors", model, {"size": 16})


@pytest.mark.parametrize("name", ["efficient-lvsm", "lvsm"])
def test_a_prior_runs_at_its_own_size(one_thread, tmp_path: Path, name: str) -> None:
    from coordfit.nvs import NVSConfig, create_model, save_model
    from coordfit.signals.views.prior import ViewPrior
    from coordfit.signals.views.data import read_views

    torch.manual_seed(0)
    path = save_model(tmp_path / "p.safetensors", create_model(name, NVSConfig(width=32, depth=1, head_dim=16)), {"size": 8})
    prior = ViewPrior.load(path)
    scene = read_views("procedural:1000000007,views=4,size=16")
    prior.condition(scene.images[:2], scene.c2w[:2], scene.fxfycxcy[:2])
    out = prior.render(scene.c2w[2:], scene.fxfycxcy[2:])
    assert out.shape == (2, 3, 8, 8) and bool(((out >= 0) & (out <= 1)).all())
    torch.testing.assert_close(prior.scale_intrinsics(scene.fxfycxcy[:1], 16, 16), scene.fxfycxcy[:1] / 2)
    assert prior.size_for(16, 32) == (4, 8) and prior.size_for(30, 20) == (8, 4)
    direct = create_model(name, prior.model.cfg)
    direct.load_state_dict(prior.model.state_dict())
    small = torch.nn.functional.interpolate(scene.images[:2], size=(8, 8), mode="area")
    k = scene.fxfycxcy / 2
    with torch.no_grad():
        ref = direct(small[None], scene.c2w[None, :2], k[None, :2], scene.c2w[None, 2:], k[None, 2:])[0]
    torch.testing.assert_close(out, ref.clamp(0, 1), atol=1e-5, rtol=0)  # the cache path equals a full forward


def test_a_prior_trained_with_normalized_poses_gets_them(one_thread, tmp_path: Path) -> None:
    from coordfit.nvs import NVSConfig, create_model, normalize_poses, save_model
    from coordfit.signals.views.prior import ViewPrior
    from coordfit.signals.views.data import read_views

    torch.manual_seed(0)
    model = create_model("efficient-lvsm", NVSConfig(width=32, depth=1, head_dim=16))
    prior = ViewPrior.load(save_model(tmp_path / "n.safetensors", model, {"size": 16, "normalize_poses": True}))
    s = read_views("procedural:1000000007,views=4,size=16")
    prior.condition(s.images[:2], s.c2w[:2], s.fxfycxcy[:2])
    ref_in, ref_t = normalize_poses(s.c2w[:2], s.c2w[2:])
    with torch.no_grad():
        ref = model(s.images[None, :2], ref_in[None], s.fxfycxcy[None, :2], ref_t[None], s.fxfycxcy[None, 2:])[0]
    torch.testing.assert_close(prior.render(s.c2w[2:], s.fxfycxcy[2:]), ref.clamp(0, 1), atol=1e-5, rtol=0)


def _fit(signal: ViewsSignal, steps: int, out: Path | None = None) -> coordfit.FitResult:
    train = coordfit.TrainConfig(steps=steps, batch_points=2048, device="cpu", seed=0)
    return coordfit.fit(signal, "hashgrid", train=train, out=out, save=out is not None, progress=False, **FAST_MODEL)


def test_fit_crosses_a_psnr_floor_on_its_input_views(one_thread) -> None:
    signal = ViewsSignal.load("procedural:1000000007,views=3,size=16", inputs=[0, 1], holdout=[2], **FAST_SIGNAL)
    metrics = _fit(signal, 80).metrics
    assert metrics["input_psnr"] > 24.0, metrics
    assert metrics["heldout"]["fit"]["psnr"] > 12.0  # scored on the held-out view, which it never saw
    assert set(metrics["heldout"]) == {"nearest", "fit"}


@pytest.mark.parametrize("name", [n for n, p in PRESETS.items() if p.kind == "views"])
def test_every_views_preset_trains(one_thread, name: str) -> None:
    signal = ViewsSignal.load("procedural:1000000007,views=3,size=16", holdout=[2], **FAST_SIGNAL)
    r = coordfit.fit(signal, preset=name, train={"steps": 3, "device": "cpu", "batch_points": 1024}, save=False,
                     progress=False)
    assert r.metrics["steps"] == 3 and r.metrics["model"] == PRESETS.get(name).model
    assert all(getattr(r.model.config, k) == v for k, v in PRESETS.get(name).model_options.items())
    assert math.isfinite(r.metrics["heldout"]["fit"]["psnr"])


def test_without_held_out_views_the_inputs_are_scored(one_thread, tmp_path: Path) -> None:
    signal = ViewsSignal.load("procedural:1000000007,views=2,size=16", **FAST_SIGNAL)
    result = _fit(signal, 3, tmp_path / "run")
    assert signal.inputs == [0, 1] and "heldout" not in result.metrics
    assert result.metrics["psnr"] == result.metrics["input_psnr"] > 5
    assert iio.imread(tmp_path / "run" / "views.png").ndim == 3


def test_a_held_out_image_does_not_change_the_fit(one_thread, scene_json: Path) -> None:
    weights = []
    for flip in (False, True):
        if flip:  # change the held-out view's pixels on disk
            png = scene_json.parent / json.loads(scene_json.read_text())["frames"][3]["image_path"]
            iio.imwrite(png, 255 - iio.imread(png))
        signal = ViewsSignal.load(scene_json, inputs=[0, 1], holdout=[3], **FAST_SIGNAL)
        weights.append([p.detach().clone() for p in _fit(signal, 5).model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*weights))


def test_sampling_draws_on_the_generator_and_weights_the_pseudo_rays(tiny_prior: Path) -> None:
    signal = ViewsSignal.load("procedural:1000000007,views=3,size=16", inputs=[0, 1], holdout=[2], prior=str(tiny_prior),
                              pseudo_views=4, prior_weight=0.5, prior_ramp=100, **FAST_SIGNAL)
    batches = [signal.sample([(0, 1, 2)], 1600, torch.Generator().manual_seed(3), step=50) for _ in range(2)]
    (points, delta), target = batches[0]
    assert torch.equal(points, batches[1][0][0])  # the same generator state, the same batch
    rays = 1600 // 16
    assert points.shape == (rays, 16, 3) and delta.shape == (rays, 16) and target.shape == (rays, 4)
    assert float(points.abs().max()) <= 1.0
    n_real = rays - round(rays * signal.config.pseudo_share)
    torch.testing.assert_close(target[:n_real, 3].sum(), torch.tensor(1.0))
    torch.testing.assert_close(target[n_real:, 3].sum(), torch.tensor(0.25))  # 0.5 x 50 / 100


def test_fit_with_kind_views_and_a_prior_reads_the_scene_with_it(one_thread, tiny_prior: Path, scene_json: Path) -> None:
    result = coordfit.fit(scene_json, "hashgrid", kind="views", prior=str(tiny_prior), save=False, progress=False,
                          train={"steps": 3, "device": "cpu", "batch_points": 1024},
                          signal_options={"inputs": [0, 1], "holdout": [3], "pseudo_views": 2, **FAST_SIGNAL},
                          **FAST_MODEL)
    assert result.signal.prior is not None and result.signal.pseudo.pixels.shape[0] == 2
    assert set(result.metrics["heldout"]) == {"nearest", "prior", "fit"}  # fit() alone: no comparison fit
    with pytest.raises(coordfit.CoordfitError, match="prior="):
        coordfit.fit(result.signal, "hashgrid", prior="none", save=False)


def test_tiny_prior_end_to_end_logs_the_pseudo_view_loss(one_thread, tiny_prior: Path, scene_json: Path,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "run"
    train = coordfit.TrainConfig(steps=30, batch_points=2048, device="cpu")
    result = coordfit.fit_views(scene_json, "hashgrid", prior=str(tiny_prior), train=train, out=out, progress=False,
                                signal_options={"inputs": [0, 1], "holdout": [2, 3], "pseudo_views": 4,
                                                "prior_weight": 0.5, "prior_ramp": 10, **FAST_SIGNAL}, **FAST_MODEL)
    held = json.loads((out / "metrics.json").read_text())["heldout"]
    assert set(held) == {"nearest", "prior", "fit_no_prior", "fit"}
    assert held == result.metrics["heldout"]
    rows = list(csv.DictReader((out / "prior_log.csv").open()))
    assert [int(r["step"]) for r in rows] == [0, 25]
    assert float(rows[0]["prior_weight"]) == 0 and float(rows[1]["prior_weight"]) == 0.5  # ramped up by step 10
    assert all(0 < float(r["pseudo_mse"]) < 1 for r in rows)
    for name in ("views.png", "orbit.mp4", "pseudo_views.png", "no_prior.safetensors", "model.safetensors"):
        assert (out / name).is_file(), name
    assert iio.imread(out / "views.png").shape[0] > 100  # two rows of five images


def test_cli_fit_render_orbit_pose_and_resume(one_thread, runner, scene_json: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = runner.invoke(app, ["views", str(scene_json), "--inputs", "0,2", "--holdout", "1,3", "--steps", "4",
                              "--out", str(out), *FAST_CLI])
    assert res.exit_code == 0, res.output
    assert "held-out views" in res.stdout and "nearest" in res.stdout
    assert json.loads((out / "metrics.json").read_text())["holdout"] == [1, 3]
    res = runner.invoke(app, ["render", str(out), "--orbit", "--frames", "3", "--size", "24x20", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert iio.imread(out / "orbit_24x20_3f.mp4").shape[:3] == (3, 20, 24)
    camera = tmp_path / "cam.json"
    camera.write_text(json.dumps({"c2w": torch.linalg.inv(torch.tensor(
        json.loads(scene_json.read_text())["frames"][1]["w2c"])).tolist()}))
    for pose, name in (("1", "pose_view1_32x32.png"), (str(camera), "pose_cam_32x32.png")):
        res = runner.invoke(app, ["render", str(out), "--pose", pose, "--scale", "2", "--device", "cpu"])
        assert res.exit_code == 0, res.output
        assert iio.imread(out / name).shape == (32, 32, 3)
    a, b = iio.imread(out / "pose_view1_32x32.png"), iio.imread(out / "pose_cam_32x32.png")
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1  # the same camera, given two ways
    res = runner.invoke(app, ["views", "--resume", str(out), "--steps", "6", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "metrics.json").read_text())["steps"] == 6


def _bad_scenes(tmp: Path, scene_json: Path, tiny_prior: Path) -> dict[str, list[str]]:
    data = json.loads(scene_json.read_text())

    def variant(name: str, edit) -> str:
        d = json.loads(json.dumps(data))
        for f in d["frames"]:
            f["image_path"] = str(scene_json.parent / f["image_path"])
        edit(d)
        path = tmp / f"{name}.json"
        path.write_text(json.dumps(d))
        return str(path)

    def frame(key, value, i=1):
        return lambda d: d["frames"][i].__setitem__(key, value)

    iio.imwrite(tmp / "big.png", np.zeros((20, 20, 3), np.uint8))
    (tmp / "not_prior").mkdir()
    (tmp / "not_prior" / "model.safetensors").write_bytes(b"not safetensors")
    w2c = data["frames"][1]["w2c"]
    nan = [row[:] for row in w2c]
    nan[0][3] = float("nan")
    scaled = [[2 * x for x in row[:3]] + row[3:] for row in w2c[:3]] + [w2c[3]]
    (tmp / "empty").mkdir()
    (tmp / "empty" / "transforms.json").write_text(json.dumps({"camera_angle_x": 0.7, "frames": []}))
    fast = ["--no-progress", "--device", "cpu"]
    return {
        "one view": [variant("one", lambda d: d.__setitem__("frames", d["frames"][:1]))],
        "overlap": [str(scene_json), "--inputs", "0,1", "--holdout", "1,2"],
        "out of range": [str(scene_json), "--inputs", "0,9"],
        "bad index list": [str(scene_json), "--inputs", "0;1"],
        "NaN pose": [variant("nan", frame("w2c", nan))],
        "not a rotation": [variant("scaled", frame("w2c", scaled))],
        "zero focal length": [variant("f0", frame("fxfycxcy", [0.0, 20.0, 8.0, 8.0]))],
        "negative focal length": [variant("fneg", frame("fxfycxcy", [20.0, -1.0, 8.0, 8.0]))],
        "transforms with no frames": [str(tmp / "empty" / "transforms.json")],
        "missing image": [variant("missing", frame("image_path", str(tmp / "gone.png")))],
        "different sizes": [variant("sizes", frame("image_path", str(tmp / "big.png")))],
        "prior is not a checkpoint": [str(scene_json), "--prior", str(tmp / "not_prior"), *fast],
        "prior is an image run": [str(scene_json), "--prior", str(tmp / "img_run"), *fast],
        "prior is missing": [str(scene_json), "--prior", str(tmp / "nowhere.safetensors"), *fast],
        "missing scene": [str(tmp / "nope.json")],
        "unknown views option": [str(scene_json), "--set", "sample_inner=3"],
        "bad prior weight": [str(scene_json), "--prior-weight", "-0.5"],
        "bad procedural spec": ["procedural:abc"],
    }


def test_every_bad_input_is_one_line_exit_2(runner, scene_json: Path, tiny_prior: Path, image_png: Path,
                                            tmp_path: Path) -> None:
    res = runner.invoke(app, ["image", str(image_png), "--steps", "1", "--width", "8", "--out", str(tmp_path / "img_run"),
                              "--no-progress"])
    assert res.exit_code == 0, res.output
    for what, args in _bad_scenes(tmp_path, scene_json, tiny_prior).items():
        res = runner.invoke(app, ["views", *args, "--steps", "1", "--out", str(tmp_path / "never")])
        assert res.exit_code == 2, f"{what}: exit {res.exit_code}\n{res.output}"
        err = res.stderr.strip()
        assert err.startswith("error:") and "\n" not in err, f"{what}: {err!r}"
    assert not (tmp_path / "never").exists()  # refused before a run folder was made


def test_cli_flags_are_made_from_the_views_options(runner) -> None:
    import dataclasses

    from coordfit.signals.options import ViewsOptions

    shown = runner.invoke(app, ["views", "--help"], env={"COLUMNS": "400"}).stdout
    flagged = ("inputs", "holdout", "prior", "prior_weight", "pseudo_views")
    for name in flagged:
        assert f"--{name.replace('_', '-')} " in shown, name
    assert "(default: 1,024)" in shown  # --pseudo-views' default, from the field
    rest = [f.name for f in dataclasses.fields(ViewsOptions) if f.name not in flagged]
    text = " ".join(shown.split())
    assert "Other views options, as -o KEY=VALUE: prior_ramp (" in text  # each with its meaning and default
    assert all(f"{name} (" in text for name in rest)
    for shared in ("--name", "--config", "--logger", "--compare", "--set"):
        assert shared in shown, shared


def test_an_unknown_views_option_is_refused_once() -> None:
    with pytest.raises(coordfit.CoordfitError, match="^views signal has no option 'sample_inner' .*samples_inner"):
        ViewsSignal.load("procedural:1000000007,views=3,size=16", sample_inner=3)
    with pytest.raises(coordfit.CoordfitError, match="pseudo-share must be in"):
        ViewsSignal.load("procedural:1000000007,views=3,size=16", pseudo_share=1.0)


def test_cli_dash_o_and_set_reach_the_views_options_and_the_default_preset_applies(one_thread, runner, scene_json: Path,
                                                                                  tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = runner.invoke(app, ["views", str(scene_json), "--holdout", "3", "--steps", "2", "-o", "samples_inner=8",
                              "--set", "box_scale=0.4", "-o", "levels=4", "--batch-points", "512", "--out", str(out),
                              "--device", "cpu", "--no-progress"])
    assert res.exit_code == 0, res.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"] == "hashgrid" and cfg["model_config"]["levels"] == 4  # hashgrid-views, -o levels on top
    assert cfg["signal"]["options"]["samples_inner"] == 8 and cfg["signal"]["options"]["box_scale"] == 0.4
    assert cfg["signal"]["inputs"] == [0, 1, 2] and cfg["signal"]["holdout"] == [3]


def test_cli_resume_refuses_a_flag_that_changes_the_views_run(one_thread, runner, scene_json: Path,
                                                              tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = runner.invoke(app, ["views", str(scene_json), "--inputs", "0,2", "--holdout", "1", "--steps", "2",
                              "--out", str(out), *FAST_CLI])
    assert res.exit_code == 0, res.output
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    for args, named in ((["--inputs", "0,1"], "--inputs"), (["--prior", "default"], "--prior"),
                        (["--set", "samples_inner=4"], "-o"), (["--batch-points", "256"], "--batch-points")):
        res = runner.invoke(app, ["views", "--resume", str(out), "--steps", "4", *args])
        assert res.exit_code == 2, res.output
        err = res.stderr.strip()
        assert err.startswith("error: --resume continues the run") and named in err and "\n" not in err, err
        assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # nothing written


def test_cli_with_a_prior_compares_after_the_fit_and_after_a_resume(one_thread, runner, tiny_prior: Path,
                                                                    scene_json: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = runner.invoke(app, ["views", str(scene_json), "--inputs", "0,2", "--holdout", "1", "--steps", "2",
                              "--prior", str(tiny_prior), "--pseudo-views", "4", "--out", str(out), *FAST_CLI])
    assert res.exit_code == 0, res.output
    assert "fit no prior" in res.stdout and (out / "no_prior.safetensors").is_file()
    assert set(json.loads((out / "metrics.json").read_text())["heldout"]) == {"nearest", "prior", "fit_no_prior", "fit"}
    res = runner.invoke(app, ["views", "--resume", str(out), "--steps", "3", "--no-compare", "--no-progress"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 3 and "fit_no_prior" not in metrics["heldout"]  # --no-compare: scored alone
