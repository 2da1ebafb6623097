"""Training: the loss falls, checkpoints resume, DDP with 2 CPU processes keeps replicas in sync."""

import json
import socket

import pytest
import torch
import torch.multiprocessing as mp

from coordfit.errors import CoordfitError
from coordfit.nvs import NVSConfig, create_model, load_model
from coordfit.nvs.data import ViewSource, held_out_scenes
from coordfit.nvs.evaluate import baselines, evaluate
from coordfit.nvs.train import TrainConfig, lr_at, resume, train


pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(width=32, head_dim=16, depth=1, patch=4)


def _cfg(**kw):
    base = dict(model="efficient-lvsm", model_config=TINY, size=16, input_views=(2, 3), target_views=1,
                steps=40, batch_size=4, lr=3e-3, warmup=5, log_every=5, checkpoint_every=20, device="cpu")
    return TrainConfig(**{**base, **kw})


def _log(run):
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


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
    run = train(_cfg(steps=60, lr=5e-3, batch_size=8), out=tmp_path / "run", progress=False, model=model)
    after = _fixed_loss(model)
    assert after < 0.8 * before, (before, after)  # on scenes training never saw (0.049 -> 0.034)
    rows = _log(run)
    assert [r["step"] for r in rows] == list(range(5, 65, 5))
    assert all(r["loss"] == r["loss"] for r in rows)  # no NaN
    assert json.loads((run / "train_state.json").read_text())["step"] == 60
    assert json.loads((run / "config.json").read_text())["model_config"] == TINY
    # resume to more steps continues from step 60 with the saved optimizer
    resume(run, steps=70, progress=False)
    assert json.loads((run / "train_state.json").read_text())["step"] == 70
    assert _log(run)[-1]["step"] == 70
    model, info = load_model(run)
    assert info["steps"] == 70 and model.cfg.width == 32
    # a non-empty --out is refused, never overwritten
    with pytest.raises(CoordfitError, match="not empty"):
        train(_cfg(steps=1), out=run, progress=False)


def test_lr_schedule_warms_up_then_decays():
    cfg = TrainConfig(steps=100, warmup=10, lr=1.0, min_lr_ratio=0.1)
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
    train(_cfg(steps=3, log_every=1, checkpoint_every=3), out=out, progress=False, model=model)
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
