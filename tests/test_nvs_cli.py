"""``coordfit nvs`` through typer's CliRunner: scenes -> train -> eval -> bench, and bad input."""

import json
import subprocess
import sys

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
    # resume adds steps to the same folder
    _ok(["train", "--resume", run, "--steps", 4, "--no-progress", "--device", "cpu"])
    assert json.loads((run / "train_state.json").read_text())["step"] == 4


def test_bad_input_gives_one_error_line(tmp_path):
    scenes = tmp_path / "scenes"
    _ok(["scenes", "--count", 1, "--views", 2, "--size", 8, "--out", scenes])
    _bad(["scenes", "--count", 1, "--out", scenes], "not empty")
    _bad(["scenes", "--count", 1, "--layout", "spiral", "--out", tmp_path / "x"], "layout")
    _bad(["train", "--steps", 1], "exactly one of --scenes DIR or --procedural")
    _bad(["train", "--procedural", "-o", "attention=sparse", "--out", tmp_path / "r"], "attention must be one of")
    _bad(["train", "--procedural", "-o", "nope=1", "--out", tmp_path / "r"], "has no option 'nope'")
    _bad(["eval", "--checkpoint", tmp_path / "missing"], "does not exist")
    _bad(["eval", "--checkpoint", tmp_path / "missing", "--device", "cuda"] if torch.cuda.is_available()
         else ["train", "--procedural", "--device", "cuda", "--out", tmp_path / "c"], "CUDA")
    (scenes / "scene_00000.json").write_text('{"frames": [{"image_path": "a.png"}]}')
    _bad(["train", "--scenes", scenes, "--out", tmp_path / "r2"], "has no 'fxfycxcy'")


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
