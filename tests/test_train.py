"""The fitting loop: PSNR floors, stop conditions, checkpoints, resume, Ctrl-C."""

from __future__ import annotations

import base64
import csv
import json

import pytest
import torch

import coordfit
from coordfit import TrainConfig
from coordfit.core.errors import CoordfitError
from coordfit.signals import ImageSignal
from coordfit.engine.train import Trainer, TrainingInterrupted

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
    assert r.metrics["train_seconds"] >= 0.5 and r.metrics["steps"] < 10**6  # the budget stopped it, not the steps
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


def test_ctrl_c_in_the_middle_of_a_step_saves_a_whole_step(tmp_path, image_png, monkeypatch) -> None:
    # The signal arrives after the sampler's draw, before Adam: the step finishes, is saved,
    # and the resumed run equals an uninterrupted one (a mid-step save would mix steps).
    import signal as signals

    train = dict(grid_batch=200)
    original, calls = Trainer.train_step, {"n": 0}

    def predict_then_signal(self):
        calls["n"] += 1
        if calls["n"] == 8:
            original_predict = self.signal.predict

            def predict(model, batch):
                signals.raise_signal(signals.SIGINT)  # as a user's Ctrl-C, mid-step
                return original_predict(model, batch)

            monkeypatch.setattr(self.signal, "predict", predict)
            try:
                return original(self)
            finally:
                monkeypatch.setattr(self.signal, "predict", original_predict)
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", predict_then_signal)
    with pytest.raises(TrainingInterrupted, match="interrupted at step 8"):
        coordfit.fit(image_png, "coordx", train=TrainConfig(steps=20, **train), out=tmp_path / "a", progress=False,
                     width=16)
    monkeypatch.setattr(Trainer, "train_step", original)
    resumed = coordfit.resume(tmp_path / "a", progress=False)
    straight = coordfit.fit(image_png, "coordx", train=TrainConfig(steps=20, **train), out=tmp_path / "b",
                            progress=False, width=16)
    for p, q in zip(resumed.model.parameters(), straight.model.parameters()):
        assert torch.equal(p, q)


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


def test_losses_are_read_at_throttled_readings_and_log_rows_queued(tmp_path, signal, monkeypatch) -> None:
    reads = []
    original = Trainer._read

    def counting(self, *args, **kwargs):
        reads.append(self.step)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_read", counting)
    monkeypatch.setattr(Trainer, "read_every", 1e9)  # no time-driven readings
    net = coordfit.create_model("coordx", signal.info, width=16)
    Trainer(net, signal, TrainConfig(steps=40, log_every=10, checkpoint_every=0), tmp_path).run(progress=False)
    assert reads == [40]  # one reading (one host sync), at the last step
    rows = list(csv.DictReader((tmp_path / "log.csv").open()))
    assert [int(r["step"]) for r in rows] == [10, 20, 30, 40]
    seconds = [float(r["seconds"]) for r in rows]
    assert all(0 < a < b for a, b in zip(seconds, seconds[1:]))  # each row has its own time
    assert all(float(r["psnr"]) > 5 for r in rows)


def test_the_stopping_step_is_logged_and_checkpoints_force_a_reading(tmp_path, signal, monkeypatch) -> None:
    monkeypatch.setattr(Trainer, "read_every", 1e9)
    net = coordfit.create_model("coordx", signal.info, width=8)
    t = Trainer(net, signal, TrainConfig(steps=13, log_every=5, checkpoint_every=6), tmp_path)
    saved = []
    monkeypatch.setattr(t, "save_checkpoint", lambda finished=False: saved.append((t.step, t.last_loss, finished)))
    t.run(progress=False)
    assert [int(r["step"]) for r in csv.DictReader((tmp_path / "log.csv").open())] == [5, 10, 13]
    assert [s for s, _, _ in saved] == [6, 12, 13] and saved[-1][2]
    assert all(loss == loss for _, loss, _ in saved)  # read before saving: not NaN


def test_time_budget_counts_from_the_resume_and_a_finished_run_needs_new_limits(tmp_path, image_png) -> None:
    a = coordfit.fit(image_png, "coordx", train=TrainConfig(time_budget=0.3, grid_batch=64), out=tmp_path / "a",
                     progress=False, width=8)
    assert a.metrics["stopped_by"] == "time_budget" and a.metrics["steps"] >= 1
    with pytest.raises(CoordfitError, match="finished .time_budget. at step"):
        coordfit.resume(tmp_path / "a", progress=False)
    more = coordfit.resume(tmp_path / "a", steps=a.metrics["steps"] + 3, progress=False)
    assert more.metrics["steps"] == a.metrics["steps"] + 3 and more.metrics["stopped_by"] == "steps"
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())["train"]
    assert cfg["time_budget"] is None and cfg["steps"] == a.metrics["steps"] + 3
    again = coordfit.resume(tmp_path / "a", time_budget=0.3, progress=False)
    assert again.metrics["stopped_by"] == "time_budget" and again.metrics["steps"] > more.metrics["steps"]
    assert again.metrics["train_seconds"] >= more.metrics["train_seconds"] + 0.3


def test_resolved_defaults_are_recorded(tmp_path, image_png) -> None:
    cfg = TrainConfig().resolved(torch.device("cpu"))
    assert (cfg.steps, cfg.time_budget, cfg.grid_batch, cfg.batch_points) == (2000, 20.0, 1 << 12, 1 << 12)
    assert (cfg.precision, cfg.threads) == ("fp32", 1)
    assert TrainConfig(time_budget=5).resolved(torch.device("cpu")).steps is None  # no step limit
    coordfit.fit(image_png, "siren", train=TrainConfig(steps=2, device="cpu"), out=tmp_path / "r", progress=False, width=8)
    saved = json.loads((tmp_path / "r" / "config.json").read_text())["train"]
    assert saved["lr"] == 1e-4 and saved["batch_points"] == 1 << 12 and saved["threads"] == 1
    assert saved["precision"] == "fp32" and saved["time_budget"] is None and saved["target"] is None


def test_old_configs_with_target_psnr_still_load() -> None:
    cfg = TrainConfig.from_dict({"steps": 100, "target_psnr": 30.0, "lr": None})
    assert cfg.target == 30.0 and cfg.steps == 100
    with pytest.raises(CoordfitError, match="training has no option 'bogus'"):
        TrainConfig.from_dict({"bogus": 1})
    assert TrainConfig.from_dict({"steps": "7", "lr": "1e-3"}).steps == 7  # read by type


@pytest.mark.parametrize("field,value", [("lr", float("nan")), ("lr", float("inf")), ("target", float("nan")),
                                         ("time_budget", float("inf")), ("time_budget", float("nan"))])
def test_non_finite_numbers_are_refused(field, value) -> None:
    with pytest.raises(CoordfitError, match=f"--{field.replace('_', '-')} must be a finite number"):
        TrainConfig(**{field: value}).validate()


def test_threads_apply_during_the_fit_and_are_restored(signal, monkeypatch) -> None:
    seen = []
    original = ImageSignal.loss
    monkeypatch.setattr(ImageSignal, "loss", lambda self, p, t: seen.append(torch.get_num_threads()) or original(self, p, t))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        coordfit.fit(signal, "coordx", train=TrainConfig(steps=2, threads=1), save=False, progress=False, width=8)
        assert seen == [1, 1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_bf16_autocast_trains(signal, one_thread) -> None:
    torch.manual_seed(0)
    net = coordfit.create_model("coordx", signal.info, width=32)
    before = signal.evaluate(net)["psnr"]
    t = Trainer(net, signal, TrainConfig(steps=40, lr=1e-3, precision="bf16"))
    t.run(progress=False)
    assert t.summary()["precision"] == "bf16" and signal.evaluate(net)["psnr"] > before + 5


def test_compile_falls_back_to_eager_with_one_warning(signal, monkeypatch) -> None:
    def broken(fn, *args, **kwargs):
        def call(*a, **k):
            raise RuntimeError("no compiler here\nmore detail")
        return call

    monkeypatch.setattr(torch, "compile", broken)
    train = dict(steps=5, grid_batch=200, lr=1e-3)
    with pytest.warns(UserWarning, match="torch.compile failed .RuntimeError: no compiler here.; training without it") as rec:
        a = coordfit.fit(signal, "coordx", train=TrainConfig(compile=True, **train), save=False, progress=False, width=8)
    assert len(rec) == 1
    b = coordfit.fit(ImageSignal(smooth_image()), "coordx", train=TrainConfig(**train), save=False, progress=False, width=8)
    for p, q in zip(a.model.parameters(), b.model.parameters()):  # the failed step re-ran on the same batch
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert "forward_grid" not in a.model.__dict__  # the plain methods are back


def test_generator_lives_on_the_device_and_a_moved_run_is_reseeded(tmp_path, image_png) -> None:
    coordfit.fit(image_png, "coordx", train=TrainConfig(steps=3, grid_batch=64), out=tmp_path / "r", progress=False, width=8)
    path = tmp_path / "r" / "train_state.json"
    state = json.loads(path.read_text())
    assert state["rng_device"] == "cpu"
    t = Trainer(coordfit.create_model("coordx", ImageSignal(smooth_image()).info, width=8), ImageSignal(smooth_image()),
                TrainConfig(steps=5, device="cpu"))
    assert t.generator.device.type == "cpu"
    assert torch.equal(t._saved_rng(state, path), torch.frombuffer(bytearray(base64.b64decode(state["rng"])), dtype=torch.uint8))
    with pytest.warns(UserWarning, match="trained on cuda and continues on cpu: the sampler is reseeded"):
        assert t._saved_rng({**state, "rng_device": "cuda"}, path) is None  # a CUDA state cannot seed a CPU generator


def test_shapes_log_and_report_their_quality_as_iou(tmp_path) -> None:
    from coordfit.bench.tables import curves_name, kind_metrics
    from coordfit.bench.runner import _read_curve

    options = {"label_resolution": 16, "resolution": 16, "eval_points": 200}
    r = coordfit.fit("primitive:sphere", "coordx", kind="shape", train=TrainConfig(steps=4, log_every=2, grid_batch=512),
                     out=tmp_path / "s", progress=False, signal_options=options, width=8)
    assert (tmp_path / "s" / "log.csv").read_text().splitlines()[0] == "step,seconds,loss,iou"
    curve = _read_curve(tmp_path / "s" / "log.csv", "iou")
    assert [c[0] for c in curve] == [2, 4] and all(0.0 <= c[2] <= 1.0 for c in curve)
    assert 0.0 <= r.metrics["final_batch_iou"] <= 1.0
    assert kind_metrics("shape") == ("iou", "", "chamfer_l1") and kind_metrics("video") == ("psnr", "dB", "ssim")
    assert curves_name("shape") == "iou_vs_time_shape.png" and curves_name("image") == "psnr_vs_time_image.png"
