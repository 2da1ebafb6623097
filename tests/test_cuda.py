"""The fitting loop on CUDA: every signal kind with a split and an unsplit model, no host
sync inside a step, the precisions, resume, renders, torch.compile.

Skipped as a whole without a CUDA device (CI has none). Nothing here writes an MP4: the
GPU machines this runs on may lack ffmpeg, so videos are fitted without a run folder and
rendered to arrays.
"""

from __future__ import annotations

import pytest
import torch

if not torch.cuda.is_available():
    pytest.skip("needs a CUDA device (CI has none; run on a GPU machine)", allow_module_level=True)

import coordfit  # noqa: E402
from coordfit import TrainConfig  # noqa: E402
from coordfit.signals import ImageSignal, VideoSignal, load_signal  # noqa: E402
from coordfit.signals.video import render_frames  # noqa: E402
from coordfit.engine.train import Trainer  # noqa: E402

from conftest import smooth_image  # noqa: E402

SHAPE = {"label_resolution": 32, "resolution": 32, "eval_points": 2000}


def _signal(kind: str):
    if kind == "image":
        return ImageSignal(smooth_image(48, 64))
    if kind == "video":
        frames = torch.stack([torch.from_numpy(smooth_image(32, 40, seed=s)) for s in range(8)])
        return VideoSignal(frames)
    return load_signal("shape", "primitive:torus", **SHAPE)


@pytest.mark.parametrize("kind", ["image", "video", "shape"])
@pytest.mark.parametrize("model", ["coordx", "siren"])
def test_every_kind_fits_on_cuda_without_a_host_sync_in_the_step(kind, model) -> None:
    signal = _signal(kind)
    torch.manual_seed(0)
    net = coordfit.create_model(model, signal.info, width=32)
    before = signal.evaluate(net.cuda())
    t = Trainer(net, signal, TrainConfig(steps=60, lr=1e-3, grid_batch=512, batch_points=512, device="cuda"))
    assert t.generator.device.type == "cuda" and t.config.precision == "fp32"
    t.train_step()  # warm-up (allocator, lazy init)
    torch.cuda.set_sync_debug_mode("error")  # any sync inside the step raises
    try:
        t.train_step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    t.step = 2
    summary = t.run(progress=False)
    assert summary["steps"] == 60 and summary["device"].startswith("cuda")
    metrics = signal.evaluate(t.model)
    if kind == "shape":
        assert metrics["iou"] > 0.3, metrics
    else:  # the same fit on the CPU: coordx +11 dB on the image, +2.5 on the frame-by-frame random clip
        assert metrics["psnr"] > before["psnr"] + 2.0, (before["psnr"], metrics["psnr"])


def test_resume_on_cuda_matches_a_straight_run(tmp_path, image_png) -> None:
    train = dict(grid_batch=200, log_every=5, device="cuda")
    coordfit.fit(image_png, "coordx", train=TrainConfig(steps=10, **train), out=tmp_path / "a", progress=False, width=16)
    resumed = coordfit.resume(tmp_path / "a", steps=20, progress=False)
    straight = coordfit.fit(image_png, "coordx", train=TrainConfig(steps=20, **train), out=tmp_path / "b",
                            progress=False, width=16)
    assert resumed.metrics["steps"] == 20
    for p, q in zip(resumed.model.parameters(), straight.model.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)


def test_renders_from_cuda_runs(tmp_path) -> None:
    img = coordfit.fit(ImageSignal(smooth_image(24, 32)), "coordx", train=TrainConfig(steps=5, device="cuda"),
                       out=tmp_path / "img", progress=False, width=16)
    run = coordfit.load(img.run_dir, device="cuda")
    assert run.render(scale=2).name == "render_64x48.png"
    shape = coordfit.fit(_signal("shape"), "siren", train=TrainConfig(steps=5, device="cuda"), out=tmp_path / "shape",
                         progress=False, width=16)
    assert coordfit.load(shape.run_dir, device="cuda").render(resolution=24).is_file()
    vid = coordfit.fit(_signal("video"), "coordx", train=TrainConfig(steps=5, device="cuda"), save=False,
                       progress=False, width=16)
    frames = torch.cat([torch.from_numpy(f) for f in render_frames(vid.model, 16, 64, 80)])
    assert frames.shape == (16, 64, 80, 3) and torch.isfinite(frames).all()


@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16"])
def test_precisions_train_on_cuda(precision) -> None:
    signal = ImageSignal(smooth_image(48, 64))
    r = coordfit.fit(signal, "pe-mlp", train=TrainConfig(steps=150, lr=1e-3, precision=precision, device="cuda"),
                     save=False, progress=False, width=64)
    assert r.metrics["precision"] == precision and r.metrics["psnr"] > 30.0, r.metrics


def test_compile_runs_on_cuda_without_falling_back() -> None:
    import warnings

    signal = ImageSignal(smooth_image(48, 64))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = coordfit.fit(signal, "coordx", train=TrainConfig(steps=30, lr=1e-3, compile=True, device="cuda"),
                         save=False, progress=False, width=32)
    assert not [w for w in caught if "torch.compile failed" in str(w.message)]
    assert r.metrics["psnr"] > 20.0 and "forward_grid" not in r.model.__dict__
