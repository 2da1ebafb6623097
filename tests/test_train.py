"""The fitting loop: PSNR floors, stop conditions, checkpoints, resume, Ctrl-C."""

from __future__ import annotations

import csv
import json

import pytest
import torch

import coordfit
from coordfit import TrainConfig
from coordfit.errors import CoordfitError
from coordfit.signals import ImageSignal
from coordfit.train import Trainer, TrainingInterrupted

from conftest import smooth_image


@pytest.fixture
def signal() -> ImageSignal:
    return ImageSignal(smooth_image())


@pytest.mark.parametrize(
    "model,options,floor",
    [
        ("coordx", {}, 22.0),
        ("siren", {}, 22.0),
        ("coordx", {"activation": "relu", "encoding": "nerf"}, 30.0),
        ("pe-mlp", {}, 35.0),
    ],
)
def test_small_image_fit_crosses_psnr_floor(signal, model, options, floor) -> None:
    lr = 1e-3 if model == "pe-mlp" or options.get("activation") == "relu" else 1e-4
    r = coordfit.fit(signal, model, train=TrainConfig(steps=150, lr=lr), save=False, progress=False, width=64, **options)
    assert r.metrics["psnr"] > floor, r.metrics
    assert r.metrics["steps"] == 150


def test_training_lowers_the_loss(signal) -> None:
    torch.manual_seed(0)
    net = coordfit.create_model("coordx", signal.info, width=32)
    before = ImageSignal(smooth_image()).evaluate(net)["psnr"]
    Trainer(net, signal, TrainConfig(steps=40, lr=1e-3)).run(progress=False)
    after = signal.evaluate(net)["psnr"]
    assert after > before + 5


def test_time_budget_and_target_stop_early(signal) -> None:
    r = coordfit.fit(signal, "coordx", train=TrainConfig(steps=10**6, time_budget=0.5), save=False, progress=False, width=16)
    assert r.metrics["stopped_by"] == "time_budget"
    assert 0.5 <= r.metrics["train_seconds"] < 5
    r = coordfit.fit(signal, "pe-mlp", train=TrainConfig(steps=10**6, target=25.0), save=False, progress=False, width=32)
    assert r.metrics["stopped_by"] == "target"
    assert r.metrics["final_batch_psnr"] >= 25.0


def test_split_model_samples_sub_grids_when_grid_exceeds_budget(signal) -> None:
    gen = torch.Generator().manual_seed(0)
    net = coordfit.create_model("coordx", signal.info, width=8)
    parts, target = signal.sample(net.branches, 200, gen)
    # x+y on a 24x32 image: about sqrt(200/768) of each axis, i.e. ~16 x ~12 points
    assert [p.shape[0] for p in parts] == [16, 12]
    assert target.shape == (16, 12, 3)
    # the target is the image at exactly those coordinates
    xs = ((parts[0][:, 0] + 1) / 2 * 31).round().long()
    ys = ((parts[1][:, 0] + 1) / 2 * 23).round().long()
    torch.testing.assert_close(target, signal.values[ys][:, xs].permute(1, 0, 2))


def test_unsplit_model_samples_random_points(signal) -> None:
    gen = torch.Generator().manual_seed(0)
    net = coordfit.create_model("siren", signal.info, width=8)
    parts, target = signal.sample(net.branches, 100, gen)
    assert len(parts) == 1 and parts[0].shape == (100, 2) and target.shape == (100, 3)
    idx = ((parts[0] + 1) / 2 * torch.tensor([23.0, 31.0])).round().long()
    torch.testing.assert_close(target, signal.values[idx[:, 0], idx[:, 1]])


def test_run_folder_contents_and_checkpoint_round_trip(tmp_path, image_png) -> None:
    out = tmp_path / "run"
    r = coordfit.fit(image_png, "coordx", train=TrainConfig(steps=30, log_every=10), out=out, progress=False, width=32)
    for name in ("config.json", "model.safetensors", "reconstruction.png", "log.csv", "metrics.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("psnr", "ssim", "steps", "train_seconds", "params", "model", "split"):
        assert key in metrics
    assert metrics["split"] == "x+y" and metrics["params"] == r.model.num_params()
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert [int(row["step"]) for row in rows] == [10, 20, 30]
    run = coordfit.load(out)
    x = torch.rand(20, 2) * 2 - 1
    torch.testing.assert_close(run.model(x), r.model.cpu()(x))
    assert run.metrics["psnr"] == pytest.approx(metrics["psnr"])
    # reloading the config rebuilds the same run
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"] == "coordx" and cfg["model_config"]["width"] == 32 and cfg["train"]["steps"] == 30


def test_resume_continues_exactly_where_it_stopped(tmp_path, signal, image_png) -> None:
    # 20 steps, then resume to 40 == 40 steps straight (same sampler draws, same Adam state)
    train = dict(grid_batch=200, log_every=5)
    a = coordfit.fit(image_png, "coordx", train=TrainConfig(steps=20, **train), out=tmp_path / "a", progress=False, width=16)
    resumed = coordfit.resume(tmp_path / "a", steps=40, progress=False)
    straight = coordfit.fit(image_png, "coordx", train=TrainConfig(steps=40, **train), out=tmp_path / "b", progress=False, width=16)
    assert resumed.metrics["steps"] == 40
    for p, q in zip(resumed.model.parameters(), straight.model.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)
    steps = [int(r["step"]) for r in csv.DictReader((tmp_path / "a" / "log.csv").open())]
    assert steps == list(range(5, 45, 5))
    with pytest.raises(CoordfitError, match="already reached 40"):
        coordfit.resume(tmp_path / "a", steps=40, progress=False)
    with pytest.raises(CoordfitError, match="not 'siren'"):
        coordfit.resume(tmp_path / "a", steps=60, model="siren", progress=False)
    del a


def test_ctrl_c_saves_a_checkpoint_that_resumes(tmp_path, image_png, monkeypatch) -> None:
    calls = {"n": 0}
    original = Trainer.train_step

    def flaky(self):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", flaky)
    with pytest.raises(TrainingInterrupted, match="interrupted at step 7"):
        coordfit.fit(image_png, "siren", train=TrainConfig(steps=50), out=tmp_path / "r", progress=False, width=16)
    state = json.loads((tmp_path / "r" / "train_state.json").read_text())
    assert state["step"] == 7 and not state["finished"]
    monkeypatch.setattr(Trainer, "train_step", original)
    r = coordfit.resume(tmp_path / "r", progress=False)
    assert r.metrics["steps"] == 50 and (tmp_path / "r" / "reconstruction.png").is_file()


def test_fit_refuses_non_empty_out_and_keeps_its_files(tmp_path, image_png) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(CoordfitError, match="not empty"):
        coordfit.fit(image_png, "siren", train=TrainConfig(steps=1), out=out, progress=False)
    assert (out / "keep.txt").read_text() == "precious" and len(list(out.iterdir())) == 1


@pytest.mark.parametrize(
    "train,message",
    [(dict(steps=0), "--steps must be positive"), (dict(steps=-5), "--steps must be positive"),
     (dict(time_budget=0), "--time-budget"), (dict(lr=-1), "--lr"), (dict(device="tpu"), "unknown device")],
)
def test_bad_training_settings(train, message, image_png, tmp_path) -> None:
    with pytest.raises(CoordfitError, match=message):
        coordfit.fit(image_png, "siren", train=TrainConfig(**train), out=tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()  # nothing created for a refused run
