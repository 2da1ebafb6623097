"""What a user sees around a fit (issue 22): printed commands that run as printed, resume
limits, bad input refused before torch loads, renders of an older checkpoint set aside,
bounded post-training work, folders of inputs, shape previews, the report's wording."""

from __future__ import annotations

import dataclasses
import json
import shlex
import subprocess
import sys
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
