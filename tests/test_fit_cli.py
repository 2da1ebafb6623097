"""The fitting commands' shared flags: first-run limits, --target and its alias, --threads,
--precision, non-finite numbers, progress lines off a terminal."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from coordfit.core.device import DEFAULTS
from coordfit_cli.main import app


@pytest.fixture
def short_first_run(monkeypatch):
    """The CPU's first-run budget cut to half a second, so a no-limit run is quick."""
    monkeypatch.setitem(DEFAULTS, "cpu", dataclasses.replace(DEFAULTS["cpu"], first_run_seconds=0.5))


def test_a_run_without_limits_says_them_and_how_to_go_further(runner, image_png: Path, tmp_path: Path,
                                                               short_first_run) -> None:
    out = tmp_path / "r"
    res = runner.invoke(app, ["image", str(image_png), "--out", str(out), "--width", "8", "--device", "cpu",
                              "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "no --steps or --time-budget: trained 2000 steps or 0.5 s, whichever came first" in res.stdout
    assert f"coordfit image --resume {out} --time-budget 120" in res.stdout and "--model hashgrid" in res.stdout
    train = json.loads((out / "config.json").read_text())["train"]
    assert train["steps"] == 2000 and train["time_budget"] == 0.5
    assert json.loads((out / "metrics.json").read_text())["stopped_by"] == "time_budget"
    res = runner.invoke(app, ["image", "--resume", str(out), "--steps", "2500", "--no-progress"])
    assert res.exit_code == 0 and "go further" not in res.stdout


def test_target_psnr_is_an_alias_of_target_and_flags_reach_the_config(runner, image_png: Path, tmp_path: Path) -> None:
    for flag, out in (("--target", tmp_path / "a"), ("--target-psnr", tmp_path / "b")):
        res = runner.invoke(app, ["image", str(image_png), "--out", str(out), "--steps", "3", "--width", "8",
                                  flag, "99", "--threads", "1", "--precision", "fp32", "--no-progress"])
        assert res.exit_code == 0, res.output
        train = json.loads((out / "config.json").read_text())["train"]
        assert train["target"] == 99.0 and train["threads"] == 1 and train["precision"] == "fp32"
    res = runner.invoke(app, ["shape", "--help"], env={"COLUMNS": "300"})
    assert "IOU reaches this (0-1)" in res.stdout and "--field" in res.stdout
    res = runner.invoke(app, ["video", "--help"], env={"COLUMNS": "300"})
    assert "PSNR reaches this (dB)" in res.stdout and "--threads" in res.stdout


@pytest.mark.parametrize("args,message", [
    (["--lr", "nan"], "--lr must be a finite number"),
    (["--target", "inf"], "--target must be a finite number"),
    (["--time-budget", "inf"], "--time-budget must be a finite number"),
    (["--threads", "0"], "--threads must be positive"),
    (["--precision", "fp8"], "--precision must be one of auto, fp32, tf32, bf16"),
])
def test_bad_numbers_are_one_line(runner, image_png: Path, tmp_path: Path, args, message) -> None:
    res = runner.invoke(app, ["image", str(image_png), "--out", str(tmp_path / "x"), *args])
    assert res.exit_code == 2, res.output
    assert res.stderr.strip().startswith("error: ") and message in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "x").exists()


def test_progress_off_a_terminal_prints_plain_lines(runner, image_png: Path, tmp_path: Path, monkeypatch) -> None:
    from coordfit.core import progress

    monkeypatch.setattr(progress.Progress, "__init__", _every(progress.Progress.__init__, 0.0))
    res = runner.invoke(app, ["image", str(image_png), "--out", str(tmp_path / "p"), "--steps", "4", "--width", "8"])
    assert res.exit_code == 0, res.output
    lines = [line for line in res.stderr.splitlines() if line.startswith("fit ")]
    assert lines and lines[-1].startswith("fit  100%  step 4/4") and "psnr" in lines[-1] and "dB" in lines[-1]


def _every(init, seconds: float):
    def patched(self, *args, **kwargs):
        init(self, *args, **{**kwargs, "every": seconds})
    return patched
