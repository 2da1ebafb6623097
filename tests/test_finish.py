"""After training: the model evaluated once for metrics and outputs, phases timed and shown,
an empty mesh said, the surface-adaptive field equal to the full grid."""

from __future__ import annotations

import io
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import coordfit
from coordfit.core.phases import Phases
from coordfit.signals import ImageSignal, ShapeSignal, VideoSignal
from coordfit.signals import mesh_labels as ml
from coordfit.signals import shape as shape_module
from coordfit.signals.image import render_size
from coordfit.signals.isosurface import field_volume, marching_cubes, surface_volume
from coordfit.engine.train import TrainConfig

from conftest import smooth_image

pytestmark = pytest.mark.usefixtures("one_thread")


def _count_outputs(model: torch.nn.Module) -> dict[str, int]:
    """Count the output points of every grid and pointwise evaluation of ``model`` from now on."""
    seen = {"grid": 0, "points": 0}
    grid, points = model.forward_grid, model.forward

    def forward_grid(parts):
        out = grid(parts)
        seen["grid"] += out.numel() // out.shape[-1]
        return out

    def forward(x):
        out = points(x)
        seen["points"] += out.shape[0]
        return out

    model.forward_grid, model.forward = forward_grid, forward
    return seen


def _recorder() -> tuple[list[tuple[str, int, int]], object]:
    calls: list[tuple[str, int, int]] = []
    return calls, lambda phase, done, total: calls.append((phase, done, total))


def _tiny_clip(t: int = 5, h: int = 12, w: int = 16) -> VideoSignal:
    frames = np.stack([smooth_image(h, w, 3, seed=i) for i in range(t)])
    return VideoSignal(frames, fps=10.0)


# -- one evaluation -----------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: ImageSignal(smooth_image(20, 28)), _tiny_clip], ids=["image", "video"])
def test_grid_signals_evaluate_each_point_once_for_metrics_and_outputs(make, tmp_path: Path) -> None:
    signal = make()
    model = coordfit.create_model("coordx", signal.info, width=16).eval()
    seen = _count_outputs(model)
    calls, report = _recorder()
    metrics, paths = signal.finish(model, tmp_path, report)
    assert seen == {"grid": math.prod(signal.shape), "points": 0}
    assert len(paths) == 1 and paths[0].stat().st_size > 0 and math.isfinite(metrics["psnr"])
    assert {p for p, _, _ in calls} == {"render", "metrics", "export"}
    assert all(d == t for p, d, t in calls if (p, d, t) == calls[-1])  # ends on a finished phase
    # the metrics alone cost the same one render, and give the same numbers
    seen.update(grid=0, points=0)
    assert signal.evaluate(model)["psnr"] == pytest.approx(metrics["psnr"], abs=1e-9)
    assert seen == {"grid": math.prod(signal.shape), "points": 0}


def test_shape_evaluates_its_field_once_and_no_point_by_point(tmp_path: Path) -> None:
    signal = ShapeSignal.load("primitive:sphere", label_resolution=16, resolution=32, eval_points=500)
    model = coordfit.create_model("coordx", signal.info, width=16).eval()
    seen = _count_outputs(model)
    metrics, paths = signal.finish(model, None)
    alone = dict(seen)
    seen.update(grid=0, points=0)
    metrics_and_mesh, paths = signal.finish(model, tmp_path)
    assert seen == alone and alone["points"] == 0 and 0 < alone["grid"] <= 2 * 32**3
    assert metrics_and_mesh["iou"] == metrics["iou"] and [p.name for p in paths] == ["mesh.ply", "preview.png"]


@pytest.mark.parametrize("field", ["occupancy", "sdf"])
def test_iou_nodes_on_the_label_lattice_take_its_labels_without_winding_numbers(field: str, monkeypatch) -> None:
    signal = ShapeSignal.load("primitive:box", field=field, label_resolution=41, resolution=41, eval_points=2000)
    ax = ml.lattice(41)
    calls, report = _recorder()
    winding = ml.inside
    monkeypatch.setattr(ml, "inside", lambda *a: pytest.fail("labelled again"))
    uni, uni_in, near, near_in = signal._eval_nodes(41, report)
    assert calls == [] and 0.1 < uni_in.mean() < 0.9  # the box's faces pass through nodes of this lattice
    assert np.array_equal(uni_in, winding(signal.mesh, ax[uni])) and np.array_equal(near_in, winding(signal.mesh, ax[near]))


# -- phases: timed, and reported off a terminal ----------------------------------------------------
def test_fit_records_sane_phase_seconds(tmp_path: Path, image_png: Path) -> None:
    t0 = time.perf_counter()
    r = coordfit.fit(image_png, "coordx", train=TrainConfig(steps=20, grid_batch=256), out=tmp_path / "run",
                     progress=False, width=16)
    wall = time.perf_counter() - t0
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    phases = saved["phase_seconds"]
    assert list(phases) == ["load", "train", "render", "metrics", "export"]
    assert all(v >= 0 for v in phases.values())
    assert phases["train"] >= saved["train_seconds"] * 0.99  # wall clock of the loop >= its step time
    assert sum(phases.values()) <= wall + 0.01
    assert r.metrics["phase_seconds"] == phases


def test_phases_attribute_the_time_since_the_last_report() -> None:
    clock = Phases(show=False)
    with clock.finishing() as report:
        time.sleep(0.02)
        report("render", 1, 2)
        report("metrics", 1, 2)
        time.sleep(0.02)
        report("render", 2, 2)
    assert clock.seconds["render"] >= 0.04 and clock.seconds["metrics"] < 0.02


def test_every_phase_after_training_prints_a_line_off_a_terminal(tmp_path: Path) -> None:
    stream = io.StringIO()
    clock = Phases(show=True, terminal=False, stream=stream, every=3600)
    signal = ShapeSignal.load("primitive:sphere", label_resolution=16, resolution=32, eval_points=500)
    model = coordfit.create_model("coordx", signal.info, width=16).eval()
    clip = _tiny_clip()
    with clock.finishing() as report:
        signal.finish(model, tmp_path, report)
        clip.finish(coordfit.create_model("siren", clip.info, width=8), tmp_path, report)
    lines = stream.getvalue().splitlines()
    ended = [line.split()[0] for line in lines if line.split()[1] == "100%"]
    # each phase of each signal once, when it ends: `phase  100%  done/total  seconds s`
    assert ended == ["label", "render", "mesh", "metrics", "export", "preview", "render", "metrics", "export"], lines
    assert all(line.split()[2] == "/".join([line.split()[2].split("/")[1]] * 2) and line.split()[4] == "s"
               for line in lines if line.split()[1] == "100%"), lines


def test_interleaved_phases_show_beside_the_running_one() -> None:
    stream = io.StringIO()
    clock = Phases(show=True, terminal=False, stream=stream, every=0.0)
    with clock.finishing() as report:
        for chunk in (1, 2, 3):  # as a video: render a chunk, score it, encode it
            for phase in ("render", "metrics", "export"):
                report(phase, chunk, 3)
    lines = [line.split() for line in stream.getvalue().splitlines()]
    assert [line[0] for line in lines] == ["render", "render", "render", "metrics", "export"]
    assert lines[1][1:3] == ["67%", "2/3"] and lines[1][5:] == ["metrics", "1/3", "export", "1/3"]
    assert [line[1] for line in lines[2:]] == ["100%"] * 3


def test_render_reports_progress_off_a_terminal(tmp_path: Path, image_png: Path, capsys) -> None:
    coordfit.fit(image_png, "coordx", train=TrainConfig(steps=2, grid_batch=64), out=tmp_path / "run",
                 progress=False, width=8)
    capsys.readouterr()
    coordfit.render(tmp_path / "run", scale=2.0)
    err = capsys.readouterr().err
    assert "render  100%" in err and "export  100%" in err


# -- an empty mesh is said ---------------------------------------------------------------------------
def _outside_everywhere(signal: ShapeSignal) -> torch.nn.Module:
    model = coordfit.create_model("coordx", signal.info, width=8).eval()
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(-5.0)  # logit -5: outside, everywhere
    return model


def test_an_empty_mesh_is_said_and_metrics_stay_strict_json(tmp_path: Path) -> None:
    signal = ShapeSignal.load("primitive:sphere", label_resolution=16, resolution=24, eval_points=500)
    metrics, paths = signal.finish(_outside_everywhere(signal), tmp_path)
    assert metrics["mesh_faces"] == 0 and metrics["iou"] == 0.0 and metrics["chamfer_l1"] is None
    (warning,) = metrics["warnings"]
    assert "mesh.ply is empty" in warning and "train longer or use another model" in warning
    assert json.loads(json.dumps(metrics, allow_nan=False)) == metrics
    assert paths[0].name == "mesh.ply"


def test_cli_says_an_empty_mesh_in_one_line(runner, tmp_path: Path, monkeypatch) -> None:
    from coordfit_cli.main import app

    monkeypatch.setattr(shape_module, "marching_cubes", lambda vol, field: ml.MeshData(np.zeros((0, 3)),
                                                                                        np.zeros((0, 3), np.int64)))
    result = runner.invoke(app, ["shape", "primitive:sphere", "--steps", "2", "--width", "8", "--resolution", "16",
                                 "--label-resolution", "16", "--eval-points", "200", "--no-progress",
                                 "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    said = [line for line in result.output.splitlines() if line.startswith("warning: mesh.ply is empty")]
    assert len(said) == 1
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["chamfer_l1"] is None and saved["warnings"] == [said[0].removeprefix("warning: ")]


# -- the surface-adaptive field ---------------------------------------------------------------------
class _Ball(torch.nn.Module):
    """A field with one clean surface: ``radius - |x - centre|`` (positive inside)."""

    branches = [(0, 1, 2)]

    def __init__(self, radius: float = 0.55, centre: tuple[float, ...] = (0.1, -0.05, 0.03)) -> None:
        super().__init__()
        self.radius, self.centre = radius, torch.tensor(centre)
        self.weight = torch.nn.Parameter(torch.zeros(1))  # a parameter: the evaluation's device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.radius - (x - self.centre).norm(dim=-1, keepdim=True)

    def forward_grid(self, parts: list[torch.Tensor]) -> torch.Tensor:
        return self.forward(parts[0])


@pytest.mark.parametrize("seeds", ["none", "surface", "elsewhere"])
def test_surface_volume_gives_the_mesh_of_the_full_grid(seeds: str) -> None:
    ball = _Ball()
    points = {"none": None, "surface": ml.sample_surface(ml.read_mesh("primitive:sphere"), 500)[0] * 0.55 + 0.1,
              "elsewhere": np.full((1, 3), -0.9)}[seeds]  # growth from the coarse crossings finds the surface
    calls, report = _recorder()
    fast = surface_volume(ball, 41, seeds=points, block=4, report=report)
    full = field_volume(ball, 41)
    assert calls[-1][1] == calls[-1][2] < 0.5 * 10**3  # blocks away from the surface were skipped
    np.testing.assert_array_equal(fast > 0, full > 0)
    a, b = marching_cubes(fast, "occupancy"), marching_cubes(full, "occupancy")
    assert len(a.faces) > 1000
    np.testing.assert_array_equal(a.faces, b.faces)
    np.testing.assert_array_equal(a.vertices, b.vertices)


class _Ripples(_Ball):
    """A level set almost everywhere, as a noisy fit has."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(17.0 * x).prod(dim=-1, keepdim=True)


def test_a_level_set_almost_everywhere_is_evaluated_whole() -> None:
    np.testing.assert_array_equal(surface_volume(_Ripples(), 33, block=4), field_volume(_Ripples(), 33))


# -- image render size: one function ------------------------------------------------------------------
def test_image_render_size_is_checked_once() -> None:
    meta = {"shape": [20, 30]}
    assert render_size(meta) == (20, 30) and render_size(meta, scale=2) == (40, 60)
    assert render_size(meta, size=(7, 5)) == (5, 7)
    for bad in ({"scale": 0.0}, {"scale": -1.0}, {"size": (0, 4)}, {"size": (4, 4), "scale": 2.0}):
        with pytest.raises(coordfit.CoordfitError):
            render_size(meta, **bad)
        with pytest.raises(coordfit.CoordfitError):
            ImageSignal.default_render_name(meta, **bad)


# -- metrics ------------------------------------------------------------------------------------
@pytest.mark.parametrize("h, w, c", [(40, 52, 3), (9, 5, 1), (3, 8, 2), (2, 8, 3)])
def test_psnr_and_ssim_equal_scikit_image(h: int, w: int, c: int) -> None:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from coordfit.core.metrics import image_psnr, image_ssim, psnr, ssim

    rng = np.random.default_rng(h)
    target = rng.random((4, h, w, c))
    pred = target + rng.normal(0, [[[[0.01]]], [[[0.05]]], [[[0.2]]], [[[0.5]]]], target.shape)  # over- and undershoots
    win = min(7, h, w) - (1 - min(7, h, w) % 2)
    for i in range(4):
        p = np.clip(pred[i], 0, 1)
        ref_psnr = peak_signal_noise_ratio(target[i], p, data_range=1.0)
        ref_ssim = structural_similarity(target[i], p, data_range=1.0, channel_axis=-1, win_size=win) if win >= 3 else math.nan
        assert image_psnr(pred[i], target[i]) == pytest.approx(ref_psnr, abs=1e-9)
        assert image_ssim(pred[i], target[i]) == pytest.approx(ref_ssim, abs=1e-9, nan_ok=True)
        assert psnr(pred, target)[i].item() == pytest.approx(ref_psnr, abs=1e-9)
        assert ssim(pred, target, channel_axis=-1, pixels=4 * w)[i].item() == pytest.approx(ref_ssim, abs=1e-9, nan_ok=True)  # in slabs
    chw = np.moveaxis(pred, -1, -3), np.moveaxis(target, -1, -3)  # channels first, as the view renders
    assert torch.allclose(ssim(*chw), ssim(pred, target, channel_axis=-1), equal_nan=True)
    assert torch.equal(psnr(*chw), psnr(pred, target))


def test_gaussian_ssim_is_the_papers_ssim() -> None:
    """gaussian_ssim is scikit-image's SSIM with Wang et al.'s Gaussian settings (what the
    view-synthesis papers report), a figure of its own beside ``ssim``."""
    from skimage.metrics import structural_similarity

    from coordfit.core.metrics import gaussian_ssim, psnr_from_mse, ssim

    g = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 32, 40, generator=g, dtype=torch.float64)
    pred = (target + 0.1 * torch.randn(2, 3, 32, 40, generator=g, dtype=torch.float64)).clamp(0, 1)
    ours = gaussian_ssim(pred, target)
    for i in range(2):
        ref = structural_similarity(target[i].permute(1, 2, 0).numpy(), pred[i].permute(1, 2, 0).numpy(), data_range=1.0,
                                    channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        assert ours[i].item() == pytest.approx(ref, abs=1e-9)
    assert (ssim(pred, target) - ours).abs().min() > 1e-4  # not the figure metrics.json reports
    assert psnr_from_mse(0.01) == pytest.approx(20.0) and psnr_from_mse(torch.tensor(0.04), 2.0).item() == pytest.approx(20.0)