"""Reading clips frame by frame (only the frames asked for) and writing MP4, atomically.

Containers (MP4/WebM/AVI/MKV/MOV) go through imageio's FFMPEG plugin, which uses the
ffmpeg binary that imageio-ffmpeg ships; GIFs through Pillow; a folder of numbered
images frame by frame. Frames outside the range asked for are decoded and dropped at
once, so a long HD clip never sits in memory whole. Every failure is one
:class:`CoordfitError` line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.errors import CoordfitError
from ..core.io import atomic_write
from .options import VideoOptions

__all__ = ["VideoOptions", "Clip", "read_clip", "write_mp4", "builtin_frames", "BUILTIN_PREFIX"]

FRAME_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
BUILTIN_PREFIX = "builtin:"
BUILTIN_CLIPS = ("waves",)
_FOLDER_FPS = 25.0  # frame rate assumed for a folder of frames unless --fps says otherwise


@dataclass
class Clip:
    """Frames read from a source: ``frames [T, H, W, C]`` float32 on [0, 1]."""

    frames: torch.Tensor
    fps: float  # frame rate of the kept frames (the source's divided by the stride)
    source_size: tuple[int, int]  # (W, H) of the frames in the file


# -- reading --------------------------------------------------------------------------
def read_clip(source: str | Path, options: VideoOptions) -> Clip:
    """Read the frames ``options`` select from ``source`` (file, folder or ``builtin:``)."""
    options.validate()
    src = str(source)
    if src.startswith(BUILTIN_PREFIX):
        name = src[len(BUILTIN_PREFIX):]
        if name not in BUILTIN_CLIPS:
            raise CoordfitError(f"unknown built-in clip '{name}' (choose from: {', '.join(BUILTIN_CLIPS)})")
        frames, fps = builtin_frames(name), 12.0
        label = src
    else:
        path = Path(src)
        label = str(path)
        if not path.exists():
            raise CoordfitError(f"{path} does not exist")
        if path.is_dir():
            frames, fps = _folder_frames(path)
        else:
            if path.stat().st_size == 0:
                raise CoordfitError(f"{path} is empty")
            if path.suffix.lower() in FRAME_EXTS:
                raise CoordfitError(f"{path} is a single image; fit it with `coordfit image {path}`")
            frames, fps, declared = _container_frames(path)
            frames = _check_complete(frames, declared, path, options)
    fps = options.fps or fps
    return _select(frames, label, options, fps / options.stride)


def _select(frames: Iterator[np.ndarray], label: str, options: VideoOptions, fps: float) -> Clip:
    kept: list[torch.Tensor] = []
    seen = 0
    source_size = (0, 0)
    try:
        for index, frame in enumerate(frames):
            if index == 0:
                source_size = (int(np.shape(frame)[1]), int(np.shape(frame)[0]))
            seen = index + 1
            keep, stop = options.wants(index, len(kept))
            if keep:
                kept.append(_resize(_compact(frame, label, index), options))
            if stop:
                break
    finally:
        frames.close()  # type: ignore[attr-defined]  # stops the decoder (ffmpeg) at once
    if seen == 0:
        raise CoordfitError(f"{label} holds no video frames")
    if not kept:
        raise CoordfitError(f"--start {options.start} is past the last frame of {label} (it has {seen} frames)")
    shapes = {tuple(f.shape) for f in kept}
    if len(shapes) > 1:
        raise CoordfitError(f"{label} has frames of different sizes {sorted(shapes)[:2]}; use --resize WxH")
    out = torch.empty((len(kept), *kept[0].shape), dtype=torch.float32)
    for i in range(len(kept)):
        out[i] = _as_float01(kept[i])
        kept[i] = None  # type: ignore[call-overload]  # free as we go
    return Clip(out, float(fps), source_size)


def _compact(frame: np.ndarray, label: str, index: int) -> torch.Tensor:
    """A decoded frame ``[H, W, C]`` kept in its own integer type (uint8: a quarter of float32)."""
    arr = np.asarray(frame)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 2, 3, 4):
        raise CoordfitError(f"{label} frame {index} has an unsupported pixel layout {arr.shape}")
    if arr.shape[-1] in (2, 4):
        arr = arr[..., :-1]  # alpha is dropped: a video is opaque
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype == np.uint16:
        arr = arr.astype(np.int32)  # torch has no uint16 arithmetic on every version
    elif arr.dtype != np.uint8:
        arr = arr.astype(np.float32)
        if not np.isfinite(arr).all():
            raise CoordfitError(f"{label} frame {index} holds NaN or infinite values")
        arr = np.clip(arr, 0.0, 1.0)
    arr = np.ascontiguousarray(arr)
    return torch.from_numpy(arr if arr.flags.writeable else arr.copy())


def _as_float01(frame: torch.Tensor) -> torch.Tensor:
    """uint8 / 16-bit (held as int32) / float frame -> float32 on [0, 1]."""
    if frame.dtype == torch.uint8:
        return frame.float().div_(255.0)
    if frame.dtype == torch.int32:
        return frame.float().div_(65535.0)
    return frame.float()


def _resize(frame: torch.Tensor, options: VideoOptions) -> torch.Tensor:
    """``[H, W, C]`` -> the size ``options`` ask for (antialiased bilinear)."""
    h, w = frame.shape[:2]
    if options.resize is not None:
        nw, nh = options.resize
    elif options.scale is not None:
        nw, nh = max(2, round(w * options.scale)), max(2, round(h * options.scale))
    else:
        if h < 2 or w < 2:
            raise CoordfitError(f"frames are {w}x{h} pixels; a video needs at least 2x2 (use --resize)")
        return frame
    if (nh, nw) == (h, w):
        return frame
    x = _as_float01(frame).permute(2, 0, 1)[None]
    y = torch.nn.functional.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
    return y[0].permute(1, 2, 0).clamp_(0.0, 1.0).contiguous()


def _ffmpeg_reason(exc: Exception) -> str:
    """The line of ffmpeg's chatter that says what is wrong (not the banner)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    keys = ("moov atom", "invalid data", "no such file", "does not contain", "error", "could not find")
    for ln in lines:
        if any(k in ln.lower() for k in keys) and "configuration:" not in ln:
            return ln.split("] ", 1)[-1][:160]
    return lines[0][:160] if lines else type(exc).__name__


def _container_frames(path: Path) -> tuple[Iterator[np.ndarray], float, int | None]:
    """A lazy frame iterator, the frame rate and the declared frame count (if known)."""
    import imageio.v2 as iio2

    gif = path.suffix.lower() == ".gif"
    try:
        reader = iio2.get_reader(path) if gif else iio2.get_reader(path, format="FFMPEG")
        meta = reader.get_meta_data()
    except Exception as exc:  # imageio/ffmpeg raise OSError, RuntimeError, ValueError...
        if "does not contain any stream" in str(exc) or "no video stream" in str(exc).lower():
            raise CoordfitError(f"{path} holds no video frames (it has no video stream)") from None
        raise CoordfitError(
            f"cannot read {path} as a video ({_ffmpeg_reason(exc)}); it may be corrupt, truncated or not a video"
        ) from None
    if gif:
        ms = float(meta.get("duration") or 100.0)
        fps = 1000.0 / ms if ms > 0 else 10.0
        declared = None
    else:
        fps = float(meta.get("fps") or 0.0) or 25.0
        duration = float(meta.get("duration") or 0.0)
        declared = round(duration * fps) if duration > 0 else None

    def frames() -> Iterator[np.ndarray]:
        index = 0
        try:
            for frame in reader.iter_data():  # ends cleanly at the last frame, for every format
                yield frame
                index += 1
        except CoordfitError:
            raise
        except Exception as exc:
            raise CoordfitError(f"{path} stops decoding at frame {index} ({_ffmpeg_reason(exc)}); it may be corrupt") from None
        finally:
            reader.close()

    return frames(), fps, declared


def _check_complete(frames: Iterator[np.ndarray], declared: int | None, path: Path,
                    options: VideoOptions) -> Iterator[np.ndarray]:
    """Pass frames through; at the end of the file, refuse one that decodes far short of its length.

    A truncated MP4 whose index sits at the front decodes its first frames and then
    just ends; ffmpeg does not complain, so compare with the declared duration x fps.
    """
    n = 0
    try:
        for frame in frames:
            yield frame
            n += 1
    finally:
        frames.close()  # type: ignore[attr-defined]
    if declared is not None and n < declared - max(2, 0.05 * declared):
        raise CoordfitError(
            f"{path} looks truncated: its header declares ~{declared} frames but only {n} decode "
            f"(fit those with --end {n})"
        )


def _frame_key(p: Path) -> tuple[str, int, str]:
    m = re.search(r"(\d+)(?!.*\d)", p.stem)
    return (p.stem[: m.start()] if m else p.stem, int(m.group(1)) if m else -1, p.name)


def _folder_frames(folder: Path) -> tuple[Iterator[np.ndarray], float]:
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in FRAME_EXTS and p.is_file()), key=_frame_key)
    if not files:
        raise CoordfitError(f"{folder} holds no video frames (no {'/'.join(e[1:] for e in FRAME_EXTS)} files)")
    prefixes = {_frame_key(p)[0] for p in files}
    if len(prefixes) > 1:
        raise CoordfitError(f"{folder} mixes frame name patterns {sorted(prefixes)[:3]}; keep one numbered sequence")

    def frames() -> Iterator[np.ndarray]:
        import imageio.v3 as iio

        for p in files:
            try:
                yield iio.imread(p)
            except Exception as exc:
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise CoordfitError(f"cannot read frame {p} ({reason})") from None

    return frames(), _FOLDER_FPS


def builtin_frames(name: str = "waves", t: int = 32, h: int = 64, w: int = 96) -> Iterator[np.ndarray]:
    """A procedural clip: drifting colour waves and a bright disc crossing the frame (uint8 RGB)."""
    y, x = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    for i in range(t):
        s = i / max(t - 1, 1)
        r = 0.5 + 0.35 * np.sin(2 * np.pi * (1.5 * x + 0.5 * y - s))
        g = 0.5 + 0.35 * np.sin(2 * np.pi * (0.7 * x - 1.2 * y + 0.8 * s) + 1.0)
        b = 0.5 + 0.35 * np.cos(2 * np.pi * (x + y) * 0.8 + 2 * np.pi * s)
        cx, cy = 0.15 + 0.7 * s, 0.5 + 0.25 * np.sin(2 * np.pi * s)
        d2 = (x - cx) ** 2 * (w / h) ** 2 + (y - cy) ** 2
        disc = 0.5 - 0.5 * np.tanh((d2 - 0.02) * 200)  # soft-edged disc, alpha on [0, 1]
        img = np.stack([r, g, b], -1) * (1 - disc[..., None]) + disc[..., None] * np.array([1.0, 0.95, 0.6])
        yield (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


# -- writing --------------------------------------------------------------------------
def write_mp4(path: str | Path, chunks: Iterable[np.ndarray], fps: float, size: tuple[int, int]) -> Path:
    """Write frames (chunks of ``[n, H, W, C]`` on [0, 1]) as H.264 MP4 at exactly (W, H).

    libx264's usual 4:2:0 chroma needs even sizes; instead of padding or scaling (which
    would change the size), odd sizes are written in 4:4:4 (``yuv444p``), which keeps
    every size but some players (browsers, QuickTime) do not open. Even sizes use
    ``yuv420p``, which plays everywhere. Quality 8 of 10 is CRF ~10 (near lossless).
    """
    import imageio.v2 as iio2

    w, h = size
    pix = "yuv420p" if w % 2 == 0 and h % 2 == 0 else "yuv444p"

    def write(tmp: Path) -> None:
        writer = iio2.get_writer(tmp, format="FFMPEG", fps=float(fps), codec="libx264", pixelformat=pix,
                                 macro_block_size=1, quality=8, ffmpeg_log_level="error")
        try:
            for chunk in chunks:
                arr = (np.clip(chunk, 0.0, 1.0) * 255.0).round().astype(np.uint8)
                if arr.shape[-1] == 1:
                    arr = np.repeat(arr, 3, axis=-1)
                for frame in arr:
                    writer.append_data(frame)
        finally:
            writer.close()

    return atomic_write(path, write)


def frames_per_chunk(h: int, w: int, points: int = 1 << 20) -> int:
    """Frames rendered together so that about ``points`` outputs are live at once."""
    return max(1, points // max(h * w, 1))

