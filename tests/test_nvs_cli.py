"""``coordfit nvs`` through typer's CliRunner: scenes -> train -> eval -> bench, and bad input."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from typer.testing import CliRunner

try:
    from coordfit_cli.nvs import nvs_app
except ImportError:  # running from a checkout without `pip install -e .`
    from cli.nvs import nvs_app

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_thread")


def _ok(args):
    res = runner.invoke(nvs_app, [str(a) for a in args])
    assert res.exit_code == 0, res.output + repr(res.exception)
    return res.output


def _bad(args, message):
    res = runner.invoke(nvs_app, [str(a) for a in args])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], res.output
    assert "Traceback" not in res.output
    return lines[0]


def test_scenes_train_eval_round_trip(tmp_path):
    scenes = tmp_path / "scenes"
    _ok(["scenes", "--count", 2, "--views", 3, "--size", 16, "--out", scenes])
    assert len(list(scenes.glob("*.json"))) == 2
    run = tmp_path / "run"
    _ok(["train", "--scenes", scenes, "--steps", 3, "--batch-size", 2, "--size", 16,
         "--input-views-min", 2, "--input-views-max", 2, "--target-views", 1,
         "-o", "width=32", "-o", "head_dim=16", "-o", "depth=1", "--out", run, "--no-progress", "--device", "cpu"])
    assert json.loads((run / "train_state.json").read_text())["step"] == 3
    out = _ok(["eval", "--checkpoint", run, "--scenes", scenes, "--input-views", 2, "--device", "cpu",
               "--json", tmp_path / "scores.json"])
    assert "nearest_view" in out and "mean_of_inputs" in out
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert scores["scenes"] == 2 and 0 < scores["model"]["psnr"] < 60
    # resume adds steps to the same folder; off a terminal progress is plain lines, the last one at the end
    out = _ok(["train", "--resume", run, "--steps", 4, "--device", "cpu"])
    last = [line for line in out.splitlines() if line.startswith("train efficient-lvsm")][-1].split()
    assert last[2:5] == ["100%", "step", "4/4"] and "loss" in last and "psnr" in last, out
    assert json.loads((run / "train_state.json").read_text())["step"] == 4
    # it ends with what it reached and what to run next; its log, curves and metrics are the fits' files
    assert "final_batch_psnr" in out and f"coordfit nvs eval --checkpoint {run}" in out, out
    assert all((run / name).is_file() for name in ("log.csv", "curves.png", "metrics.json"))
    assert json.loads((run / "metrics.json").read_text())["steps"] == 4
    from coordfit_cli.main import app  # coordfit runs lists it beside the fits

    res = runner.invoke(app, ["runs", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    (row,) = json.loads(res.stdout)["runs"]
    assert (row["kind"], row["model"], row["input"], row["steps"], row["state"]) == ("nvs", "efficient-lvsm", "scenes",
                                                                                      4, "steps")
    assert row["quality_name"] == "final_batch_psnr" and row["quality"] > 0


def _tiny_run(tmp_path, steps=2, *extra):
    run = tmp_path / "run"
    _ok(["train", "--procedural", "--steps", steps, "--batch-size", 1, "--size", 8, "--input-views-min", 1,
         "--input-views-max", 1, "--target-views", 1, "-o", "width=16", "-o", "head_dim=8", "-o", "depth=1",
         "--workers", 0, "--out", run, "--no-progress", "--device", "cpu", *extra])
    return run


def test_bad_input_gives_one_error_line(tmp_path):
    scenes = tmp_path / "scenes"
    _ok(["scenes", "--count", 1, "--views", 2, "--size", 8, "--out", scenes])
    _bad(["scenes", "--count", 1, "--out", scenes], "not empty")
    _bad(["scenes", "--count", 1, "--layout", "spiral", "--out", tmp_path / "x"], "layout")
    _bad(["scenes", "--count", 0, "--out", tmp_path / "x"], "--count must be a positive integer")
    _bad(["scenes", "--seed", -1, "--out", tmp_path / "x"], "--seed must be")
    _bad(["train", "--steps", 1], "exactly one of --scenes DIR or --procedural")
    _bad(["train", "--procedural", "-o", "attention=sparse", "--out", tmp_path / "r"], "attention must be one of")
    _bad(["train", "--procedural", "-o", "nope=1", "--out", tmp_path / "r"], "has no option 'nope'")
    _bad(["train", "--procedural", "-o", "width=abc", "--out", tmp_path / "r"], "width='abc' must be int")
    _bad(["train", "--procedural", "-o", "quadtree_topk=0", "--out", tmp_path / "r"], "a list of integers")
    for flag, value, message in [("--steps", 0, "--steps must be a positive integer"),
                                 ("--lr", -1, "--lr must be a finite number > 0"), ("--lr", "nan", "--lr must be"),
                                 ("--batch-size", 0, "--batch-size"), ("--warmup", -1, "--warmup"),
                                 ("--size", 30, "not divisible by patch 4"), ("--input-views-min", 0, "input views"),
                                 ("--target-views", 0, "--target-views"), ("--ssim-weight", -1, "--ssim-weight"),
                                 ("--seed", 500, "held-out"), ("--checkpoint-every", 0, "--checkpoint-every"),
                                 ("--log-every", 0, "--log-every"), ("--workers", -1, "--workers"),
                                 ("--threads", 0, "--threads"), ("--device", "tpu", "unknown device")]:
        _bad(["train", "--procedural", flag, value, "--out", tmp_path / "r"], message)
    assert not (tmp_path / "r").exists()  # refused before anything was written
    # the checkpoint is checked before the device, so a missing one is reported as such on any machine
    _bad(["eval", "--checkpoint", tmp_path / "missing"], "does not exist")
    _bad(["eval", "--checkpoint", tmp_path / "missing", "--device", "cuda"], "does not exist")
    _bad(["train", "--resume", tmp_path / "missing", "--device", "cuda"], "not a view-synthesis run folder")
    _bad(["train", "--scenes", tmp_path / "missing", "--device", "cuda", "--out", tmp_path / "r"], "does not exist")
    if not torch.cuda.is_available():
        _bad(["train", "--procedural", "--device", "cuda", "--out", tmp_path / "c"], "CUDA is not available")
    for flag, value, message in [("--count", 0, "--count"), ("--views", 0, "views must be at least 1"),
                                 ("--input-views", 2, "more than 2 views"), ("--input-views", 0, "--input-views must be"),
                                 ("--threads", -2, "--threads")]:
        _bad(["eval", "--views", 2, flag, value], message)
    for flag, value, message in [("--repeats", 0, "--repeats"), ("--width", 30, "not a multiple of head_dim"),
                                 ("--views", 0, "--views"), ("--tokens", 2, "--tokens"), ("--depth", 0, "--depth")]:
        _bad(["bench", flag, value, "--out", tmp_path / "b.json"], message)
    (tmp_path / "afile").write_text("")  # outputs are checked before the work, not after it
    _bad(["eval", "--count", 1, "--json", tmp_path / "afile" / "s.json"], "afile is a file")
    _bad(["bench", "--out", tmp_path / "afile" / "b.json"], "afile is a file")
    (tmp_path / "torn").mkdir()
    (tmp_path / "torn" / "config.json").write_text("{bad")
    assert _bad(["train", "--resume", tmp_path / "torn"], "config.json is not valid JSON").count("config.json") == 1
    (scenes / "scene_00000.json").write_text('{"frames": [{"image_path": "a.png"}]}')
    _bad(["train", "--scenes", scenes, "--out", tmp_path / "r2"], "has no 'fxfycxcy'")


def test_resume_refusals_leave_the_run_as_it_was(tmp_path):
    run = _tiny_run(tmp_path)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    _bad(["train", "--resume", run, "--steps", 1], "already reached 2 steps; pass --steps larger")
    _bad(["train", "--resume", run], "already reached 2 steps")
    _bad(["train", "--resume", run, "--steps", 5, "--lr", 1, "-o", "width=8"], "cannot change --lr, -o")
    _bad(["train", "--resume", run, "--steps", 5, "--device", "tpu"], "unknown device")
    _bad(["train", "--resume", tmp_path / "nowhere", "--steps", 5], "not a view-synthesis run folder")
    (run / "model.json").write_text("[]")  # every file nvs reads back is checked
    before["model.json"] = b"[]"
    _bad(["train", "--resume", run, "--steps", 5], "is torn: model.json")  # against checkpoint.json
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    loose = tmp_path / "loose"  # weights outside a run folder: only the JSON beside them describes them
    loose.mkdir()
    shutil.copy(run / "model.safetensors", loose / "m.safetensors")
    (loose / "m.json").write_text('{"model": "efficient-lvsm", "config": [16]}')
    _bad(["eval", "--checkpoint", loose / "m.safetensors", "--count", 1], "not a model description")


def test_ctrl_c_saves_and_says_how_to_continue(tmp_path, monkeypatch):
    from coordfit.engine import nvs_train

    step, calls = nvs_train._step, []

    def ctrl_c_in_step_3(*args):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)  # acted on at the step's end
        return step(*args)

    monkeypatch.setattr(nvs_train, "_step", ctrl_c_in_step_3)
    run = tmp_path / "run"
    res = runner.invoke(nvs_app, [str(a) for a in ["train", "--procedural", "--steps", 6, "--log-every", 2,
                                                   "--batch-size", 1, "--size", 8, "--input-views-min", 1,
                                                   "--input-views-max", 1, "--target-views", 1, "-o", "width=16",
                                                   "-o", "head_dim=8", "-o", "depth=1", "--workers", 0,
                                                   "--out", run, "--no-progress", "--device", "cpu"]])
    assert res.exit_code == 130, res.output
    assert res.output.splitlines()[-1] == (f"interrupted at step 3; checkpoint saved in {run}; "
                                           f"continue with: coordfit nvs train --resume {run}")
    assert json.loads((run / "train_state.json").read_text())["step"] == 3
    monkeypatch.undo()
    _ok(["train", "--resume", run, "--device", "cpu", "--no-progress"])
    assert json.loads((run / "train_state.json").read_text())["step"] == 6


def test_every_option_has_help_that_survives_rich_markup():
    import typer.main

    group = typer.main.get_command(nvs_app)
    for name, command in group.commands.items():
        for param in command.params:
            if param.name != "help":
                assert param.help, f"nvs {name} {param.name} has no help"
    res = runner.invoke(nvs_app, ["train", "--help"], env={"COLUMNS": "200"}, terminal_width=200)
    text = " ".join(res.output.split())
    assert "Total optimiser steps (on --resume: the new total) (default: 2,000)." in text, text


def test_bench_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    text = _ok(["bench", "--views", 2, "--tokens", 64, "--width", 32, "--head-dim", 16, "--depth", 1,
                "--targets", 2, "--repeats", 1, "--no-isolate", "--device", "cpu", "--out", out])
    assert "| input views |" in text
    result = json.loads(out.read_text())
    assert [r["views"] for r in result["inference"]] == [2]
    assert {r["kind"] for r in result["attention"]} == {"full", "full-matrix", "quadtree-a", "quadtree-b"}
    assert all(r["ms"] > 0 for r in result["attention"])
    _bad(["bench", "--out", out], "exists")  # results are never overwritten


def test_cli_as_a_real_subprocess(tmp_path):
    code = ("import sys\ntry:\n from coordfit_cli.nvs import nvs_app\nexcept ImportError:\n from cli.nvs import nvs_app\n"
            "nvs_app()")
    res = subprocess.run([sys.executable, "-c", code, "scenes", "--count", "1", "--views", "2", "--size", "8",
                          "--out", str(tmp_path / "s")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    res = subprocess.run([sys.executable, "-c", code, "eval", "--scenes", str(tmp_path / "nowhere"),
                          "--checkpoint", str(tmp_path / "s")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stderr.startswith("error: ") and "Traceback" not in res.stderr


def test_kill_9_then_resume_ends_as_an_uninterrupted_run(tmp_path):
    """A real process killed at once after a checkpoint; resumed, it ends with the weights
    and log of a run never interrupted (the log loses the lines after the checkpoint)."""
    from safetensors.torch import load_file

    from coordfit.core.checkpoint import find_checkpoint

    args = ["train", "--procedural", "--steps", 60, "--batch-size", 1, "--size", 8, "--input-views-min", 1,
            "--input-views-max", 1, "--target-views", 1, "-o", "width=16", "-o", "head_dim=8", "-o", "depth=1",
            "--checkpoint-every", 4, "--log-every", 2, "--workers", 1, "--no-progress", "--device", "cpu"]
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "coordfit_cli", "nvs", *map(str, args), "--out", str(killed)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline and find_checkpoint(killed) is None:
            time.sleep(0.005)
        proc.kill()
        assert proc.wait(timeout=60) == -signal.SIGKILL, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stopped = find_checkpoint(killed).step
    assert 4 <= stopped < 60
    _ok(["train", "--resume", killed, "--no-progress"])
    _ok([*args, "--out", whole])
    a, b = load_file(str(killed / "model.safetensors")), load_file(str(whole / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = [[tuple(line.split(",")[::2]) for line in (run / "log.csv").read_text().splitlines()[1:]]  # step, loss
            for run in (killed, whole)]
    assert rows[0] == rows[1] and len(rows[0]) == 30  # checkpoints fall on log steps: the same means
