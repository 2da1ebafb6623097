"""Run folders as a user meets them: names, configs that start a run again, curves.png,
the loggers (TensorBoard when installed), and `coordfit runs`."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import coordfit
from coordfit import TrainConfig
from coordfit.core.errors import CoordfitError
from coordfit.core.io import source_stem
from coordfit.runs.spec import read_config_file
from coordfit.engine.train import Trainer, TrainingInterrupted
from coordfit_cli.main import app

TINY = {"width": 8}
STAMP = r"\d{8}-\d{6}"


def _fit(image: Path, out: Path | None = None, *, root: Path | None = None, steps: int = 4, **kw):
    train = {"steps": steps, "log_every": 2, **kw.pop("train", {})}
    return coordfit.fit(image, kw.pop("model", "coordx"), train=train, out=out, runs_root=root or "runs",
                        progress=False, **{**TINY, **kw})


# -- run folders: the input's name, --name, never reused ---------------------------------------------
@pytest.mark.parametrize("source,stem", [
    ("/data/kodak/kodim01.png", "kodim01"), ("skimage:astronaut", "astronaut"), ("primitive:torus", "torus"),
    ("builtin:waves", "waves"), ("clips/frames/", "frames"), ("my photo (1).tar.gz", "my_photo_1_.tar"),
    ("<array>", "array"), (None, "input"),
])
def test_source_stem(source, stem) -> None:
    assert source_stem(source) == stem


def test_run_folders_are_named_for_the_input_and_never_reused(tmp_path, image_png, one_thread) -> None:
    a = _fit(image_png, root=tmp_path)
    assert a.run_dir.parent == tmp_path / "image" / "coordx" and re.fullmatch(f"small-{STAMP}", a.run_dir.name)
    named = [_fit(image_png, root=tmp_path, name="exp1").run_dir for _ in range(2)]
    assert [p.name for p in named] == ["exp1", "exp1-2"]  # a name reused gets a suffix, the first run is intact
    assert json.loads((named[0] / "metrics.json").read_text())["steps"] == 4
    for bad in ("a/b", "..", ".hidden"):
        with pytest.raises(CoordfitError, match="plain folder name"):
            _fit(image_png, root=tmp_path, name=bad)
    with pytest.raises(CoordfitError, match="pass one of them"):
        _fit(image_png, tmp_path / "o", root=tmp_path, name="x")
    assert sorted(p.name for p in (tmp_path / "image" / "coordx").iterdir()) == sorted([a.run_dir.name, "exp1", "exp1-2"])


# -- config.json records resolved values; --config starts a run again -----------------------------------
def test_config_json_records_every_resolved_value(tmp_path, image_png, one_thread) -> None:
    _fit(image_png, tmp_path / "r")
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    train = cfg["train"]
    assert train["lr"] == coordfit.models.model_entry("coordx").lr
    assert train["grid_batch"] == train["batch_points"] == 4096 and train["precision"] == "fp32"
    assert train["threads"] == 1 and train["logger"] == "none"
    assert cfg["model_config"]["split"] == cfg["split"] == "x+y"  # the signal's default, resolved


def test_a_runs_config_starts_the_same_run_and_explicit_choices_win(tmp_path, image_png, one_thread) -> None:
    import torch

    a = _fit(image_png, tmp_path / "a", steps=5, rank=2, train={"lr": 2e-3, "seed": 3})
    b = coordfit.fit(config=tmp_path / "a" / "config.json", out=tmp_path / "b", progress=False)
    ca, cb = (json.loads((tmp_path / n / "config.json").read_text()) for n in "ab")
    for key in ("model", "model_config", "split", "signal", "train", "source_sha256"):
        assert ca[key] == cb[key], key
    assert b.metrics["psnr"] == pytest.approx(a.metrics["psnr"], abs=1e-6)
    for p, q in zip(a.model.state_dict().values(), b.model.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    # a run folder works as the config, and explicit choices go over it
    c = coordfit.fit(config=tmp_path / "a", out=tmp_path / "c", progress=False, train={"steps": 3}, width=12)
    cc = json.loads((tmp_path / "c" / "config.json").read_text())
    assert cc["train"] == {**ca["train"], "steps": 3} and cc["model_config"] == {**ca["model_config"], "width": 12}
    assert c.metrics["steps"] == 3
    # another model drops the config's model options (they belong to coordx)
    d = coordfit.fit(config=tmp_path / "a", model="siren", out=tmp_path / "d", progress=False, train={"steps": 1})
    assert d.metrics["model"] == "siren" and d.metrics["params"] == coordfit.create_model("siren", a.signal.info).num_params()


def test_yaml_config_with_a_relative_path(tmp_path, image_png, one_thread) -> None:
    pytest.importorskip("yaml", reason="PyYAML is not installed (YAML configs are optional)")
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "img.png").write_bytes(image_png.read_bytes())
    (folder / "fit.yaml").write_text("signal: {kind: image, source: img.png}\nmodel: siren\n"
                                     "model_config: {width: 8}\ntrain: {steps: 3, lr: 0.001}\n")
    r = coordfit.fit(config=folder / "fit.yaml", out=tmp_path / "y", progress=False)
    cfg = json.loads((tmp_path / "y" / "config.json").read_text())
    assert cfg["signal"]["source"] == str(folder / "img.png") and cfg["model_config"]["width"] == 8
    assert r.metrics["steps"] == 3 and cfg["train"]["lr"] == 0.001


def test_yaml_without_pyyaml_is_one_line(tmp_path, monkeypatch) -> None:
    (tmp_path / "fit.yaml").write_text("model: siren\n")
    monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml now fails
    with pytest.raises(CoordfitError, match=r"reading YAML needs PyYAML \(pip install pyyaml\)"):
        read_config_file(tmp_path / "fit.yaml")


@pytest.mark.parametrize("text,message", [
    ('{"model": "siren", "modle_config": {}}', "unknown key.*'modle_config'"),
    ('{"train": {"stepz": 3}}', "training has no option 'stepz'"),
    ('{"train": {"steps": -1}}', "--steps must be positive"),
    ('{"model": 3}', "'model' should be text"),
    ('[1, 2]', "should hold an object"),
    ('{"signal": {"kind": "video"}}', "is a config for coordfit video, not image; start it with: coordfit video --config"),
])
def test_bad_configs_are_one_line(tmp_path, image_png, text, message) -> None:
    (tmp_path / "c.json").write_text(text)
    with pytest.raises(CoordfitError, match=message):
        coordfit.fit(image_png, kind="image", config=tmp_path / "c.json", out=tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()


def test_old_configs_are_read(tmp_path, image_png, one_thread) -> None:
    """Configs written before model_config held the split and before 'target' was named so."""
    _fit(image_png, tmp_path / "a")
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    cfg["model_config"]["split"] = None
    del cfg["model_config"]["shared_bias"]  # before shared_bias existed: fitted with the whole bias
    cfg["train"] = {k: v for k, v in cfg["train"].items() if k not in ("logger", "target")} | {"target_psnr": 99.0}
    (tmp_path / "old.json").write_text(json.dumps(cfg))
    spec = read_config_file(tmp_path / "old.json")
    assert spec.model_options["split"] == "x+y" and spec.train["target"] == 99.0 and "target_psnr" not in spec.train
    assert spec.model_options["shared_bias"] == "whole"
    (tmp_path / "mine.json").write_text(json.dumps({"model": "coordx", "model_config": {"width": 8}}))
    assert "shared_bias" not in read_config_file(tmp_path / "mine.json").model_options  # a hand-written file: today's



def test_cli_config_restarts_a_run_and_only_given_flags_override(runner, tmp_path, image_png, one_thread,
                                                                  monkeypatch) -> None:
    base = ["--width", "8", "--no-progress"]
    res = runner.invoke(app, ["image", str(image_png), "--steps", "4", "--seed", "3", "--alpha", "drop",
                              "--out", str(tmp_path / "a"), *base])
    assert res.exit_code == 0, res.output
    assert "curves.png (loss and quality against steps and seconds)" in " ".join(res.stdout.split())
    ca = json.loads((tmp_path / "a" / "config.json").read_text())
    # the config as it is: the same run (seed 3 and --alpha drop kept, though the flags default to 0 and keep)
    res = runner.invoke(app, ["image", "--config", str(tmp_path / "a" / "config.json"), "--out", str(tmp_path / "b"),
                              "--no-progress"])
    assert res.exit_code == 0, res.output
    cb = json.loads((tmp_path / "b" / "config.json").read_text())
    for key in ("model", "model_config", "signal", "train"):
        assert ca[key] == cb[key], key
    a, b = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in "ab")
    assert b["psnr"] == pytest.approx(a["psnr"], abs=1e-6)
    # flags given win; --name names the folder under runs/
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["image", "--config", str(tmp_path / "a"), "--lr", "0.003", "--seed", "0", "--name", "tuned",
                              "--no-progress"])
    assert res.exit_code == 0, res.output
    cc = json.loads((tmp_path / "runs" / "image" / "coordx" / "tuned" / "config.json").read_text())
    assert cc["train"] == {**ca["train"], "lr": 0.003, "seed": 0} and cc["signal"] == ca["signal"]
    res = runner.invoke(app, ["image", "--resume", str(tmp_path / "a"), "--config", str(tmp_path / "a")])
    assert res.exit_code == 2 and res.stderr.startswith("error: ") and "drop PATH, --out, --name and --config" in res.stderr
    res = runner.invoke(app, ["video", "--config", str(tmp_path / "a")])
    assert res.exit_code == 2 and "is a config for coordfit image, not video" in res.stderr

# -- curves.png and the loggers ----------------------------------------------------------------------
def _panels_drawn(png: Path) -> list[float]:
    """How much each quarter of the figure differs from white (the four panels)."""
    import imageio.v3 as iio

    img = iio.imread(png)[..., :3].astype(np.float32)
    h, w = img.shape[:2]
    quarters = [img[:h // 2, :w // 2], img[:h // 2, w // 2:], img[h // 2:, :w // 2], img[h // 2:, w // 2:]]
    return [float((q < 250).mean()) for q in quarters]


def test_curves_png_has_four_drawn_panels(tmp_path, image_png, one_thread) -> None:
    _fit(image_png, tmp_path / "r", steps=10)
    png = tmp_path / "r" / "curves.png"
    drawn = _panels_drawn(png)
    assert all(d > 0.02 for d in drawn), drawn  # axes, ticks, labels and a curve in every panel
    import imageio.v3 as iio

    img = iio.imread(png)[..., :3].astype(int)
    red = (img[..., 0] > 180) & (img[..., 1] < 80) & (img[..., 2] < 80)  # the loss curves
    blue = (img[..., 2] > 150) & (img[..., 0] < 80)  # the quality curves
    assert red.sum() > 50 and blue.sum() > 50


def _ctrl_c_at_call(n: int, monkeypatch) -> None:
    """Ctrl-C during the ``n``-th training step from now."""
    original, calls = Trainer.train_step, {"n": 0}

    def interrupted(self):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", interrupted)


def test_curves_png_is_written_on_ctrl_c(tmp_path, image_png, one_thread, monkeypatch) -> None:
    _ctrl_c_at_call(7, monkeypatch)
    with pytest.raises(TrainingInterrupted):
        _fit(image_png, tmp_path / "r", steps=50)
    assert all(d > 0.02 for d in _panels_drawn(tmp_path / "r" / "curves.png"))


class _Recorder:
    def __init__(self) -> None:
        self.rows: list[tuple[int, float, dict[str, float]]] = []
        self.events: list[str] = []

    def start(self, step: int) -> None:
        self.events.append(f"start {step}")

    def log(self, step: int, seconds: float, scalars: dict[str, float]) -> None:
        self.rows.append((step, seconds, scalars))

    def close(self) -> None:
        self.events.append("close")


def test_loggers_get_the_log_rows_and_nothing_else(tmp_path, image_png, one_thread) -> None:
    from coordfit.engine.loggers import CsvLog
    from coordfit.signals import ImageSignal

    signal = ImageSignal.load(image_png)
    net = coordfit.create_model("coordx", signal.info, width=8)
    rec = _Recorder()
    Trainer(net, signal, TrainConfig(steps=9, log_every=4), tmp_path, loggers=[CsvLog(tmp_path, "psnr"), rec]).run(
        progress=False)
    rows = list(csv.DictReader((tmp_path / "log.csv").open()))
    assert [s for s, _, _ in rec.rows] == [int(r["step"]) for r in rows] == [4, 8, 9]
    for (_, seconds, scalars), r in zip(rec.rows, rows):
        assert float(r["seconds"]) == pytest.approx(seconds, abs=1e-4)
        assert float(r["psnr"]) == pytest.approx(scalars["psnr"], abs=1e-4) and set(scalars) == {"loss", "psnr"}
    assert rec.events == ["start 0", "close"] and not (tmp_path / "curves.png").exists()


def test_a_failing_logger_warns_and_keeps_the_run(tmp_path, image_png, one_thread, monkeypatch) -> None:
    from coordfit.engine.loggers import CurvesPlot

    def broken(self):
        raise CoordfitError("cannot write curves.png: the disk is full")

    monkeypatch.setattr(CurvesPlot, "close", broken)
    with pytest.warns(UserWarning, match="the disk is full"):
        r = _fit(image_png, tmp_path / "r")
    assert r.metrics["steps"] == 4 and (tmp_path / "r" / "metrics.json").is_file()


def test_tensorboard_absent_is_one_line_and_leaves_nothing(runner, tmp_path, image_png, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(CoordfitError, match=r"--logger tensorboard needs the tensorboard package: pip install"):
        _fit(image_png, tmp_path / "r", train={"logger": "tensorboard"})
    assert not (tmp_path / "r").exists()
    res = runner.invoke(app, ["image", str(image_png), "--logger", "tensorboard", "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    assert res.stderr.startswith("error: --logger tensorboard needs the tensorboard package")
    assert not (tmp_path / "r").exists()
    with pytest.raises(CoordfitError, match="--logger must be one of none, tensorboard"):
        _fit(image_png, tmp_path / "r", train={"logger": "wandb"})


def test_tensorboard_logs_the_rows_and_a_resume_hides_the_killed_tail(tmp_path, image_png, one_thread) -> None:
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install 'coordfit[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _fit(image_png, tmp_path / "r", steps=6, train={"checkpoint_every": 4})
    coordfit.resume(tmp_path / "r", steps=10, logger="tensorboard", progress=False)  # from this session on
    assert [e.step for e in _scalars(tmp_path / "r", "train/psnr")] == [8, 10]
    coordfit.resume(tmp_path / "r", steps=12, progress=False)  # the saved logger stays
    assert json.loads((tmp_path / "r" / "config.json").read_text())["train"]["logger"] == "tensorboard"
    shutil.rmtree(tmp_path / "r")
    _fit(image_png, tmp_path / "r", steps=6, train={"logger": "tensorboard", "checkpoint_every": 4})
    coordfit.resume(tmp_path / "r", steps=10, progress=False)
    events = EventAccumulator(str(tmp_path / "r" / "tensorboard"))
    events.Reload()
    rows = list(csv.DictReader((tmp_path / "r" / "log.csv").open()))
    psnr = events.Scalars("train/psnr")
    assert [e.step for e in psnr] == [int(r["step"]) for r in rows] == [2, 4, 6, 8, 10]
    assert [e.value for e in psnr] == pytest.approx([float(r["psnr"]) for r in rows], abs=1e-3)
    assert {"train/loss", "train/seconds"} <= set(events.Tags()["scalars"])
    # after a kill, a resume from the checkpoint at step 4 hides the rows the killed session logged after it
    from coordfit.engine.loggers import TensorBoardLogger

    for start, steps, value in ((0, range(1, 7), 1.0), (4, range(5, 8), 2.0)):
        tb = TensorBoardLogger(tmp_path / "k")
        tb.start(start)
        for step in steps:
            tb.log(step, 0.1 * step, {"loss": value})
        tb.close()
    events = EventAccumulator(str(tmp_path / "k" / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(s, 1.0) for s in range(1, 5)] + [
        (s, 2.0) for s in range(5, 8)]


def _scalars(run_dir: Path, tag: str) -> list:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return events.Scalars(tag)


# -- coordfit runs -----------------------------------------------------------------------------------
def test_coordfit_runs_tabulates_run_folders(runner, tmp_path, image_png, one_thread) -> None:
    root = tmp_path / "runs"
    a = _fit(image_png, root=root, name="a", model="siren")
    b = _fit(image_png, root=root, name="b", steps=6)
    os.utime(a.run_dir / "metrics.json", (1e9, 1e9))  # a is older
    (root / "nvs" / "lvsm" / "x").mkdir(parents=True)  # a view-synthesis run is skipped with a note
    (root / "nvs" / "lvsm" / "x" / "config.json").write_text('{"model": "lvsm", "steps": 5}')
    (root / "notes").mkdir()  # a folder without run files is not a run and is not mentioned
    res = runner.invoke(app, ["runs", str(root), "--json"])
    assert res.exit_code == 0, res.output
    listed = json.loads(res.stdout)
    assert [Path(r["path"]).name for r in listed["runs"]] == ["b", "a"]  # newest first
    for row, run in zip(listed["runs"], (b, a)):
        m = json.loads((run.run_dir / "metrics.json").read_text())
        assert (row["params"], row["steps"], row["seconds"], row["quality"]) == (
            m["params"], m["steps"], m["train_seconds"], m["psnr"])
        assert row["input"] == "small" and row["model"] == m["model"] and row["state"] == "steps"
    assert listed["runs"][0]["split"] == "x+y" and listed["runs"][1]["split"] is None
    assert [Path(s["path"]).name for s in listed["skipped"]] == ["x"]
    assert "note: skipped" in res.stderr and "no signal and model" in res.stderr
    res = runner.invoke(app, ["runs", str(root)])
    assert res.exit_code == 0
    lines = res.stdout.splitlines()
    assert lines[0].split()[:3] == ["folder", "input", "kind"]
    mb = json.loads((b.run_dir / "metrics.json").read_text())
    assert "image/coordx/b" in lines[1] and f"psnr {mb['psnr']:.4g} dB" in lines[1] and f"{mb['params']:,}" in lines[1]


def test_coordfit_runs_reads_interrupted_and_older_runs(runner, tmp_path, image_png, one_thread, monkeypatch) -> None:
    root = tmp_path / "runs"
    old = _fit(image_png, root=root, name="old").run_dir
    for name in ("curves.png", "checkpoint.json"):  # a run folder of an earlier coordfit
        (old / name).unlink()
    _ctrl_c_at_call(4, monkeypatch)
    with pytest.raises(TrainingInterrupted):
        _fit(image_png, root=root, name="cut", steps=50)
    from coordfit.runs.listing import list_runs

    rows = {Path(r.path).name: r for r in list_runs(root)[0]}
    assert rows["old"].steps == 4 and rows["old"].quality is not None
    assert (rows["cut"].steps, rows["cut"].state, rows["cut"].quality) == (3, "interrupted", None)
    res = runner.invoke(app, ["runs", str(tmp_path / "missing")])
    assert res.exit_code == 2 and res.stderr.startswith("error: ") and "does not exist" in res.stderr
