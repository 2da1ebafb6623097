"""`coordfit image` (fit a photo) and `coordfit render` (render a run at any size)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from coordfit.core.errors import CoordfitError
from coordfit.signals.options import ImageOptions

from ._common import console, handle_errors
from ._fit import Device, fitting_command
from .app import app


@app.command("image")
@handle_errors
@fitting_command("image", ImageOptions, flags=("alpha",), inputs=(".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"),
                 path_help="Image file (PNG/JPEG/TIFF/BMP) or skimage:<name> (default: skimage:astronaut); "
                 "several files or a folder of them: each fitted alike into one folder.")
def image_cmd() -> None:
    """Fit an image; writes reconstruction.png, metrics.json, model.safetensors, log.csv.

    With no flags it trains for a first result within a minute and says how to go further:
    """


def _parse_size(size: str | None) -> tuple[int, ...] | None:
    if size is None:
        return None
    parts = size.lower().split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        raise CoordfitError(f"--size must look like WxH (e.g. 1024x768), got '{size}'") from None
    if len(dims) not in (2, 3):
        raise CoordfitError(f"--size must be WxH (or WxHxT for video), got '{size}'")
    if min(dims) <= 0:
        raise CoordfitError(f"--size must be positive WxH (or WxHxT for video), got '{size}'")
    return dims


@app.command("render")
@handle_errors
def render_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by coordfit image/video/shape/views.")],
    scale: Annotated[Optional[float], typer.Option("--scale", help="Images/videos: size factor (2 = twice the resolution).")] = None,
    size: Annotated[Optional[str], typer.Option("--size", help="Images: WxH; videos: WxH or WxHxFRAMES.")] = None,
    fps: Annotated[Optional[float], typer.Option("--fps", help="Videos: frame rate of the output.")] = None,
    frames: Annotated[Optional[int], typer.Option("--frames", help="Videos: number of frames (temporal super-resolution).")] = None,
    resolution: Annotated[Optional[int], typer.Option("--resolution", help="Shapes: marching-cubes grid size.")] = None,
    orbit: Annotated[bool, typer.Option("--orbit", help="Views: an MP4 circling the scene (--frames, --fps, --size).")] = False,
    pose: Annotated[Optional[str], typer.Option("--pose", help="Views: a PNG from view N's camera or a JSON camera file (c2w/w2c/transform_matrix, fxfycxcy).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Output file (default: inside the run folder).")] = None,
    device: Device = None,
) -> None:
    """Render a fitted run at any resolution (super-resolution), in memory-bounded chunks."""
    import coordfit

    run = coordfit.load(run_dir, device=device or "auto")
    options = {"scale": scale, "size": _parse_size(size), "fps": fps, "frames": frames, "resolution": resolution,
               "orbit": orbit or None, "pose": pose}
    options = {k: v for k, v in options.items() if v is not None}
    path = run.render(out, **options)
    console.print(f"wrote {path}")
