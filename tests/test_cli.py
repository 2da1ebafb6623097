"""The CLI through typer's CliRunner, once as a real subprocess, and every bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from coordfit_cli.main import app

FAST = ["--steps", "3", "--width", "8", "--no-progress"]


def test_image_then_render(runner, image_png: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = runner.invoke(app, ["image", str(image_png), "--out", str(out), *FAST, "-o", "fusion=sum"])
    assert res.exit_code == 0, res.output
    assert "psnr" in res.stdout and str(out) in res.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "coordx" and metrics["steps"] == 3
    assert json.loads((out / "config.json").read_text())["model_config"]["fusion"] == "sum"
    res = runner.invoke(app, ["render", str(out), "--size", "64x40", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert iio.imread(out / "render_64x40.png").shape == (40, 64, 3)


def test_models_and_presets_list_the_registry(runner) -> None:
    import coordfit

    res = runner.invoke(app, ["models"])
    assert res.exit_code == 0
    for name in coordfit.list_models():
        assert name in res.stdout
    res = runner.invoke(app, ["presets"])
    assert res.exit_code == 0 and "coordx-image" in res.stdout


def test_preset_and_resume(runner, image_png: Path, tmp_path: Path) -> None:
    out = tmp_path / "p"
    res = runner.invoke(app, ["image", str(image_png), "--preset", "siren-image", "--out", str(out), *FAST])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "metrics.json").read_text())["model"] == "siren"
    res = runner.invoke(app, ["image", "--resume", str(out), "--steps", "5", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "metrics.json").read_text())["steps"] == 5


def _bad_inputs(tmp: Path, good: Path) -> dict[str, list[str]]:
    (tmp / "notimage.png").write_text("hello, not a png\n" * 10)
    data = good.read_bytes()
    (tmp / "cut.png").write_bytes(data[: len(data) // 2])
    iio.imwrite(tmp / "one.png", np.zeros((1, 1, 3), np.uint8))
    (tmp / "full").mkdir()
    (tmp / "full" / "keep.txt").write_text("keep me")
    return {
        "missing file": ["image", str(tmp / "nope.png")],
        "not an image": ["image", str(tmp / "notimage.png")],
        "truncated image": ["image", str(tmp / "cut.png")],
        "1-pixel image": ["image", str(tmp / "one.png")],
        "unknown model": ["image", str(good), "--model", "transformer"],
        "split names a missing axis": ["image", str(good), "--split", "x+t"],
        "split names an axis twice": ["image", str(good), "--split", "x+x"],
        "non-positive steps": ["image", str(good), "--steps", "0"],
        "non-positive width": ["image", str(good), "--width", "0"],
        "negative width": ["image", str(good), "--width", "-8"],
        "out is not empty": ["image", str(good), "--out", str(tmp / "full")],
        "bad option": ["image", str(good), "-o", "nonsense"],
        "unknown option key": ["image", str(good), "-o", "depthh=3"],
        "split for unsplit model": ["image", str(good), "--model", "siren", "--split", "x+y"],
        "unknown device": ["image", str(good), "--device", "tpu"],
        "render of no run": ["render", str(tmp / "full")],
        "render of a missing folder": ["render", str(tmp / "nowhere")],
        "bad render size": ["render", str(tmp / "full"), "--size", "big"],
        "resume of no run": ["image", "--resume", str(tmp / "full")],
    }


def test_every_bad_input_is_one_line_exit_2(runner, image_png: Path, tmp_path: Path) -> None:
    bad = _bad_inputs(tmp_path, image_png)
    for what, args in bad.items():
        res = runner.invoke(app, args + ["--no-progress"] if args[0] == "image" else args)
        assert res.exit_code == 2, f"{what}: exit {res.exit_code}\n{res.output}"
        err = res.stderr.strip()
        assert err.startswith("error:") and "\n" not in err, f"{what}: {err!r}"
        assert "Traceback" not in res.output and res.exception is None or isinstance(res.exception, SystemExit), what
    # nothing lost: the non-empty folder is untouched
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]


def test_checkpoint_from_another_model_via_cli(runner, image_png: Path, tmp_path: Path) -> None:
    for model in ("siren", "coordx"):
        res = runner.invoke(app, ["image", str(image_png), "--model", model, "--out", str(tmp_path / model), *FAST])
        assert res.exit_code == 0, res.output
    shutil.copy(tmp_path / "coordx" / "model.safetensors", tmp_path / "siren" / "model.safetensors")
    res = runner.invoke(app, ["render", str(tmp_path / "siren")])
    assert res.exit_code == 2 and "is torn: model.safetensors" in res.stderr
    (tmp_path / "siren" / "checkpoint.json").unlink()  # as a run from before checkpoint.json
    res = runner.invoke(app, ["render", str(tmp_path / "siren")])
    assert res.exit_code == 2 and "not 'siren'" in res.stderr
    res = runner.invoke(app, ["image", "--resume", str(tmp_path / "coordx"), "--model", "siren", "--steps", "9"])
    assert res.exit_code == 2 and "fitted with model 'coordx'" in res.stderr


def test_real_subprocess(image_png: Path, tmp_path: Path) -> None:
    exe = shutil.which("coordfit")
    cmd = [exe] if exe else [sys.executable, "-m", "coordfit_cli"]
    out = tmp_path / "sub"
    proc = subprocess.run(cmd + ["image", str(image_png), "--out", str(out), *FAST], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (out / "reconstruction.png").is_file()
    proc = subprocess.run(cmd + ["image", str(tmp_path / "missing.png")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_help_is_clear(runner) -> None:
    res = runner.invoke(app, ["image", "--help"])
    assert res.exit_code == 0
    for flag in ("--model", "--split", "--steps", "--time-budget", "--target", "--resume", "--device", "--out"):
        assert flag in res.stdout


def test_backend_flag_reaches_grid_models_and_is_refused_elsewhere(runner, image_png: Path, tmp_path: Path) -> None:
    import warnings

    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        res = runner.invoke(app, ["image", str(image_png), "--model", "hashgrid", "--backend", "tcnn",
                                  "--out", str(tmp_path / "h"), "--steps", "2", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "h" / "config.json").read_text())["model_config"]["backend"] == "tcnn"
    res = runner.invoke(app, ["image", str(image_png), "--backend", "tcnn", "--steps", "2"])
    assert res.exit_code == 2 and "no option 'backend'" in res.stderr
