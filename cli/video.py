"""`coordfit video`: fit a clip (file, folder of frames, or a built-in procedural clip)."""

from __future__ import annotations

from typing import Annotated, Any, Optional

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
@F.fitting_command("video", F.VideoTarget)
def video_cmd(
    path: Annotated[Optional[str], typer.Argument(help="Video (MP4/WebM/AVI/MKV/MOV/GIF), a folder of numbered frames, or builtin:waves (the default, a 96x64x32 procedural clip).", show_default=False)] = None,
    start: Annotated[int, typer.Option("--start", help="First frame to fit (0-based).")] = 0,
    end: Annotated[Optional[int], typer.Option("--end", help="Stop before this frame (default: the end).")] = None,
    stride: Annotated[int, typer.Option("--stride", help="Keep every N-th frame (the frame rate drops to match).")] = 1,
    max_frames: Annotated[Optional[int], typer.Option("--max-frames", help="Fit at most this many frames.")] = None,
    resize: Annotated[Optional[str], typer.Option("--resize", help="Resize frames to WxH as they are read.")] = None,
    scale: Annotated[Optional[float], typer.Option("--scale", help="Or scale frames by this factor (0.5 = half size).")] = None,
    fps: Annotated[Optional[float], typer.Option("--fps", help="Frame rate of the source (default: from the file; 25 for folders).")] = None,
) -> dict[str, Any]:
    """Fit a video; writes reconstruction.mp4, metrics.json, model.safetensors, log.csv.

    Frames are streamed: only those asked for (--start/--end/--stride/--max-frames, --resize) are kept.
    """
    signal_options = {"start": start, "end": end, "stride": stride, "max_frames": max_frames,
                      "resize": _parse_resize(resize), "scale": scale, "fps": fps}
    return {k: v for k, v in signal_options.items() if v is not None}
