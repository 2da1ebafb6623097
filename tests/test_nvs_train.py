"""Training: the loss falls, checkpoints resume exactly (also after Ctrl-C), refused resumes
change nothing, DDP with 2 CPU processes keeps replicas in sync, runs of older coordfit
(log.jsonl, input_views) resume."""

import csv
import json
import math
import os
import signal
import socket
import threading

import pytest
import torch
import torch.multiprocessing as mp

from coordfit.core.errors import CoordfitError
from coordfit.nvs import NVSConfig, create_model, load_model
from coordfit.nvs.data import ViewSource, batches, held_out_scenes
from coordfit.nvs.evaluate import baselines, evaluate
from coordfit.engine.nvs_train import NVSTrainConfig, lr_at, resume, train
from coordfit.engine.train import TrainingInterrupted


pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(width=32, head_dim=16, depth=1, patch=4)


def _cfg(**kw):
    base = dict(model="efficient-lvsm", model_config=TINY, size=16, input_views_min=2, input_views_max=3, target_views=1,
                steps=40, batch_size=4, lr=3e-3, warmup=5, log_every=5, checkpoint_every=20, device="cpu")
    return NVSTrainConfig(**{**base, **kw})


def _log(run):
    with (run / "log.csv").open(newline="") as f:
        return [{"step": int(r["step"]), **{k: float(r[k]) for k in ("seconds", "loss", "psnr")}} for r in csv.DictReader(f)]


def _interrupt_after(monkeypatch, steps, sig=signal.SIGINT):
    """Send ``sig`` to this process inside optimiser step number ``steps`` (of this session)."""
    from coordfit.engine import nvs_train

    step, calls = nvs_train._step, []

    def counting(*args):
        calls.append(1)
        if len(calls) == steps:
            os.kill(os.getpid(), sig)  # acted on at the step's end
        return step(*args)

    monkeypatch.setattr(nvs_train, "_step", counting)


def _fixed_loss(model):
    batch = ViewSource(None, size=16, input_views=(2, 2), target_views=1, seed=99).batch(0, 8)
    with torch.no_grad():
        pred = model.eval()(batch["images"], batch["c2w"], batch["fxfycxcy"],
                            batch["target_c2w"], batch["target_fxfycxcy"])
    return float(((pred - batch["target"]) ** 2).mean())


def test_tiny_training_lowers_the_loss_and_resumes(tmp_path):
    torch.manual_seed(0)
    model = create_model("efficient-lvsm", NVSConfig(**TINY))
    before = _fixed_loss(model)
    run = train(_cfg(steps=60, lr=5e-3, batch_size=8), out=tmp_path / "run", progress=None, model=model)
    after = _fixed_loss(model)
    assert after < 0.8 * before, (before, after)  # on scenes training never saw (0.049 -> 0.034)
    rows = _log(run)
    assert [r["step"] for r in rows] == list(range(5, 65, 5))
    assert all(r["loss"] == r["loss"] and 5 < r["psnr"] < 40 for r in rows)  # no NaN; the batch PSNR beside the loss
    assert (run / "curves.png").is_file() and json.loads((run / "metrics.json").read_text())["steps"] == 60
    assert json.loads((run / "train_state.json").read_text())["step"] == 60
    assert json.loads((run / "config.json").read_text())["model_config"] == TINY
    # resume to more steps continues from step 60 with the saved optimizer; lines a killed run
    # logged after its checkpoint (and a torn last one) are dropped
    with open(run / "log.csv", "a") as f:
        f.write("65,1.0,9.0,10.0\n7")
    resume(run, steps=70, progress=None)
    assert json.loads((run / "train_state.json").read_text())["step"] == 70
    assert [r["step"] for r in _log(run)] == list(range(5, 75, 5)) and _log(run)[-2]["loss"] < 1
    model, info = load_model(run)
    assert info["steps"] == 70 and model.cfg.width == 32
    # a non-empty --out is refused, never overwritten
    with pytest.raises(CoordfitError, match="not empty"):
        train(_cfg(steps=1), out=run, progress=None)


def test_a_run_of_older_coordfit_resumes(tmp_path):
    """Runs written before log.csv (log.jsonl; input_views as a pair) load and resume: the
    old rows up to the checkpoint become log.csv rows (their batch PSNR unrecorded)."""
    run = train(_cfg(steps=4, log_every=2, checkpoint_every=2, workers=0), out=tmp_path / "run")
    rows = _log(run)
    (run / "log.csv").unlink()
    (run / "metrics.json").unlink()
    (run / "log.jsonl").write_text("".join(json.dumps({"step": r["step"], "loss": r["loss"], "lr": 0.003,
                                                       "seconds": r["seconds"]}) + "\n" for r in rows)
                                   + '{"step": 6, "loss": 9.0}\n')  # logged after the checkpoint by a killed run
    config = json.loads((run / "config.json").read_text())
    config = {k: v for k, v in config.items() if not k.startswith("input_views") and k != "logger"}
    (run / "config.json").write_text(json.dumps({**config, "input_views": [2, 3]}))
    model, info = load_model(run)
    assert info["steps"] == 4
    resume(run, steps=6, workers=0)
    assert not (run / "log.jsonl").exists()
    now = _log(run)
    assert [r["step"] for r in now] == [2, 4, 6] and [r["loss"] for r in now[:2]] == pytest.approx([r["loss"] for r in rows])
    assert math.isnan(now[0]["psnr"]) and now[2]["psnr"] > 5
    assert json.loads((run / "config.json").read_text())["input_views_max"] == 3


def test_lr_schedule_warms_up_then_decays():
    cfg = NVSTrainConfig(steps=100, warmup=10, lr=1.0, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0)
    assert lr_at(55, cfg) == pytest.approx(0.55)
    assert lr_at(100, cfg) == pytest.approx(0.1)


def test_batches_are_reproducible_and_distinct():
    src = ViewSource(None, size=8, input_views=(2, 4), target_views=2)
    a, b, c = src.batch(3, 2), src.batch(3, 2), src.batch(4, 2)
    assert torch.equal(a["images"], b["images"])
    assert a["target"].shape[1] == 2 and 2 <= a["images"].shape[1] <= 4
    assert not torch.equal(a["target"], c["target"])


def test_batches_rendered_ahead_in_threads_are_the_batches_of_their_steps():
    src = ViewSource(None, size=8, input_views=(2, 4), target_views=1, seed=3)
    ahead = list(batches(src, 2, range(3, 8), workers=2, stride=2, offset=1))  # DDP rank 1 of 2
    assert len(ahead) == 5
    for step, batch in zip(range(3, 8), ahead):
        want = src.batch(step * 2 + 1, 2)
        assert batch.keys() == want.keys() and all(torch.equal(batch[k], want[k]) for k in want)
    stream = batches(src, 2, range(1000), workers=2)
    next(stream)
    stream.close()  # stopping early (Ctrl-C) ends the pool: no thread left rendering
    assert not [t for t in threading.enumerate() if t.name.startswith("coordfit-batches")]


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_ctrl_c_saves_at_a_step_boundary_and_resume_is_exact(tmp_path, monkeypatch):
    """A run interrupted at step 4 and resumed (batches rendered ahead by two threads, then
    in the training thread) ends with the same weights, bit for bit, as one run straight
    through."""
    cfg = dict(steps=7, log_every=2, checkpoint_every=100)
    torch.manual_seed(0)
    straight = create_model("efficient-lvsm", NVSConfig(**TINY))
    train(_cfg(**cfg, workers=0), out=tmp_path / "straight", model=straight)

    run = tmp_path / "interrupted"
    _interrupt_after(monkeypatch, 4)  # handled at the step's end
    with pytest.raises(TrainingInterrupted, match=f"interrupted at step 4; checkpoint saved in {run}"):
        train(_cfg(**cfg, workers=2), out=run)
    monkeypatch.undo()
    assert json.loads((run / "train_state.json").read_text())["step"] == 4
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    resume(run, workers=0)
    resumed, info = load_model(run)
    assert info["steps"] == 7
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, atol=0, rtol=0)
    assert [r["step"] for r in _log(run)] == [2, 4, 6, 7]
    assert [r["step"] for r in _log(tmp_path / "straight")] == [2, 4, 6, 7]


def test_sigterm_saves_like_ctrl_c(tmp_path, monkeypatch):
    before = signal.getsignal(signal.SIGTERM)
    run = tmp_path / "run"
    _interrupt_after(monkeypatch, 2, signal.SIGTERM)
    with pytest.raises(TrainingInterrupted, match="interrupted at step 2"):
        train(_cfg(steps=6, workers=0), out=run)
    assert json.loads((run / "train_state.json").read_text())["step"] == 2
    assert signal.getsignal(signal.SIGTERM) == before


def test_the_loss_is_read_at_log_steps_only(tmp_path, monkeypatch):
    """No per-step host sync: the training thread reads a tensor once per log row (loss and
    MSE at once), and the row holds the means since the previous one."""
    reads = []

    def counting(name):
        original = getattr(torch.Tensor, name)

        def read(self, *args):
            if threading.current_thread() is threading.main_thread():  # the renderer's thread reads numbers
                reads.append(name)
            return original(self, *args)
        return read

    for name in ("__float__", "tolist"):  # (AdamW reads its CPU step counter with item(): not a device sync)
        monkeypatch.setattr(torch.Tensor, name, counting(name))
    run = train(_cfg(steps=8, log_every=4, workers=1), out=tmp_path / "run")
    monkeypatch.undo()
    assert reads == ["tolist", "tolist"]  # steps 4 and 8
    rows = _log(run)
    assert [r["step"] for r in rows] == [4, 8] and all(0 < r["loss"] < 1 for r in rows)
    assert all(r["psnr"] == pytest.approx(-10 * math.log10(r["loss"]), abs=1e-3) for r in rows)  # MSE loss alone


class _Threads:
    """A logger that records torch's thread count when a session starts and at each log row."""

    def __init__(self):
        self.seen = []

    def start(self, step):
        self.seen.append(torch.get_num_threads())

    def log(self, step, seconds, scalars):
        self.seen.append(torch.get_num_threads())

    def close(self):
        pass


def test_torch_threads_follow_the_device_default_or_the_option_and_are_restored(tmp_path):
    torch.set_num_threads(2)  # as torch would choose on a 2-core machine (the fixture restores one)
    threads = _Threads()
    run = train(_cfg(steps=1, workers=0), out=tmp_path / "a", loggers=[threads])
    assert threads.seen == [2, 1] and torch.get_num_threads() == 2  # one on a CPU while stepping, then as before
    threads = _Threads()
    resume(run, steps=2, threads=3, loggers=[threads])
    assert threads.seen == [2, 3] and torch.get_num_threads() == 2
    with pytest.raises(CoordfitError, match="--threads must be a positive integer"):
        resume(run, steps=3, threads=0)


def test_a_diverged_run_stops_with_one_line_and_keeps_its_last_checkpoint(tmp_path, monkeypatch):
    from coordfit.engine import nvs_train

    run = train(_cfg(steps=4, log_every=2, checkpoint_every=2, workers=0), out=tmp_path / "run")
    good = _snapshot(run)
    loss = nvs_train._loss
    monkeypatch.setattr(nvs_train, "_loss", lambda *a: tuple(x * math.nan for x in loss(*a)))
    with pytest.raises(CoordfitError, match="training diverged: the loss is nan at step 6"):
        resume(run, steps=8)
    assert _snapshot(run)["model.safetensors"] == good["model.safetensors"]
    assert json.loads((run / "train_state.json").read_text())["step"] == 4


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_refused_resumes_change_nothing(tmp_path):
    run = train(_cfg(steps=2, workers=0), out=tmp_path / "run")
    good = _snapshot(run)

    def refused(message, **kw):
        before = _snapshot(run)
        with pytest.raises(CoordfitError, match=message):
            resume(run, **kw)
        assert _snapshot(run) == before

    refused("already reached 2 steps", steps=1)
    refused("already reached 2 steps", steps=2)
    refused("already reached 2 steps")
    refused("unknown device", steps=5, device="tpu")
    refused("--workers must be an integer >= 0", steps=5, workers=-1)
    config = json.loads(good["config.json"])
    for name, text, message in [
        ("model.safetensors", b"garbage", "is torn: model.safetensors"),  # checked against checkpoint.json
        ("optimizer.safetensors", None, "incomplete: optimizer.safetensors is missing"),
        ("train_state.json", b'{"step": "two"}', "is torn: train_state.json"),
        ("config.json", b"[]", "must be a JSON object"),
        ("config.json", json.dumps({**config, "stpes": 3}).encode(), "training has no option 'stpes'"),
        ("config.json", json.dumps({**config, "lr": -1}).encode(), "--lr must be a finite number > 0"),
        ("config.json", json.dumps({**config, "model_config": {"width": "abc"}}).encode(), "must be int"),
    ]:
        if text is None:
            (run / name).unlink()
        else:
            (run / name).write_bytes(text)
        refused(message, steps=5)
        (run / name).write_bytes(good[name])
    resume(run, steps=3)  # the folder is still good
    assert json.loads((run / "train_state.json").read_text())["step"] == 3
    assert json.loads((run / "config.json").read_text())["steps"] == 3


class _Crash(_Threads):
    def start(self, step):
        raise RuntimeError("disk on fire")


def test_a_failed_start_leaves_the_folder_reusable(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="disk on fire"):
        train(_cfg(steps=2, workers=0), out=out, loggers=[_Crash()])
    assert not out.exists()
    out.mkdir()
    with pytest.raises(RuntimeError, match="disk on fire"):
        train(_cfg(steps=2, workers=0), out=out, loggers=[_Crash()])
    assert out.is_dir() and not any(out.iterdir())  # a folder the user made stays, empty
    train(_cfg(steps=2, workers=0), out=out)
    assert json.loads((out / "train_state.json").read_text())["step"] == 2


@pytest.mark.parametrize("change, message", [
    (dict(steps=0), "--steps must be a positive integer"),
    (dict(steps=2.5), "--steps must be a positive integer|steps=2.5 must be int"),
    (dict(lr=-1.0), "--lr must be a finite number > 0"),
    (dict(lr=math.nan), "--lr must be"),
    (dict(lr=math.inf), "--lr must be"),
    (dict(warmup=-1), "--warmup must be an integer >= 0"),
    (dict(batch_size=0), "--batch-size must be"),
    (dict(checkpoint_every=0), "--checkpoint-every must be"),
    (dict(log_every=0), "--log-every must be"),
    (dict(ssim_weight=-0.5), "--ssim-weight must be"),
    (dict(seed=-1), "--seed must be"),
    (dict(workers=-1), "--workers must be"),
    (dict(size=3), "--size must be"),
    (dict(input_views_min=3, input_views_max=2), "input views must be a range"),
    (dict(model="nerf"), "unknown view-synthesis model"),
    (dict(model_config={"width": "abc"}), "width='abc' must be int"),
    (dict(model_config={"head_dim": 0}), "must be positive"),
    (dict(device="tpu"), "unknown device"),
])
def test_config_refuses_bad_values_with_one_line(change, message):
    with pytest.raises(CoordfitError, match=message):
        _cfg(**change).validate()
    data = {**_cfg().to_dict(), **change}
    with pytest.raises(CoordfitError, match=message):
        NVSTrainConfig.from_dict(data)


def test_config_round_trips_and_refuses_unknown_keys():
    from coordfit.core.registry import Config

    cfg = _cfg(workers=2)
    assert isinstance(cfg, Config)  # the one config base
    assert NVSTrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(CoordfitError, match=r"training has no option 'stpes'"):
        NVSTrainConfig.from_dict({"stpes": 3})
    old = {k: v for k, v in cfg.to_dict().items() if not k.startswith("input_views")} | {"input_views": [2, 3]}
    assert NVSTrainConfig.from_dict(old) == cfg  # config.json of runs before input_views_min/max


def test_seeds_that_would_reach_the_held_out_scenes_are_refused(tmp_path):
    with pytest.raises(CoordfitError, match="held-out"):
        train(_cfg(seed=99, steps=2_000_000, batch_size=8), out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_evaluate_reports_model_and_baselines():
    scenes = held_out_scenes(2, views=3, size=16)
    model = create_model("efficient-lvsm", NVSConfig(**TINY))
    scores = evaluate(model, scenes, input_views=2)
    assert set(scores) == {"model", "nearest_view", "mean_of_inputs"}
    assert 5 < scores["nearest_view"]["psnr"] < 40 and -1 <= scores["model"]["ssim"] <= 1
    # the nearest-view baseline copies the input whose camera centre is closest
    batch = {"images": torch.stack([torch.zeros(3, 2, 2), torch.ones(3, 2, 2)])[None],
             "c2w": torch.eye(4).repeat(1, 2, 1, 1), "target": torch.zeros(1, 1, 3, 2, 2),
             "target_c2w": torch.eye(4)[None, None].clone()}
    batch["c2w"][0, 1, 0, 3] = 5.0
    batch["target_c2w"][0, 0, 0, 3] = 4.0
    assert baselines(batch)["nearest_view"].mean() == 1.0
    assert baselines(batch)["mean_of_inputs"].mean() == 0.5
    # scenes of different view counts are batched apart; the mean is over every target view
    four = held_out_scenes(1, views=4, size=16)  # two targets
    mixed = evaluate(model, [scenes[0], four[0], scenes[1]], input_views=2)
    alone = evaluate(model, four, input_views=2)
    for name, vals in mixed.items():
        assert vals["psnr"] == pytest.approx((scores[name]["psnr"] + alone[name]["psnr"]) / 2, abs=2e-4)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, out, result_dir):
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    torch.manual_seed(123)  # DDP broadcasts rank 0's weights anyway
    model = create_model("efficient-lvsm", NVSConfig(**TINY))
    start = {k: v.clone() for k, v in model.state_dict().items()}
    train(_cfg(steps=3, log_every=1, checkpoint_every=3), out=out, progress=None, model=model)
    moved = max((v - start[k]).abs().max().item() for k, v in model.state_dict().items())
    torch.save({"state": model.state_dict(), "moved": moved}, f"{result_dir}/rank{rank}.pt")
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_cpu_processes_stay_in_sync(tmp_path):
    out, res = tmp_path / "run", tmp_path / "res"
    res.mkdir()
    mp.start_processes(_ddp_worker, args=(2, _free_port(), str(out), str(res)), nprocs=2,
                       join=True, start_method="spawn")
    r0, r1 = torch.load(res / "rank0.pt"), torch.load(res / "rank1.pt")
    assert r0["moved"] > 1e-4  # training happened
    for key, value in r0["state"].items():  # gradients were averaged: replicas identical
        torch.testing.assert_close(r1["state"][key], value, atol=0, rtol=0)
    # only rank 0 wrote the run folder; the log holds the mean loss over ranks for 3 steps
    assert [r["step"] for r in _log(out)] == [1, 2, 3]
    saved, _ = load_model(out)
    for key, value in saved.state_dict().items():
        torch.testing.assert_close(value, r0["state"][key])
