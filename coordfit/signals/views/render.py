"""Rendering a fitted radiance field: cameras to images, a views run's outputs, ``coordfit render``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ...core.errors import CoordfitError
from ...core.io import atomic_write, read_json
from ...core.phases import Report, quiet
from ...geometry.rig import Rig, orbit_poses
from ...geometry.volume import RaySampling, SceneBox, camera_rays, render_rays
from ..image import render_size

if TYPE_CHECKING:
    from .signal import ViewsSignal

__all__ = ["render_camera", "write_outputs_for", "write_comparison", "render_name", "render_from_meta"]

_POINTS_PER_CHUNK = 1 << 18  # ray samples alive at once while rendering
_ORBIT_FRAMES, _ORBIT_FPS, _ORBIT_MAX_SIDE = 48, 24.0, 256
_PSEUDO_SHOWN = 64  # pseudo views tiled in pseudo_views.png (the first ones)
_LABELS = {"nearest": "nearest input", "prior": "prior alone", "fit_no_prior": "fit, no prior",
           "fit": "fit", "truth": "ground truth"}


@torch.no_grad()
def render_camera(model: torch.nn.Module, c2w: torch.Tensor, fxfycxcy: torch.Tensor, height: int, width: int,
                  box: SceneBox, sampling: RaySampling) -> torch.Tensor:
    """One OpenCV camera (c2w ``[4, 4]`` in world units, fxfycxcy ``[4]`` for ``height x width``)
    -> image ``[3, H, W]`` on [0, 1] (CPU), in memory-bounded chunks of rays."""
    dev = next(model.parameters()).device
    o, d = camera_rays(c2w[None].float().to(dev), fxfycxcy[None].float().to(dev), height, width, box)
    chunk = max(1, _POINTS_PER_CHUNK // sampling.total)
    rgb = torch.cat([render_rays(model, o[i : i + chunk], d[i : i + chunk], sampling) for i in range(0, len(o), chunk)])
    return rgb.clamp(0, 1).reshape(height, width, 3).permute(2, 0, 1).cpu()


def _to_hwc(img: torch.Tensor) -> np.ndarray:
    return img.permute(1, 2, 0).clamp(0, 1).numpy()


def _figure(path: Path, rows: list[list[tuple[str, np.ndarray]]]) -> Path:
    """A grid of labelled images (rows of (title, [H, W, 3]) cells) written as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.9 * cols, 2.0 * len(rows)), squeeze=False)
    for ax_row, row in zip(axes, rows):
        for ax, cell in zip(ax_row, row + [None] * (cols - len(row))):
            ax.axis("off")
            if cell is not None:
                ax.imshow(cell[1], interpolation="nearest")
                ax.set_title(cell[0], fontsize=8)
    fig.tight_layout()
    try:
        return atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=100))
    finally:
        plt.close(fig)


def _views_png(signal: ViewsSignal, model: torch.nn.Module, path: Path, renders: dict[str, torch.Tensor]) -> Path:
    """One row per held-out view: nearest input | prior | fit without prior | fit | truth, with PSNR."""
    from ...core.metrics import psnr

    s = signal.scene
    if not signal.holdout:  # nothing held out: show the first input views
        first = signal.inputs[:4]
        fit = signal.render(model, s.c2w[first], s.fxfycxcy[first])
        rows = [[(f"fit (input {v}) {float(psnr(f, s.images[v])):.1f} dB", _to_hwc(f)),
                 (f"input {v}", _to_hwc(s.images[v]))] for v, f in zip(first, fit)]
        return _figure(path, rows)
    truth = renders["truth"]
    order = [k for k in ("nearest", "prior", "fit_no_prior", "fit") if k in renders]
    rows = []
    for i, view in enumerate(signal.holdout):
        row = [(f"{_LABELS[k]}\n{float(psnr(renders[k][i], truth[i])):.2f} dB", _to_hwc(renders[k][i])) for k in order]
        rows.append(row + [(f"{_LABELS['truth']}\n(view {view})", _to_hwc(truth[i]))])
    return _figure(path, rows)


def _tile(images: torch.Tensor, cols: int = 8) -> np.ndarray:
    """``[N, 3, H, W]`` -> one ``[rows*H, cols*W, 3]`` mosaic."""
    n, _, h, w = images.shape
    rows = -(-n // cols)
    canvas = torch.ones(rows * cols, 3, h, w)
    canvas[:n] = images
    return canvas.view(rows, cols, 3, h, w).permute(0, 3, 1, 4, 2).reshape(rows * h, cols * w, 3).numpy()


def _orbit_size(height: int, width: int) -> tuple[int, int]:
    s = min(1.0, _ORBIT_MAX_SIDE / max(height, width))
    return max(1, round(height * s)), max(1, round(width * s))


def _write_orbit(path: Path, model: torch.nn.Module, rig: Rig, k: torch.Tensor, size: tuple[int, int],
                 image_size: tuple[int, int], box: SceneBox, sampling: RaySampling, frames: int, fps: float,
                 report: Report = quiet) -> Path:
    from ..video_io import write_mp4

    h, w = size
    k = _scale_k(k, image_size, size)
    poses = orbit_poses(rig, frames)

    def chunks():
        for i, c in enumerate(poses):
            yield _to_hwc(render_camera(model, c, k, h, w, box, sampling))[None]
            report("render", i + 1, frames)

    return write_mp4(path, chunks(), fps, (w, h))


def write_comparison(signal: ViewsSignal, model: torch.nn.Module, run_dir: Path,
                     renders: dict[str, torch.Tensor]) -> list[Path]:
    """``views.png`` from ``renders`` (:meth:`ViewsSignal.comparisons`) and, when the signal
    holds the fit without the prior, ``no_prior.safetensors``."""
    from ...core.checkpoint import save_weights

    out = [_views_png(signal, model, run_dir / "views.png", renders)]
    if signal.baseline is not None:
        out.append(save_weights(run_dir / "no_prior.safetensors", signal.baseline, signal.baseline.registry_name))
    return out


def write_outputs_for(signal: ViewsSignal, model: torch.nn.Module, run_dir: Path, renders: dict[str, torch.Tensor],
                      report: Report = quiet) -> list[Path]:
    from ..image import save_image

    out = write_comparison(signal, model, run_dir, renders)
    size = _orbit_size(signal.height, signal.width)
    k0 = signal.scene.fxfycxcy[signal.inputs[0]]
    out.append(_write_orbit(run_dir / "orbit.mp4", model, signal.rig, k0, size, (signal.height, signal.width),
                            signal.box, signal.sampling, _ORBIT_FRAMES, _ORBIT_FPS, report))
    if signal.pseudo is not None:
        pseudo = signal.pseudo.pixels[:_PSEUDO_SHOWN].permute(0, 3, 1, 2).cpu()
        out.append(save_image(run_dir / "pseudo_views.png", _tile(pseudo)))
        text = signal.prior_log()
        out.append(atomic_write(run_dir / "prior_log.csv", lambda p: p.write_text(text)))
    report("export", 1, 1)
    return out


# -- coordfit render ------------------------------------------------------------------
def _scale_k(k: torch.Tensor, image_size: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    (h0, w0), (h, w) = image_size, size
    return k * torch.tensor([w / w0, h / h0, w / w0, h / h0])


def _pose(meta: dict[str, Any], pose: Any) -> tuple[str, torch.Tensor, torch.Tensor]:
    """``pose`` -> (name, world c2w ``[4, 4]``, fxfycxcy ``[4]`` at the views' size)."""
    from ...geometry.cameras import opengl_to_opencv
    from ...nvs.scenes import _matrix as checked_matrix

    c2ws, ks = torch.tensor(meta["c2w"]), torch.tensor(meta["fxfycxcy"])
    text = str(pose)
    if text.lstrip("-").isdigit():
        i = int(text)
        if not 0 <= i < len(c2ws):
            raise CoordfitError(f"--pose {i}: the scene has views 0 to {len(c2ws) - 1}")
        return f"view{i}", c2ws[i], ks[i]
    path = Path(text)
    data = read_json(path) if path.is_file() else None
    if not isinstance(data, dict):
        raise CoordfitError(f"--pose takes a view number or a JSON file with 'c2w', 'w2c' or 'transform_matrix'; got '{text}'")
    where = f"--pose {path}"
    if "c2w" in data:
        c2w = checked_matrix(data["c2w"], f"{where} c2w")
    elif "w2c" in data:
        c2w = torch.linalg.inv(checked_matrix(data["w2c"], f"{where} w2c"))
    elif "transform_matrix" in data:
        c2w = opengl_to_opencv(checked_matrix(data["transform_matrix"], f"{where} transform_matrix"))
    else:
        raise CoordfitError(f"{where} has no 'c2w', 'w2c' or 'transform_matrix'")
    k = ks[0]
    if "fxfycxcy" in data:
        k = torch.tensor([float(x) for x in data["fxfycxcy"]])
        if k.numel() != 4 or not bool(torch.isfinite(k).all()) or bool((k[:2] <= 0).any()):
            raise CoordfitError(f"{where} fxfycxcy must be 4 finite numbers with positive focal lengths")
    return path.stem, c2w.float(), k.float()


def render_name(meta: dict[str, Any], *, orbit: bool | None = None, pose: Any = None, frames: int | None = None,
                size: tuple[int, ...] | None = None, scale: float | None = None, **unused: Any) -> str:
    h, w = render_size({"shape": meta["image_size"]}, scale, size)
    if orbit:
        return f"orbit_{w}x{h}_{frames or _ORBIT_FRAMES}f.mp4"
    if pose is not None:
        return f"pose_{_pose(meta, pose)[0]}_{w}x{h}.png"
    return f"render_{w}x{h}.png"


def render_from_meta(model: torch.nn.Module, meta: dict[str, Any], out: Path, *, orbit: bool | None = None,
                     pose: Any = None, frames: int | None = None, fps: float | None = None,
                     size: tuple[int, ...] | None = None, scale: float | None = None, report: Report = quiet,
                     **unused: Any) -> Path:
    bad = [k for k, v in unused.items() if v is not None]
    if bad:
        raise CoordfitError(f"a views run does not take --{bad[0].replace('_', '-')}")
    if bool(orbit) == (pose is not None):
        raise CoordfitError("a views run renders with exactly one of --orbit or --pose")
    h, w = render_size({"shape": meta["image_size"]}, scale, size)
    box, sampling = SceneBox.from_dict(meta["box"]), RaySampling(**meta["sampling"])
    image_size = tuple(meta["image_size"])
    if orbit:
        if frames is not None and frames < 1:
            raise CoordfitError(f"--frames must be positive, got {frames}")
        if fps is not None and fps <= 0:
            raise CoordfitError(f"--fps must be positive, got {fps}")
        k0 = torch.tensor(meta["fxfycxcy"][meta["inputs"][0]])
        return _write_orbit(out, model, Rig.from_dict(meta["rig"]), k0, (h, w), image_size, box, sampling,
                            frames or _ORBIT_FRAMES, fps or _ORBIT_FPS, report)
    from ..image import save_image

    _, c2w, k = _pose(meta, pose)
    image = _to_hwc(render_camera(model, c2w, _scale_k(k, image_size, (h, w)), h, w, box, sampling))
    report("render", 1, 1)
    return save_image(out, image)
