"""Videos: fit a clip on a (t, y, x) grid, write reconstruction.mp4, render at any size or rate.

Sampling is the grid's split-aware sampling (:func:`coordfit.geometry.grid.sample_branches`):
``xy+t`` draws random frames x random pixel positions, ``x+y+t`` random subsets of
each axis, an unsplit model random points of the whole clip (with replacement), each in
O(batch) on the clip's device whatever the clip's length. Everything that renders
(metrics, the MP4, ``coordfit render``) goes a few frames at a time through
:func:`coordfit.geometry.grid.evaluate_grid`, so memory stays bounded by the chunk size.

A clip of one frame (a one-frame file, or ``--max-frames 1``) is fitted as it is: its
t axis holds the single coordinate 0, so the model becomes an image model, and the
outputs are a one-frame MP4 and the same metrics.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.errors import CoordfitError
from ..geometry.grid import axis_coords, evaluate_grid
from ..core.phases import Ready, Report, quiet
from .base import GridSignal, register_signal
from .options import VideoOptions
from .video_io import BUILTIN_PREFIX, frames_per_chunk, read_clip, write_mp4

__all__ = ["VideoSignal", "render_frames", "sample_frames", "DEFAULT_VIDEO"]

DEFAULT_VIDEO = BUILTIN_PREFIX + "waves"  # a procedural 96x64, 32-frame clip coordfit makes itself


@torch.no_grad()
def render_frames(model: torch.nn.Module, frames: int, height: int, width: int,
                  chunk_points: int = 1 << 20, report: Report = quiet, index: np.ndarray | None = None,
                  phase: str = "render") -> Iterator[np.ndarray]:
    """Evaluate ``model`` on a ``frames x height x width`` grid, a few frames at a time.

    Yields ``[n, H, W, C]`` float32 on [0, 1], ``report(phase, frames_done, frames)``
    as each chunk is ready; about ``chunk_points`` outputs are live at once (and
    ``evaluate_grid`` bounds the intermediate features further). ``index`` (frame
    numbers of the ``frames``) renders only those frames.
    """
    if frames < 1 or height < 1 or width < 1:
        raise CoordfitError(f"render size must be positive, got {width}x{height}x{frames}")
    param = next(model.parameters())
    ts, ys, xs = (axis_coords(n, param.device).to(param.dtype) for n in (frames, height, width))
    if index is not None:
        ts = ts[torch.as_tensor(index, device=param.device)]
    n = len(ts)
    step = frames_per_chunk(height, width, chunk_points)
    for start in range(0, n, step):
        out = evaluate_grid(model, [ts[start : start + step], ys, xs])  # [n, H, W, C]
        chunk = ((out.clamp(-1, 1) + 1.0) * 0.5).float().cpu().numpy()
        report(phase, start + len(chunk), n)
        yield chunk


def sample_frames(frames: int, height: int, width: int, points: int | None) -> np.ndarray | None:
    """Frames of an evenly spread sample of about ``points`` pixels (at least one frame, first
    and last included when two fit) -> frame numbers; None when the clip has no more than
    ``points`` pixels (or ``points`` is None)."""
    if points is None or frames * height * width <= points:
        return None
    n = max(1, min(frames, points // (height * width)))
    return np.unique(np.linspace(0, frames - 1, n).round().astype(np.int64))


def _write_mp4(path: Path, chunks: Iterator[np.ndarray], frames: int, fps: float, size: tuple[int, int],
               report: Report) -> Path:
    """:func:`write_mp4`, with ``report("export", frames_done, frames)`` as each chunk is
    encoded (the writer takes the next chunk when it is done with one) and when the file is closed."""

    def passed() -> Iterator[np.ndarray]:
        done = 0
        for chunk in chunks:
            yield chunk
            done += len(chunk)
            if done < frames:
                report("export", done, frames)

    out = write_mp4(path, passed(), fps, size)
    report("export", frames, frames)
    return out


@register_signal("video")
class VideoSignal(GridSignal):
    """A clip on axes ``(t, y, x)``; values are the pixels mapped to [-1, 1], ``[T, H, W, C]``."""

    options_cls = VideoOptions
    default_split = "xy+t"

    def __init__(self, frames01: torch.Tensor | np.ndarray, fps: float = 25.0, source: str = "<array>",
                 options: VideoOptions | None = None, source_size: tuple[int, int] | None = None,
                 copy: bool = True) -> None:
        frames = torch.as_tensor(frames01, dtype=torch.float32)  # [T, H, W, C] on [0, 1]
        if frames.dim() == 3:
            frames = frames[..., None]
        if frames.dim() != 4 or frames.shape[-1] not in (1, 3):
            raise CoordfitError(f"video frames must be [T, H, W, 1 or 3], got {tuple(frames.shape)}")
        if frames.shape[0] < 1 or frames.shape[1] < 2 or frames.shape[2] < 2:
            raise CoordfitError(f"a video needs at least one 2x2 frame, got {tuple(frames.shape[:3])}")
        if not (fps > 0):
            raise CoordfitError(f"fps must be positive, got {fps}")
        self.source = source
        self.options = options or VideoOptions()
        self.fps = float(fps)
        self.axes = ("t", "y", "x")
        self.shape = tuple(int(s) for s in frames.shape[:3])
        self.out_features = int(frames.shape[3])
        self.source_size = tuple(source_size) if source_size else (self.shape[2], self.shape[1])
        # copy=False (load) maps in place: one copy of a long clip in memory, not two
        self.values = frames * 2.0 - 1.0 if copy else frames.mul_(2.0).sub_(1.0)

    @classmethod
    def load(cls, source: str | Path | None = None, **options: Any) -> VideoSignal:
        """Read ``source`` (a video file, a folder of numbered frames, or ``builtin:waves``).

        ``options`` (:class:`~coordfit.signals.options.VideoOptions`): only frames
        ``start, start + stride, ...`` before ``end`` (at most ``max_frames``) are kept,
        resized to ``resize=(W, H)`` or by ``scale`` as they are read.
        """
        opts = cls.read_options(options)
        src = str(source) if source is not None else DEFAULT_VIDEO
        clip = read_clip(src, opts)
        if not src.startswith(BUILTIN_PREFIX):
            src = str(Path(src).resolve())
        return cls(clip.frames, clip.fps, src, opts, clip.source_size, copy=False)

    @property
    def frames(self) -> int:
        return self.shape[0]

    def meta(self) -> dict[str, Any]:
        t, h, w = self.shape
        return {
            "kind": self.kind,
            "source": self.source,
            "options": self.options.to_dict(),
            "shape": [t, h, w],
            "channels": self.out_features,
            "fps": self.fps,
            "source_size": list(self.source_size),
        }

    def _target01(self, frames: np.ndarray) -> torch.Tensor:
        """The clip's ``frames`` (numbers) on [0, 1] -> ``[n, H, W, C]``."""
        if len(frames) and frames[-1] - frames[0] == len(frames) - 1:  # consecutive: a view, no gather
            part = self.values[int(frames[0]) : int(frames[-1]) + 1]
        else:
            part = self.values[torch.as_tensor(frames, device=self.values.device)]
        return ((part.float() + 1.0) * 0.5).clamp(0.0, 1.0)

    def finish(self, model: torch.nn.Module, run_dir: Path | None = None, report: Report = quiet,
               sample: int | None = None, ready: Ready | None = None) -> tuple[dict[str, Any], list[Path]]:
        """One render, a few frames at a time: each chunk is scored (``psnr`` and ``ssim``,
        means over frames, and ``psnr_per_frame``) and, with a ``run_dir``, encoded into
        ``reconstruction.mp4`` (the fitted clip's frame count, size and frame rate).

        A clip of more than ``sample`` pixels is scored on frames spread evenly through it
        (:func:`sample_frames`, listed in ``metric_frames``), rendered first; ``metrics_on``
        says which. The MP4 is then a second render of every frame."""
        from ..core import metrics as scores

        t, h, w = self.shape
        index = sample_frames(t, h, w, sample)
        picked = np.arange(t) if index is None else index
        psnr: list[float] = []
        ssim: list[float] = []

        def scored(chunks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
            for pred in chunks:
                start, stop = len(psnr), len(psnr) + len(pred)
                target = self._target01(picked[start:stop])  # scored on the signal's device, a chunk at a time
                psnr.extend(scores.psnr(pred, target).tolist())
                ssim.extend(scores.ssim(pred, target, channel_axis=-1).tolist())
                report("metrics", stop, len(picked))
                yield pred

        outputs: list[Path] = []
        mp4 = None if run_dir is None else Path(run_dir) / "reconstruction.mp4"
        if index is None and mp4 is not None:  # one render: scored and encoded as it comes
            outputs.append(_write_mp4(mp4, scored(render_frames(model, t, h, w, report=report)),
                                      t, self.fps, (w, h), report))
        else:
            for _ in scored(render_frames(model, t, h, w, report=report, index=index,
                                          phase="render" if index is None else "metrics")):
                pass
        metrics: dict[str, Any] = {"psnr": float(np.mean(psnr)), "ssim": float(np.mean(ssim)), "psnr_per_frame": psnr}
        if index is None:
            metrics["metrics_on"] = f"all {t} frames"
        else:
            metrics["metrics_on"] = f"{len(index)} of {t} frames spread evenly through the clip (--exact-metrics: all)"
            metrics["metric_frames"] = [int(i) for i in index]
            if mp4 is not None:
                if ready is not None:
                    ready(metrics)  # every frame is rendered next
                outputs.append(_write_mp4(mp4, render_frames(model, t, h, w, report=report), t, self.fps, (w, h),
                                          report))
        return metrics, outputs

    @staticmethod
    def _render_plan(meta: dict[str, Any], scale: float | None = None, size: tuple[int, ...] | None = None,
                     fps: float | None = None, frames: int | None = None) -> tuple[int, int, int, float]:
        """(T, H, W, fps) of a render; the clip's duration is kept unless both fps and frames are given."""
        t0, h, w = meta["shape"]
        fps0 = float(meta["fps"])
        if size is not None:
            if len(size) not in (2, 3) or min(size) < 1:
                raise CoordfitError(f"--size must be WxH or WxHxFRAMES with positive numbers, got {size}")
            if len(size) == 3:
                if frames is not None and frames != size[2]:
                    raise CoordfitError(f"--size says {size[2]} frames but --frames says {frames}")
                frames = size[2]
            w, h = size[0], size[1]
            if scale is not None:
                raise CoordfitError("give --size or --scale, not both")
        elif scale is not None:
            if not scale > 0:
                raise CoordfitError(f"--scale must be positive, got {scale}")
            h, w = max(1, round(h * scale)), max(1, round(w * scale))
        if fps is not None and not 0 < fps <= 1000:  # the range fitting takes (VideoOptions)
            raise CoordfitError(f"--fps must be in (0, 1000], got {fps}")
        if frames is not None and frames < 1:
            raise CoordfitError(f"--frames must be positive, got {frames}")
        duration = t0 / fps0
        if frames is None and fps is not None:
            frames = max(1, round(duration * fps))
        elif frames is not None and fps is None:
            fps = fps0 * frames / t0
        return int(frames or t0), int(h), int(w), float(fps or fps0)

    @staticmethod
    def default_render_name(meta: dict[str, Any], *, scale: float | None = None, size: tuple[int, ...] | None = None,
                            fps: float | None = None, frames: int | None = None, **unused: Any) -> str:
        t, h, w, rate = VideoSignal._render_plan(meta, scale, size, fps, frames)
        return f"render_{w}x{h}x{t}_{rate:g}fps.mp4"

    @staticmethod
    def render_run(model: torch.nn.Module, meta: dict[str, Any], out: Path, *, scale: float | None = None,
                   size: tuple[int, ...] | None = None, fps: float | None = None, frames: int | None = None,
                   report: Report = quiet, **unused: Any) -> Path:
        """Render a fitted clip at ``scale`` x its size or ``size=(W, H[, T])``, ``frames`` and ``fps``.

        More frames than the fit is temporal super-resolution: the new frames sample the
        same time span ([-1, 1] on the t axis). Without ``fps`` the duration is kept.
        """
        bad = [k for k, v in unused.items() if v is not None]
        if bad:
            raise CoordfitError(f"a video run does not take --{bad[0].replace('_', '-')}")
        t, h, w, rate = VideoSignal._render_plan(meta, scale, size, fps, frames)
        return _write_mp4(out, render_frames(model, t, h, w, report=report), t, rate, (w, h), report)
