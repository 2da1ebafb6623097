"""What a user sees around a fit (issue 22): printed commands that run as printed, resume
limits, bad input refused before torch loads, renders of an older checkpoint set aside,
bounded post-training work, folders of inputs, shape previews, the report's wording."""

from __future__ import annotations

import dataclasses
import json
import shlex
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import coordfit
from coordfit import TrainConfig
from coordfit.core.device import DEFAULTS
from coordfit.core.errors import TrainingInterrupted
from coordfit.engine.train import Trainer
from coordfit_cli import _fit
from coordfit_cli.main import app
from conftest import smooth_image


@pytest.fixture
def short_first_run(monkeypatch):
    """The CPU's first-run budget and the hints' budgets cut to a fraction of a second."""
    monkeypatch.setitem(DEFAULTS, "cpu", dataclasses.replace(DEFAULTS["cpu"], first_run_seconds=0.3))
    monkeypatch.setattr(_fit, "HINT_MORE_SECONDS", 0.3)
    monkeypatch.setattr(_fit, "HINT_OTHER_SECONDS", 0.3)


def _write_png(path: Path, seed: int = 0, h: int = 24, w: int = 32) -> Path:
    import imageio.v3 as iio

    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, (smooth_image(h, w, seed=seed) * 255).round().astype(np.uint8))
    return path


def _printed_commands(text: str) -> list[list[str]]:
    """The commands a run printed to paste: ``  coordfit ...   # why`` lines and ``continue with: ...``."""
    found = []
    for line in text.splitlines():
        if line.startswith("  coordfit "):
            found.append(shlex.split(line.split("   #")[0]))
        elif "continue with: coordfit " in line:
            found.append(shlex.split(line.split("continue with: ", 1)[1]))
    return found


# -- item 2: every printed next command runs as printed --------------------------------------
@pytest.mark.parametrize("kind", ["image", pytest.param("video", marks=pytest.mark.slow),
                                  pytest.param("shape", marks=pytest.mark.slow)])
def test_every_go_further_command_runs_as_printed(runner, tmp_path, monkeypatch, short_first_run, kind) -> None:
    monkeypatch.chdir(tmp_path)
    args = [str(_write_png(tmp_path / "my photos" / "a photo.png"))] if kind == "image" else []
    res = runner.invoke(app, [kind, *args, "--width", "8", "--no-progress"])
    assert res.exit_code == 0, res.output
    commands = _printed_commands(res.stdout)
    assert len(commands) == 2 and all(c[0] == "coordfit" for c in commands)
    if kind == "image":  # the real input, quoted: a path with spaces survives the shell
        assert str(tmp_path / "my photos" / "a photo.png") in commands[1]
    for command in commands:
        again = runner.invoke(app, command[1:])
        assert again.exit_code == 0, (command, again.output)


def test_an_interrupted_run_prints_a_resume_command_that_continues_it(runner, tmp_path, monkeypatch) -> None:
    out = tmp_path / "runs with space" / "r"
    _interrupt_at(monkeypatch, 10)
    res = runner.invoke(app, ["image", str(_write_png(tmp_path / "p.png")), "--out", str(out), "--steps", "30",
                              "--width", "8", "--no-progress"])
    assert res.exit_code == 130, res.output
    (command,) = _printed_commands(res.stderr)
    monkeypatch.undo()
    again = runner.invoke(app, command[1:])
    assert again.exit_code == 0, again.output
    assert json.loads((out / "metrics.json").read_text())["steps"] == 30  # its own limit, not 30 more


def _interrupt_at(monkeypatch, step: int) -> None:
    """Ctrl-C as the trainer sees it, once ``step`` steps are done."""
    plain = Trainer.train_step

    def train_step(self):
        if self.step == step:
            raise KeyboardInterrupt
        return plain(self)

    monkeypatch.setattr(Trainer, "train_step", train_step)


# -- item 4: a resume with no new limit continues to the run's own ----------------------------
def test_a_resume_without_limits_trains_what_the_run_had_left(tmp_path, image_png, monkeypatch, capsys) -> None:
    _interrupt_at(monkeypatch, 12)
    with pytest.raises(TrainingInterrupted):
        coordfit.fit(image_png, "coordx", train=TrainConfig(steps=40, grid_batch=64), out=tmp_path / "s",
                     progress=False, width=8)
    monkeypatch.undo()
    r = coordfit.resume(tmp_path / "s")
    assert r.metrics["steps"] == 40 and r.metrics["stopped_by"] == "steps"
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith(f"resuming {tmp_path / 's'} at step 12") and "no new limit" in first
    assert "40 steps" in first and "28 steps left" in first


def test_a_resume_without_limits_trains_the_seconds_left_and_time_budget_means_more(tmp_path, image_png,
                                                                                    monkeypatch, capsys) -> None:
    plain = Trainer.train_step

    def slow_start(self):  # interrupted once half the budget is trained
        if self.seconds >= 0.4:
            raise KeyboardInterrupt
        return plain(self)

    monkeypatch.setattr(Trainer, "train_step", slow_start)
    with pytest.raises(TrainingInterrupted):
        coordfit.fit(image_png, "coordx", train=TrainConfig(time_budget=0.8, grid_batch=64), out=tmp_path / "t",
                     progress=False, width=8)
    monkeypatch.undo()
    before = json.loads((tmp_path / "t" / "train_state.json").read_text())["seconds"]
    r = coordfit.resume(tmp_path / "t")
    assert r.metrics["stopped_by"] == "time_budget"
    assert 0.8 <= r.metrics["train_seconds"] < before + 0.8  # the seconds left, not 0.8 s more
    assert "s left" in capsys.readouterr().err.splitlines()[0]
    assert json.loads((tmp_path / "t" / "config.json").read_text())["train"]["time_budget"] == 0.8
    more = coordfit.resume(tmp_path / "t", time_budget=0.3)
    assert more.metrics["train_seconds"] >= r.metrics["train_seconds"] + 0.3
    first = capsys.readouterr().err.splitlines()[0]
    assert "0.3 s more (to " in first and "as given" in first
    total = json.loads((tmp_path / "t" / "config.json").read_text())["train"]["time_budget"]
    assert total == pytest.approx(r.metrics["train_seconds"] + 0.3, abs=1e-3)  # recorded as the run's total


def test_the_trainer_holds_the_total_limits(tmp_path, image_png) -> None:
    a = coordfit.fit(image_png, "coordx", train=TrainConfig(steps=6, grid_batch=64), out=tmp_path / "a",
                     progress=False, width=8)
    from coordfit.signals import signal_from_meta

    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    signal = signal_from_meta(cfg["signal"])
    t = Trainer(coordfit.create_model("coordx", signal.info, width=8), signal,
                TrainConfig(steps=10, time_budget=2.0, grid_batch=64), tmp_path / "a")
    assert t.limits.steps == 10 and t.limits.seconds == 2.0
    t.load_checkpoint()
    assert t.limits.seconds == pytest.approx(a.metrics["train_seconds"] + 2.0, abs=1e-3)


# -- item 8: bad input is refused before torch is imported -------------------------------------
@pytest.mark.parametrize("args,message", [
    (["image", "no-such-photo.png"], "no-such-photo.png does not exist"),
    (["image", "--steps", "0"], "--steps must be positive"),
    (["video", "--max-frames", "0"], "--max-frames must be >= 1"),
    (["shape", "--device", "tpu"], "unknown device 'tpu'"),
    (["image", "--resume", "no-such-run"], "no-such-run does not exist"),
    (["image", "--outputs", "some"], "--outputs must be one of all, metrics, none"),
    (["image", "a.png", "--shard", "3/2"], "a.png does not exist"),
    (["image", "--shard", "3/2"], "--shard 3/2: need 1 <= I <= N"),
    (["image", "-o", "novalue"], "must look like key=value"),
])
def test_bad_input_is_refused_before_torch_is_imported(tmp_path, args, message) -> None:
    code = ("import sys\nfrom coordfit_cli.main import main\nsys.argv = ['coordfit', *sys.argv[1:]]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    print('torch' in sys.modules, e.code)\n")
    res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=tmp_path,
                         timeout=120)
    assert res.stdout.split() == ["False", "2"], (res.stdout, res.stderr)
    assert res.stderr.strip().startswith("error: ") and message in res.stderr and len(res.stderr.splitlines()) == 1


# -- item 9: renders of an older checkpoint, a missing folder, the axes' order ---------------
def test_a_resume_sets_aside_renders_of_the_older_checkpoint(tmp_path, image_png, capsys) -> None:
    a = coordfit.fit(image_png, "coordx", train=TrainConfig(steps=5, grid_batch=64), out=tmp_path / "r",
                     progress=False, width=8)
    old = coordfit.render(a.run_dir, scale=2, progress=False)
    assert old.name == "render_64x48.png"
    coordfit.resume(a.run_dir, steps=8)
    assert not old.exists() and (a.run_dir / "render_64x48.step5.png").is_file()
    assert "render_64x48.png shows step 5: kept as render_64x48.step5.png" in capsys.readouterr().err
    assert coordfit.render(a.run_dir, scale=2, progress=False) == old  # the newer model's render, by its name


def test_a_missing_run_folder_is_said_so(runner, tmp_path) -> None:
    for args in (["image", "--resume", str(tmp_path / "gone")], ["render", str(tmp_path / "gone")]):
        res = runner.invoke(app, args)
        assert res.exit_code == 2 and "gone does not exist" in res.stderr and "config.json" not in res.stderr


def test_a_bad_split_names_the_axes_as_splits_spell_them(runner, image_png, tmp_path) -> None:
    res = runner.invoke(app, ["image", str(image_png), "--split", "z+q", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "its axes are x, y" in res.stderr


# -- item 3: post-training work chosen, bounded, stated and announced -------------------------
def test_outputs_choose_what_is_evaluated_and_written(runner, image_png, tmp_path) -> None:
    base = [str(image_png), "--steps", "3", "--width", "8", "--no-progress"]
    res = runner.invoke(app, ["image", *base, "--out", str(tmp_path / "m"), "--outputs", "metrics"])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert m["outputs"] == "metrics" and m["psnr"] > 0 and m["metrics_on"] == "all 768 pixels"
    assert not (tmp_path / "m" / "reconstruction.png").exists()
    res = runner.invoke(app, ["image", *base, "--out", str(tmp_path / "n"), "--outputs", "none"])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "n" / "metrics.json").read_text())
    assert m["outputs"] == "none" and "psnr" not in m and m["steps"] == 3
    assert "render" not in m["phase_seconds"] and (tmp_path / "n" / "model.safetensors").is_file()


def test_metrics_of_a_large_image_are_on_a_stated_sample_of_rows(one_thread) -> None:
    from coordfit.core.metrics import image_psnr, ssim
    from coordfit.signals.image import ImageSignal, render_image

    signal = ImageSignal(smooth_image(200, 40))
    model = coordfit.create_model("siren", signal.info, width=16)
    sampled, _ = signal.finish(model, None, sample=4_000)
    bands = np.asarray(sampled["metric_bands"])[:, None] + np.arange(32)
    assert len(bands) == 3 and sampled["metrics_on"].startswith("3,840 of 8,000 pixels: 3 bands of 32 rows")
    full = render_image(model, 200, 40)
    assert sampled["psnr"] == pytest.approx(image_psnr(full[bands], signal.pixels01[bands]), abs=1e-9)
    assert sampled["ssim"] == pytest.approx(float(ssim(full[bands], signal.pixels01[bands], channel_axis=-1).mean()), abs=1e-9)
    exact, _ = signal.finish(model, None, sample=None)
    assert exact["metrics_on"] == "all 8,000 pixels" and "metric_bands" not in exact


def test_metrics_of_a_long_clip_are_on_a_stated_sample_of_frames(tmp_path, one_thread) -> None:
    from coordfit.signals.video import VideoSignal

    rng = np.random.default_rng(0)
    clip = VideoSignal(rng.uniform(0, 1, (20, 8, 12, 3)).astype(np.float32))
    model = coordfit.create_model("siren", clip.info, width=16)
    exact, _ = clip.finish(model, None)
    seen = []
    sampled, paths = clip.finish(model, tmp_path, sample=5 * 8 * 12,
                                 ready=lambda m: seen.append((dict(m), (tmp_path / "reconstruction.mp4").exists())))
    assert seen == [(sampled, False)]  # handed over before the long render of every frame
    assert sampled["metric_frames"] == [0, 5, 10, 14, 19] and sampled["metrics_on"].startswith("5 of 20 frames")
    assert sampled["psnr_per_frame"] == pytest.approx([exact["psnr_per_frame"][i] for i in sampled["metric_frames"]])
    assert exact["metrics_on"] == "all 20 frames" and len(exact["psnr_per_frame"]) == 20
    assert [p.name for p in paths] == ["reconstruction.mp4"]  # every frame still written


def test_sampled_metrics_are_kept_when_the_render_after_them_is_cut_short(tmp_path, monkeypatch) -> None:
    from coordfit.runs.batch import plan_batch
    from coordfit.signals import image

    source = _write_png(tmp_path / "in" / "p.png", h=40, w=30)
    monkeypatch.setattr("coordfit.api.METRICS_SAMPLE", 300)  # so this small image is scored on a sample
    plain = image.render_image

    def render_image(*args, phase="render", **kwargs):
        if phase == "render":
            raise KeyboardInterrupt  # Ctrl-C during the full render of reconstruction.png
        return plain(*args, phase=phase, **kwargs)

    monkeypatch.setattr(image, "render_image", render_image)
    with pytest.raises(KeyboardInterrupt):
        coordfit.fit(source, "coordx", train=TrainConfig(steps=3), out=tmp_path / "b" / "p", progress=False, width=8)
    m = json.loads((tmp_path / "b" / "p" / "metrics.json").read_text())
    assert m["outputs_done"] is False and m["psnr"] > 0 and m["metrics_on"].startswith("960 of 1,200 pixels: 1 band of 32 rows")
    assert not (tmp_path / "b" / "p" / "reconstruction.png").exists()
    assert [i.state for i in plan_batch([str(source)], tmp_path / "b")] == ["trained"]


def test_a_phase_much_longer_than_training_is_announced_with_an_estimate(monkeypatch) -> None:
    import io

    from coordfit.core import phases as ph

    clock = iter([0.0, 2.0, 4.0, 200.0])  # finishing() starts; 2 s per unit of 100
    monkeypatch.setattr(ph, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    out = io.StringIO()
    p = ph.Phases(True, stream=out, terminal=False, every=1e9)
    with p.finishing(after=1.5, run_dir=Path("runs/my run")) as report:
        report("render", 1, 100)
        report("render", 2, 100)
        report("render", 100, 100)
    announced = [line for line in out.getvalue().splitlines() if line.startswith("render: about")]
    assert len(announced) == 1 and "about 3 min at this pace (1/100 in 2.0 s), against 1.5 s of training" \
        in announced[0] and announced[0].endswith("(`coordfit render 'runs/my run'` renders later)")
    quiet = io.StringIO()
    clock = iter([0.0, 0.1, 10.0])
    p = ph.Phases(True, stream=quiet, terminal=False, every=1e9)
    with p.finishing(after=1.5) as report:  # 10 s against 1.5 s of training: under the 10 s floor
        report("render", 1, 100)
        report("render", 100, 100)
    assert "about" not in quiet.getvalue()


# -- item 11: a folder of inputs ---------------------------------------------------------------
def test_a_folder_is_fitted_input_by_input_and_a_rerun_skips_what_is_done(runner, tmp_path, monkeypatch) -> None:
    folder = tmp_path / "photos"
    for i, name in enumerate(("b.png", "a.png", "c.jpg")):
        _write_png(folder / name, seed=i)
    (folder / "notes.txt").write_text("not an image")
    parent = tmp_path / "batch"
    args = ["image", str(folder), "--steps", "6", "--width", "8", "--out", str(parent), "--no-progress"]
    _interrupt_at(monkeypatch, 3)  # the first input is cut short
    res = runner.invoke(app, args)
    assert res.exit_code == 130 and "run the same command again" in res.stderr
    monkeypatch.undo()
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "[1/3]" in res.stdout and "resuming into" in res.stdout and res.stdout.count("fitting into") == 2
    assert all(name in res.stdout for name in ("a ", "b ", "c "))  # the runs table
    for name in ("a", "b", "c"):
        assert json.loads((parent / name / "metrics.json").read_text())["steps"] == 6
    stamp = (parent / "a" / "metrics.json").stat().st_mtime_ns
    res = runner.invoke(app, args)
    assert res.exit_code == 0 and res.stdout.count("done before, skipped") == 3
    assert (parent / "a" / "metrics.json").stat().st_mtime_ns == stamp
    res = runner.invoke(app, [*args, "--lr", "1e-3"])
    assert res.exit_code == 2 and "the settings differ: lr" in res.stderr


def test_shards_split_the_inputs_between_jobs(runner, tmp_path) -> None:
    paths = [str(_write_png(tmp_path / f"{n}.png", seed=i)) for i, n in enumerate("pqrs")]
    parent = tmp_path / "sharded"
    for shard in ("1/2", "2/2"):
        res = runner.invoke(app, ["image", *paths, "--steps", "2", "--width", "8", "--out", str(parent),
                                  "--shard", shard, "--no-progress"])
        assert res.exit_code == 0, res.output
        assert res.stdout.startswith(f"2 of 4 inputs (shard {shard})")
    assert sorted(p.name for p in parent.iterdir() if p.is_dir()) == ["p", "q", "r", "s"]
    res = runner.invoke(app, ["image", paths[0], "--shard", "1/2", "--out", str(tmp_path / "one")])
    assert res.exit_code == 2 and "--shard splits several inputs" in res.stderr


# -- item 10: a shape run writes a picture of its mesh ----------------------------------------
def test_the_preview_rasterises_a_sphere_as_discs(one_thread) -> None:
    from coordfit.signals import mesh_labels as ml
    from coordfit.signals.preview import VIEWS, render_views

    sphere, _, _ = ml.normalise(ml.read_mesh("primitive:sphere"), 0.05)
    image = render_views(sphere, size=128)
    assert image.shape == (128, 128 * len(VIEWS), 3)
    for panel in np.split(image, len(VIEWS), axis=1):
        covered = (panel < 0.99).any(-1).mean()
        assert covered == pytest.approx(np.pi / 4 / 1.08**2, abs=0.02)  # a disc of the panel's width / 1.08
        assert panel[64, 64].max() < 0.99 and panel[2, 2].min() == 1.0  # the middle drawn, a corner left white


def test_a_shape_run_writes_a_preview_of_its_mesh(tmp_path) -> None:
    import imageio.v3 as iio

    r = coordfit.fit("primitive:sphere", "hashgrid", kind="shape", train=TrainConfig(steps=30), out=tmp_path / "s",
                     progress=False, signal_options={"label_resolution": 16, "resolution": 32, "eval_points": 500})
    preview = iio.imread(tmp_path / "s" / "preview.png")
    assert tmp_path / "s" / "preview.png" in r.outputs and preview.shape == (256, 768, 3)
    assert r.metrics["iou"] > 0.8  # about a sphere, so about three discs:
    assert (preview < 250).any(-1).mean() == pytest.approx(np.pi / 4 / 1.08**2, abs=0.1)
    assert "preview" in r.metrics["phase_seconds"]


def test_a_mesh_that_covers_no_pixel_centre_previews_as_white() -> None:
    from coordfit.signals import mesh_labels as ml
    from coordfit.signals.preview import render_views

    flat = ml.MeshData(np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5], [1.0, 1.0, 1.0]]), np.array([[0, 1, 2]]))
    empty = ml.MeshData(np.zeros((0, 3)), np.zeros((0, 3), np.int64))
    assert render_views(flat, size=16).min() == 1.0 and render_views(empty, size=16).min() == 1.0


# -- item 12: what a fresh clone is told and what it ignores ------------------------------------
def test_the_run_and_scene_folders_are_ignored_at_the_top_only() -> None:
    root = Path(__file__).resolve().parents[1]
    lines = (root / ".gitignore").read_text().splitlines()
    assert "/runs/" in lines and "/scenes/" in lines and "runs/" not in lines  # coordfit/runs/ is a package
    readme = (root / "README.md").read_text()
    assert "skip" in readme.split("python -m pytest -q", 1)[1][:800]  # said beside the test command
