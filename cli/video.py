"""`coordfit video`: fit a clip (file, folder of frames, or a built-in procedural clip)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from coordfit.errors import CoordfitError

from . import _fit as F
from ._common import handle_errors
from .main import app


def _parse_resize(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.lower().split("x")
    try:
        w, h = (int(p) for p in parts)
    except ValueError:
        raise CoordfitError(f"--resize must look like WxH (e.g. 320x136), got '{text}'") from None
    return w, h


@app.command("video")
@handle_errors
def video_cmd(
    path: Annotated[Optional[str], typer.Argument(help="Video (MP4/WebM/AVI/MKV/MOV/GIF), a folder of numbered frames, or builtin:waves (the default, a 96x64x32 procedural clip).", show_default=False)] = None,
    model: F.Model = None,
    preset: F.Preset = None,
    split: F.Split = None,
    width: F.Width = None,
    layers: F.Layers = None,
    rank: F.Rank = None,
    option: F.Options = None,
    steps: F.Steps = None,
    time_budget: F.TimeBudget = None,
    target_psnr: F.TargetPSNR = None,
    lr: F.LR = None,
    grid_batch: F.GridBatch = None,
    batch_points: F.BatchPoints = None,
    start: Annotated[int, typer.Option("--start", help="First frame to fit (0-based).")] = 0,
    end: Annotated[Optional[int], typer.Option("--end", help="Stop before this frame (default: the end).")] = None,
    stride: Annotated[int, typer.Option("--stride", help="Keep every N-th frame (the frame rate drops to match).")] = 1,
    max_frames: Annotated[Optional[int], typer.Option("--max-frames", help="Fit at most this many frames.")] = None,
    resize: Annotated[Optional[str], typer.Option("--resize", help="Resize frames to WxH as they are read.")] = None,
    scale: Annotated[Optional[float], typer.Option("--scale", help="Or scale frames by this factor (0.5 = half size).")] = None,
    fps: Annotated[Optional[float], typer.Option("--fps", help="Frame rate of the source (default: from the file; 25 for folders).")] = None,
    seed: F.Seed = 0,
    device: F.Device = "auto",
    out: F.Out = None,
    resume: F.Resume = None,
    checkpoint_every: F.CheckpointEvery = 500,
    backend: F.Backend = None,
    progress: F.Progress = None,
) -> None:
    """Fit a video; writes reconstruction.mp4, metrics.json, model.safetensors, log.csv.

    Frames are streamed: only those asked for (--start/--end/--stride/--max-frames, --resize) are kept.
    """
    signal_options = {"start": start, "end": end, "stride": stride, "max_frames": max_frames,
                      "resize": _parse_resize(resize), "scale": scale, "fps": fps}
    F.run_fit(
        "video", path, model=model, preset=preset, split=split, width=width, layers=layers, rank=rank,
        options=option, steps=steps, time_budget=time_budget, target_psnr=target_psnr, lr=lr,
        grid_batch=grid_batch, batch_points=batch_points, seed=seed, device=device, out=out,
        resume=resume, checkpoint_every=checkpoint_every, progress=progress, backend=backend,
        signal_options={k: v for k, v in signal_options.items() if v is not None},
    )
