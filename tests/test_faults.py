"""Faults met as a user meets them (issue 10): nothing lost, nothing half-written, no traceback.

Real ``coordfit`` processes are interrupted with Ctrl-C (SIGINT) and ``kill -9``, then
resumed, and must end with exactly the weights of an uninterrupted run. Checkpoints are
torn on purpose, the disk fills up (an injected ``OSError(ENOSPC)``), refused commands
must leave the run folder byte for byte as it was, and every bad input is one
``error:`` line with exit code 2.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import coordfit
from coordfit.core.checkpoint import find_checkpoint, write_checkpoint
from coordfit.core.errors import CoordfitError
from coordfit_cli.main import app
from conftest import smooth_image

pytestmark = pytest.mark.usefixtures("one_thread")

CLI = [sys.executable, "-m", "coordfit_cli"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
FAST = ["--width", "8", "--steps", "10", "--checkpoint-every", "5", "--no-progress", "--device", "cpu"]


# -- helpers -------------------------------------------------------------------------------
def _png(path: Path, h: int = 24, w: int = 32, seed: int = 0) -> Path:
    iio.imwrite(path, (smooth_image(h, w, seed=seed) * 255).round().astype(np.uint8))
    return path


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_error_line(res, *needles: str) -> str:
    assert res.exit_code == 2, f"exit {res.exit_code}: {res.output}"
    err = res.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err, repr(err)
    assert "Traceback" not in res.output
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def _fit(runner, run: Path, png: Path, *extra: str) -> None:
    res = runner.invoke(app, ["image", str(png), "--out", str(run), *FAST, *extra])
    assert res.exit_code == 0, res.output


def _step(run: Path) -> int | None:
    """The step of the run's checkpoint, read without touching the folder."""
    for name in ("checkpoint.json", "train_state.json"):
        try:
            return json.loads((run / name).read_text())["step"]
        except (OSError, ValueError, KeyError):
            continue
    return None


def _signal_at_checkpoint(proc: subprocess.Popen, run: Path, after: int, sig: int) -> int:
    """Send ``sig`` once ``run`` holds a checkpoint past step ``after``; the exit code."""
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if (_step(run) or 0) > after:
                proc.send_signal(sig)
                break
            time.sleep(0.005)
        return proc.wait(timeout=120)
    finally:
        if proc.poll() is None:  # never leave a process behind
            proc.kill()
            proc.wait()


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


def _losses(run: Path) -> dict[int, str]:
    rows = (run / "log.csv").read_bytes().decode().split("\n")
    return {int(r.split(",")[0]): r.split(",")[2] for r in rows[1:] if r}


# -- interrupted by a user, resumed, equal to an uninterrupted run ---------------------------
KINDS = {
    "image": ["image", "{png}"],
    "video": ["video", "builtin:waves", "--resize", "24x16", "--max-frames", "4"],
    "shape": ["shape", "primitive:torus", "--label-resolution", "16", "--resolution", "16", "--eval-points", "100"],
}
LONG = ["--width", "32", "--steps", "240", "--checkpoint-every", "10", "--no-progress", "--device", "cpu"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(KINDS))
def test_ctrl_c_then_kill_9_then_resume_equals_an_uninterrupted_run(kind: str, runner, tmp_path: Path) -> None:
    png = _png(tmp_path / "photo.png", 48, 64)
    args = [a.replace("{png}", str(png)) for a in KINDS[kind]] + LONG
    ref, run = tmp_path / "ref", tmp_path / "run"
    res = runner.invoke(app, [*args, "--out", str(ref)])
    assert res.exit_code == 0, res.output

    # Ctrl-C after the first checkpoint: the step in flight is saved, the hint says how to go on
    proc = subprocess.Popen([*CLI, *args, "--out", str(run)], env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    assert _signal_at_checkpoint(proc, run, 0, signal.SIGINT) == 130
    err = proc.stderr.read().strip()
    assert err.splitlines() == [err] and f"coordfit {kind} --resume {run}" in err, err
    stopped = _step(run)
    assert stopped is not None and 10 <= stopped < 240

    # kill -9 while the resumed run writes checkpoints: nothing to clean up by hand
    proc = subprocess.Popen([*CLI, kind, "--resume", str(run), "--no-progress"], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    code = _signal_at_checkpoint(proc, run, stopped, signal.SIGKILL)
    if code != 0:
        assert code == -signal.SIGKILL
        done = subprocess.run([*CLI, kind, "--resume", str(run), "--no-progress"], env=ENV,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr

    assert _step(run) == 240 and find_checkpoint(run).step == 240
    a, b = _weights(ref), _weights(run)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log = (run / "log.csv").read_bytes()
    assert b"\r" not in log
    ref_losses, losses = _losses(ref), _losses(run)
    assert all(losses[s] == ref_losses[s] for s in ref_losses), (ref_losses, losses)
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]


def test_sigterm_saves_like_ctrl_c(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = [*CLI, "image", str(_png(tmp_path / "p.png", 48, 64)), "--out", str(run), *LONG[:2],
            "--steps", "100000", "--checkpoint-every", "10", "--no-progress", "--device", "cpu"]
    proc = subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert _signal_at_checkpoint(proc, run, 0, signal.SIGTERM) == 130
    assert "--resume" in proc.stderr.read()
    state = json.loads((run / "train_state.json").read_text())
    assert state["stopped_by"] == "interrupted" and state["step"] == _step(run) >= 10


def test_nvs_train_ctrl_c_saves_and_resumes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["nvs", "train", "--procedural", "--size", "16", "--batch-size", "2", "--input-views-min", "2",
            "--input-views-max", "2", "--target-views", "1", "-o", "width=32", "-o", "head_dim=16", "-o", "depth=1",
            "--device", "cpu", "--no-progress"]
    proc = subprocess.Popen([*CLI, *args, "--steps", "100000", "--checkpoint-every", "5", "--out", str(run)],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert _signal_at_checkpoint(proc, run, 0, signal.SIGINT) == 130
    assert "--resume" in proc.stderr.read()
    stopped = find_checkpoint(run).step
    done = subprocess.run([*CLI, "nvs", "train", "--resume", str(run), "--steps", str(stopped + 2), "--no-progress"],
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert find_checkpoint(run).step == stopped + 2


# -- a checkpoint is one unit ------------------------------------------------------------------
def test_torn_checkpoint_is_refused_in_one_line(runner, tmp_path: Path) -> None:
    run = tmp_path / "run"
    _fit(runner, run, _png(tmp_path / "p.png"), "--steps", "5")
    step5 = (run / "model.safetensors").read_bytes()
    assert runner.invoke(app, ["image", "--resume", str(run), "--steps", "10", "--no-progress"]).exit_code == 0
    (run / "model.safetensors").write_bytes(step5)  # weights of step 5 beside the state of step 10
    before = _snapshot(run)
    _one_error_line(runner.invoke(app, ["image", "--resume", str(run), "--steps", "15"]), "torn", "model.safetensors")
    _one_error_line(runner.invoke(app, ["render", str(run)]), "torn")
    assert _snapshot(run) == before
    (run / "train_state.json").write_text((run / "train_state.json").read_text()[:-20])  # cut short
    _one_error_line(runner.invoke(app, ["render", str(run)]), "torn")
    (run / "checkpoint.json").write_text("[]")
    _one_error_line(runner.invoke(app, ["render", str(run)]), "checkpoint.json")


def test_a_run_from_before_checkpoint_records_loads_and_resumes(runner, tmp_path: Path) -> None:
    run = tmp_path / "run"
    _fit(runner, run, _png(tmp_path / "p.png"))
    (run / "checkpoint.json").unlink()  # the layout coordfit wrote before the record
    assert find_checkpoint(run).step == 10
    assert coordfit.load(run).model is not None
    res = runner.invoke(app, ["image", "--resume", str(run), "--steps", "12", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert find_checkpoint(run).step == 12  # the record is back, and verifies
    (run / "checkpoint.json").unlink()
    (run / "train_state.json").write_text('{"step": "twelve"}')
    assert runner.invoke(app, ["render", str(run)]).exit_code == 0  # the weights need no train state
    _one_error_line(runner.invoke(app, ["image", "--resume", str(run), "--steps", "20"]), "step must be a whole")


def test_a_commit_cut_short_is_finished_by_the_next_reader(tmp_path: Path, monkeypatch) -> None:
    import coordfit.core.checkpoint as ck

    run = tmp_path / "run"
    run.mkdir()
    write_checkpoint(run, 1, lambda d: (d / "a.txt").write_text("old a"))
    monkeypatch.setattr(ck, "_roll_forward", lambda run_dir: None)  # crash right after the commit point
    write_checkpoint(run, 2, lambda d: ((d / "a.txt").write_text("new a"), (d / "b.txt").write_text("new b")))
    assert (run / "a.txt").read_text() == "old a" and len(list(run.glob(".checkpoint-pending-*.json"))) == 1
    monkeypatch.undo()
    ckpt = find_checkpoint(run)
    assert ckpt.step == 2 and (run / "a.txt").read_text() == "new a" and (run / "b.txt").read_text() == "new b"
    assert sorted(p.name for p in run.iterdir()) == ["a.txt", "b.txt", "checkpoint.json"]


# -- a full disk ---------------------------------------------------------------------------------
def _disk_full_after(monkeypatch, module, name: str, calls: int) -> None:
    real = getattr(module, name)
    seen = []

    def fake(*args, **kwargs):
        seen.append(1)
        if len(seen) > calls:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(args[-1]))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, fake)


@pytest.mark.parametrize("files_written", [0, 1])  # the disk fills at the weights / at the optimizer state
def test_disk_full_while_resume_saves_keeps_the_last_checkpoint(runner, tmp_path: Path, monkeypatch,
                                                                files_written: int) -> None:
    import coordfit.core.checkpoint as ck

    run = tmp_path / "run"
    _fit(runner, run, _png(tmp_path / "p.png"))
    weights = _weights(run)
    _disk_full_after(monkeypatch, ck, "save_file", files_written)
    res = runner.invoke(app, ["image", "--resume", str(run), "--steps", "20", "--no-progress"])
    _one_error_line(res, "the disk is full", "checkpoint of step 10 is kept")
    monkeypatch.undo()
    assert find_checkpoint(run).step == 10 and all(torch.equal(weights[k], v) for k, v in _weights(run).items())
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]
    res = runner.invoke(app, ["image", "--resume", str(run), "--steps", "20", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert find_checkpoint(run).step == 20 and max(_losses(run)) == 20


def test_disk_full_while_writing_outputs_is_one_line(runner, tmp_path: Path, monkeypatch) -> None:
    import coordfit.signals.image as image

    run = tmp_path / "run"
    _disk_full_after(monkeypatch, image, "_write_png", 0)
    res = runner.invoke(app, ["image", str(_png(tmp_path / "p.png")), "--out", str(run), *FAST])
    _one_error_line(res, "the disk is full", "reconstruction.png")
    monkeypatch.undo()
    assert find_checkpoint(run).step == 10  # the fit is kept: render it when there is room
    assert runner.invoke(app, ["render", str(run)]).exit_code == 0


# -- refused commands change nothing --------------------------------------------------------------
def test_refused_resumes_leave_the_folder_as_it_was(runner, tmp_path: Path) -> None:
    png = _png(tmp_path / "p.png")
    run = tmp_path / "run"
    _fit(runner, run, png)
    before = _snapshot(run)

    def refused(*needles: str, args: tuple[str, ...] = ("--steps", "20")) -> None:
        _one_error_line(runner.invoke(app, ["image", "--resume", str(run), *args, "--no-progress"]), *needles)
        assert _snapshot(run) == before

    refused("already reached 10 steps", args=("--steps", "10"))
    refused("already reached 10 steps", args=("--steps", "3"))
    refused("fitted with model 'coordx'", args=("--steps", "20", "--model", "siren"))
    config = (run / "config.json").read_text()
    for broken, needle in (("[]", "should hold an object"), ("{}", "lacks 'model'"), ("{", "not valid JSON")):
        (run / "config.json").write_text(broken)
        before = _snapshot(run)
        refused(needle)
    cfg = json.loads(config)
    del cfg["signal"]["source"]
    (run / "config.json").write_text(json.dumps(cfg))
    before = _snapshot(run)
    refused("'signal' lacks 'source'")
    (run / "config.json").write_text(config)

    # a hand-edited train state: torn by the record; without one (an older run), checked field by field
    state = json.loads((run / "train_state.json").read_text())
    for field, value, needle in (("rng", "not base64!", "rng is not the base64"), ("step", 2.5, "step must be a whole"),
                                 ("step", "10", "step must be a whole")):
        (run / "train_state.json").write_text(json.dumps({**state, field: value}))
        before = _snapshot(run)
        refused("torn")
        record = (run / "checkpoint.json").read_bytes()
        (run / "checkpoint.json").unlink()
        before = _snapshot(run)
        refused(needle)
        (run / "checkpoint.json").write_bytes(record)
    (run / "train_state.json").write_text(json.dumps(state))


def test_resume_refuses_a_source_of_another_size_and_warns_on_new_content(runner, tmp_path: Path) -> None:
    png = _png(tmp_path / "p.png")
    run = tmp_path / "run"
    _fit(runner, run, png)
    _png(png, 20, 32)
    before = _snapshot(run)
    _one_error_line(runner.invoke(app, ["image", "--resume", str(run), "--steps", "20"]), "no longer matches")
    assert _snapshot(run) == before
    _png(png, 24, 32, seed=1)
    with pytest.warns(UserWarning, match="changed since"):
        res = runner.invoke(app, ["image", "--resume", str(run), "--steps", "12", "--no-progress"])
    assert res.exit_code == 0, res.output


def test_resume_removes_stale_temporaries_and_torn_log_rows(runner, tmp_path: Path) -> None:
    run = tmp_path / "run"
    _fit(runner, run, _png(tmp_path / "p.png"))
    stale = [".model.k2j3h4g5.tmp.safetensors", ".model.abcd1234.safetensors", ".log.x1y2z3w4.tmp.csv", ".tmpab12cd34"]
    for name in stale:
        (run / name).write_bytes(b"half")
    (run / ".checkpoint-staging-q1w2e3r4").mkdir()
    (run / ".checkpoint-staging-q1w2e3r4" / "model.safetensors").write_bytes(b"half")
    (run / "notes.txt").write_text("mine")
    with (run / "log.csv").open("ab") as f:
        f.write(b"15,0.3,0.1,20.0\n1")  # rows past the checkpoint, the last one cut by kill -9
    res = runner.invoke(app, ["image", "--resume", str(run), "--steps", "12", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []
    assert (run / "notes.txt").read_text() == "mine"
    log = (run / "log.csv").read_bytes()
    assert b"\r" not in log and log.endswith(b"\n")
    assert sorted(_losses(run)) == [10, 12]


def test_a_start_that_fails_leaves_out_reusable(runner, tmp_path: Path, monkeypatch) -> None:
    import coordfit.api as api

    png, out = _png(tmp_path / "p.png"), tmp_path / "out"

    def boom(self, progress=None):
        raise CoordfitError("boom before the first checkpoint")

    monkeypatch.setattr(api.Trainer, "run", boom)
    _one_error_line(runner.invoke(app, ["image", str(png), "--out", str(out), *FAST]), "boom")
    assert not out.exists()
    monkeypatch.undo()
    _fit(runner, out, png)
    # after a kill -9 before the first checkpoint nothing can resume: the refusal says so
    (out / "checkpoint.json").unlink()
    for name in ("model.safetensors", "optimizer.safetensors", "train_state.json"):
        (out / name).unlink()
    _one_error_line(runner.invoke(app, ["image", str(png), "--out", str(out), *FAST]), "before its first checkpoint")


# -- bad values taken silently -------------------------------------------------------------------
def test_cmyk_jpeg_is_read_as_rgb(tmp_path: Path) -> None:
    from PIL import Image

    from coordfit.signals.image import read_image

    rgb = (smooth_image(24, 32) * 255).round().astype(np.uint8)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    pixels, depth = read_image(tmp_path / "cmyk.jpg")
    assert pixels.shape == (24, 32, 3) and depth == 8
    assert np.abs(pixels - rgb / 255.0).mean() < 0.03  # JPEG loss, not K read as alpha


def test_every_json_file_is_strict(runner, tmp_path: Path) -> None:
    run = tmp_path / "run"
    iio.imwrite(tmp_path / "tiny.png", np.full((2, 2, 3), 90, np.uint8))
    _fit(runner, run, tmp_path / "tiny.png")

    def strict(constant: str):
        raise ValueError(f"{constant} in strict JSON")

    for path in run.glob("*.json"):
        json.loads(path.read_text(), parse_constant=strict)
    assert json.loads((run / "metrics.json").read_text())["ssim"] is None  # no 7x7 window fits 2x2


def test_garbage_stl_is_refused_with_a_line_about_the_file(runner, tmp_path: Path) -> None:
    (tmp_path / "bad.stl").write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    err = _one_error_line(runner.invoke(app, ["shape", str(tmp_path / "bad.stl"), "--steps", "1"]), "bad.stl")
    assert "not an STL file" in err and "charset" not in err


# -- one line, not a box ---------------------------------------------------------------------------
USAGE_ERRORS = {
    "not a number": ["image", "--steps", "abc"],
    "unknown command": ["imgae"],
    "unknown option": ["image", "--stepz", "3"],
    "missing argument": ["render"],
    "missing option value": ["image", "--steps"],
    "unknown subcommand option": ["report", "merge", "--bogus"],
    "nvs: not a number": ["nvs", "train", "--steps", "x"],
}


def test_usage_errors_are_one_line_with_a_help_hint(runner) -> None:
    for what, args in USAGE_ERRORS.items():
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (what, res.output)
        err = res.stderr.strip()
        assert err.startswith("error: ") and "\n" not in err and "--help" in err, (what, err)
    res = runner.invoke(app, [])
    assert res.exit_code == 0 and "image" in res.stdout and "render" in res.stdout


def test_usage_error_in_a_real_process() -> None:
    res = subprocess.run([*CLI, "image", "--steps", "abc"], env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and res.stderr.startswith("error: ")
    assert "--steps" in res.stderr and "image --help" in res.stderr


@pytest.mark.parametrize("error", [MemoryError(), RuntimeError("DefaultCPUAllocator: can't allocate memory: "
                                                                  "you tried to allocate 640000000000 bytes")])
def test_out_of_memory_is_one_line(runner, tmp_path: Path, monkeypatch, error: Exception) -> None:
    import coordfit.api as api

    def too_big(*args, **kwargs):  # what --width 400000 meets, without asking the machine for 640 GB
        raise error

    monkeypatch.setattr(api, "create_model", too_big)
    res = runner.invoke(app, ["image", str(_png(tmp_path / "p.png")), "--width", "400000", *FAST[2:]])
    _one_error_line(res, "out of memory")


def test_every_bad_value_is_one_line(runner, tmp_path: Path) -> None:
    png = _png(tmp_path / "p.png")
    run, video = tmp_path / "run", tmp_path / "video"
    _fit(runner, run, png)
    res = runner.invoke(app, ["video", "builtin:waves", "--resize", "8x8", "--max-frames", "2", "--out", str(video), *FAST])
    assert res.exit_code == 0, res.output
    (tmp_path / "file").write_text("a file")
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "suite.json").write_text("[]")
    (tmp_path / "report2").mkdir()
    (tmp_path / "report2" / "suite.json").write_text('{"suite": 5}')
    fit = ["image", str(png), "--steps", "2", "--no-progress"]
    cases = {
        "--out under a file": (fit + ["--out", str(tmp_path / "file" / "x")], "a parent of it is a file"),
        "--lr nan": (fit + ["--lr", "nan"], "--lr must be a finite number"),
        "--time-budget inf": (fit + ["--time-budget", "inf"], "finite"),
        "--target-psnr nan": (fit + ["--target-psnr", "nan"], "finite"),
        "-o w0=nan": (fit + ["--model", "siren", "-o", "w0=nan"], "finite"),
        "-o width=1e999": (fit + ["-o", "width=1e999"], "finite"),
        "--seed past 64 bits": (fit + ["--seed", str(2**70)], "out of range"),
        "render --scale inf": (["render", str(run), "--scale", "inf"], "finite"),
        "render past memory": (["render", str(run), "--size", "4000000x4000000"], "GiB of memory"),
        "video --fps nan": (["video", "builtin:waves", "--fps", "nan", "--steps", "1"], "finite"),
        "render --fps 1e308": (["render", str(video), "--fps", "1e308"], "--fps must be in (0, 1000]"),
        "report --seconds nan": (["report", "--seconds", "nan", "--out", str(tmp_path / "r")], "finite"),
        "report --threads -1": (["report", "--threads", "-1", "--out", str(tmp_path / "r")], "--threads"),
        "merge of a list suite.json": (["report", "merge", str(tmp_path / "report"), "--out", str(tmp_path / "m")],
                                       "the file should be an object"),
        "merge of a bad suite": (["report", "merge", str(tmp_path / "report2"), "--out", str(tmp_path / "m")],
                                 "suite should be an object"),
    }
    if Path("/proc").is_dir():
        cases["--out in /proc"] = (fit + ["--out", "/proc/coordfit-x"], "cannot create the folder")
    for what, (args, needle) in cases.items():
        res = runner.invoke(app, args)
        try:
            _one_error_line(res, needle)
        except AssertionError as exc:
            raise AssertionError(f"{what}: {exc}") from None
    assert not (tmp_path / "m").exists() and not (tmp_path / "r").exists()


def test_render_checks_out_and_its_numbers_before_any_work(runner, tmp_path: Path, monkeypatch) -> None:
    import coordfit.signals.image as image

    run = tmp_path / "run"
    _fit(runner, run, _png(tmp_path / "p.png"))
    (tmp_path / "file").write_text("a file")
    (tmp_path / "folder").mkdir()
    before = _snapshot(tmp_path)

    def no_work(*args, **kwargs):
        raise AssertionError("rendered before the options were checked")

    monkeypatch.setattr(image, "render_image", no_work)
    cases = {
        "--out x.txt": (["--out", str(tmp_path / "x.txt")], "renders a .png file"),
        "--out a folder": (["--out", str(tmp_path / "folder")], "is a folder"),
        "--out under a file": (["--out", str(tmp_path / "file" / "x.png")], "is a file, not a folder"),
        "--out a file without .png": (["--out", str(tmp_path / "file")], "renders a .png file"),
        "--scale 0": (["--scale", "0"], "--scale must be a positive number"),
        "--scale -1": (["--scale", "-1"], "--scale must be a positive number"),
        "--scale nan": (["--scale", "nan"], "finite"),
        "--resolution 0": (["--resolution", "0"], "--resolution must be a positive number"),
        "--frames -1": (["--frames", "-1"], "--frames must be a positive number"),
        "--fps inf": (["--fps", "inf"], "finite"),
        "--size 5x5x5x5": (["--size", "5x5x5x5"], "must be WxH"),
        "--size 0x5": (["--size", "0x5"], "positive"),
        "--scale text": (["--scale", "abc"], "--scale"),
    }
    for what, (args, needle) in cases.items():
        res = runner.invoke(app, ["render", str(run), *args])
        try:
            _one_error_line(res, needle)
        except AssertionError as exc:
            raise AssertionError(f"{what}: {exc}") from None
    assert _snapshot(tmp_path) == before  # nothing written, nothing half-written


def test_runs_skips_a_run_whose_metrics_hold_the_wrong_types(runner, tmp_path: Path) -> None:
    png = _png(tmp_path / "p.png")
    _fit(runner, tmp_path / "runs" / "good", png)
    shutil.copytree(tmp_path / "runs" / "good", tmp_path / "runs" / "bad")
    metrics = json.loads((tmp_path / "runs" / "bad" / "metrics.json").read_text())
    (tmp_path / "runs" / "bad" / "metrics.json").write_text(json.dumps({**metrics, "params": [1], "psnr": "x"}))
    res = runner.invoke(app, ["runs", str(tmp_path / "runs")])
    assert res.exit_code == 0 and "Traceback" not in res.output, res.output
    assert "skipped" in res.stderr and "bad" in res.stderr and "params" in res.stderr
    assert "good" in res.stdout and f"{metrics['params']:,}" in res.stdout
