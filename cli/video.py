"""`coordfit video`: fit a clip (file, folder of frames, or a built-in procedural clip)."""

from __future__ import annotations

from coordfit.signals.options import VideoOptions

from ._common import handle_errors
from ._fit import fitting_command
from .app import app


@app.command("video")
@handle_errors
@fitting_command("video", VideoOptions, flags=("start", "end", "stride", "max_frames", "resize", "scale", "fps"),
                 inputs=(".mp4", ".webm", ".avi", ".mkv", ".mov", ".gif"),
                 path_help="Video (MP4/WebM/AVI/MKV/MOV/GIF), a folder of numbered frames, or builtin:waves "
                 "(the default, a 96x64x32 procedural clip); several videos or a folder of them: each fitted "
                 "alike into one folder.")
def video_cmd() -> None:
    """Fit a video; writes reconstruction.mp4, metrics.json, model.safetensors, log.csv.

    Frames are streamed: only those asked for (--start/--end/--stride/--max-frames, --resize) are kept.
    """
