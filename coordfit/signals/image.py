"""Images: read PNG/JPEG/TIFF/BMP (8/16 bit, gray/RGB/RGBA), fit on a (y, x) grid, render."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.errors import CoordfitError
from ..geometry.grid import axis_coords, evaluate_grid
from ..core.io import atomic_write
from ..core.phases import Ready, Report, quiet
from .base import GridSignal, register_signal
from .options import ImageOptions

__all__ = ["ImageSignal", "read_image", "render_image", "render_size", "sample_rows", "save_image", "BUILTIN_IMAGES"]

# Sample photos that ship inside scikit-image (no download): `coordfit image skimage:camera`.
BUILTIN_IMAGES = ("astronaut", "camera", "coffee", "chelsea", "rocket", "brick", "moon")
DEFAULT_IMAGE = "skimage:astronaut"


def read_image(source: str | Path) -> tuple[np.ndarray, int]:
    """Read an image as float32 ``[H, W, C]`` on [0, 1] and its bit depth (8 or 16).

    ``source`` is a path or ``skimage:<name>`` for a sample image shipped with
    scikit-image. Raises :class:`CoordfitError` with one line for anything unreadable.
    """
    src = str(source)
    if src.startswith("skimage:"):
        name = src.split(":", 1)[1]
        if name not in BUILTIN_IMAGES:
            raise CoordfitError(f"unknown built-in image '{name}' (choose from: {', '.join(BUILTIN_IMAGES)})")
        from skimage import data

        arr = getattr(data, name)()
    else:
        path = Path(src)
        if not path.exists():
            raise CoordfitError(f"{path} does not exist")
        if path.is_dir():
            raise CoordfitError(f"{path} is a folder, not an image")
        if path.stat().st_size == 0:
            raise CoordfitError(f"{path} is empty")
        arr = _read_png16(path) if _is_png16_multichannel(path) else _read_any(path)
    arr = np.asarray(arr)
    if arr.ndim == 4:
        if arr.shape[0] != 1:
            raise CoordfitError(f"{src} holds {arr.shape[0]} frames; fit it with `coordfit video`")
        arr = arr[0]
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 2, 3, 4):
        raise CoordfitError(f"{src} has an unsupported pixel layout {arr.shape}")
    if arr.shape[0] < 2 or arr.shape[1] < 2:
        raise CoordfitError(f"{src} is {arr.shape[1]}x{arr.shape[0]} pixels; an image needs at least 2x2")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0, 8
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0, 16
    if arr.dtype == bool:
        return arr.astype(np.float32), 8
    if np.issubdtype(arr.dtype, np.integer):
        info = np.iinfo(arr.dtype)
        return (arr.astype(np.float64) - info.min) / (info.max - info.min), 16
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise CoordfitError(f"{src} holds NaN or infinite pixel values")
    return np.clip(arr, 0.0, 1.0), 16


# Colour models whose channels are not R, G, B (and alpha): read converted to RGB, not
# fitted as if C, M, Y were colours and K alpha.
_CONVERT_TO_RGB = ("CMYK", "YCbCr", "LAB", "HSV")


def _read_any(path: Path) -> np.ndarray:
    import imageio.v3 as iio

    try:
        mode = iio.immeta(path).get("mode")
    except Exception:  # not every plugin reports metadata; imread below says what is wrong
        mode = None
    try:
        return iio.imread(path, mode="RGB") if mode in _CONVERT_TO_RGB else iio.imread(path)
    except Exception as exc:  # imageio's decoders raise anything on corrupt bytes (ZeroDivisionError too)
        raise _unreadable(path, exc) from None


def _unreadable(path: Path, exc: Exception) -> CoordfitError:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if reason.startswith("Could not find a backend"):  # imageio's words, with a stray backtick
        reason = "no reader recognises its content"
    return CoordfitError(f"cannot read {path} as an image ({reason})")


def _is_png16_multichannel(path: Path) -> bool:
    """A 16-bit PNG with colour or alpha: Pillow (imageio's PNG reader) would cut it to 8 bit."""
    with open(path, "rb") as f:
        head = f.read(26)
    return head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) == 26 and head[24] == 16 and head[25] in (2, 4, 6)


def _read_png16(path: Path) -> np.ndarray:
    import png

    try:
        width, height, rows, info = png.Reader(filename=str(path)).asDirect()
        arr = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows])
    except (png.Error, EOFError) as exc:  # a malformed or truncated file; a bug here stays a traceback
        raise _unreadable(path, exc) from None
    return arr.reshape(height, width, info["planes"])


def _write_png(path: Path, out: np.ndarray) -> None:
    """8-bit through imageio; 16-bit colour/alpha through pypng (Pillow cannot write it)."""
    channels = 1 if out.ndim == 2 else out.shape[-1]
    if out.dtype == np.uint16 and channels > 1:
        import png

        h, w = out.shape[:2]
        writer = png.Writer(w, h, greyscale=channels <= 2, alpha=channels in (2, 4), bitdepth=16)
        with open(path, "wb") as f:
            writer.write(f, out.reshape(h, w * channels))
        return
    import imageio.v3 as iio

    iio.imwrite(path, out, extension=".png")


def save_image(path: str | Path, img01: np.ndarray, bit_depth: int = 8) -> Path:
    """Write ``[H, W, C]`` on [0, 1] as PNG (8 or 16 bit), atomically."""
    img = np.clip(img01, 0.0, 1.0)
    if bit_depth == 16:
        out = np.round(img * 65535.0).astype(np.uint16)
    else:
        out = np.round(img * 255.0).astype(np.uint8)
    if out.shape[-1] == 1:
        out = out[..., 0]
    return atomic_write(path, lambda p: _write_png(p, out))


@torch.no_grad()
def render_image(model: torch.nn.Module, height: int, width: int, chunk: int | None = None,
                 report: Report = quiet, rows: np.ndarray | None = None, phase: str = "render") -> np.ndarray:
    """Evaluate ``model`` on an ``height x width`` grid -> ``[H, W, C]`` on [0, 1].

    Rendered in slabs of rows of about 262,144 pixels (``report(phase, rows, height)``
    after each), through :func:`evaluate_grid` in chunks of ``chunk`` outputs. ``rows``
    (indices into the height) renders only those rows -> ``[len(rows), W, C]``.
    """
    if height < 1 or width < 1:
        raise CoordfitError(f"render size must be positive, got {width}x{height}")
    n = height if rows is None else len(rows)
    need = n * width * model.info.out_features * 4 * 3  # float32 output, its [0, 1] copy, the PNG array
    have = _physical_memory()
    if have and need > have:
        raise CoordfitError(f"a {width}x{height} render needs about {need / 2**30:,.0f} GiB of memory; "
                            f"this machine has {have / 2**30:,.0f} GiB")
    device = next(model.parameters()).device
    ys, xs = axis_coords(height, device), axis_coords(width, device)
    if rows is not None:
        ys = ys[torch.as_tensor(rows, device=device)]
    out = np.empty((n, width, model.info.out_features), np.float32)
    slab = max(1, (1 << 18) // width)
    for start in range(0, n, slab):
        part = evaluate_grid(model, [ys[start : start + slab], xs], chunk=chunk)
        out[start : start + slab] = ((part.clamp(-1, 1) + 1.0) * 0.5).cpu().numpy()
        report(phase, min(start + slab, n), n)
    return out


def sample_rows(height: int, width: int, points: int | None, band: int = 32) -> np.ndarray | None:
    """Rows of an evenly spread sample of about ``points`` pixels: bands of ``band`` rows
    (whole rows, so SSIM sees neighbourhoods) spaced evenly down the image -> ``[bands, band]``
    row indices; None when the image has no more than ``points`` pixels (or ``points`` is None)."""
    if points is None or height * width <= points:
        return None
    band = min(band, height)
    bands = max(1, min(height // band, points // (band * width)))
    starts = np.linspace(0, height - band, bands).round().astype(np.int64)
    return starts[:, None] + np.arange(band)[None, :]


def render_size(meta: dict[str, Any], scale: float | None = None,
                size: tuple[int, int] | None = None) -> tuple[int, int]:
    """``(H, W)`` of a render of a fitted image: ``size=(W, H)``, or ``scale`` x its size, or its size."""
    h, w = meta["shape"]
    if size is not None and scale is not None:
        raise CoordfitError("give --size or --scale, not both")
    if size is not None:
        if len(size) != 2 or min(size) < 1:
            raise CoordfitError(f"--size must be WxH with positive numbers, got {size}")
        w, h = size
    elif scale is not None:
        if not scale > 0:
            raise CoordfitError(f"--scale must be positive, got {scale}")
        h, w = max(1, round(h * scale)), max(1, round(w * scale))
    return int(h), int(w)


def _physical_memory() -> int | None:
    """Bytes of RAM, or None where the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _fit_size(pixels: np.ndarray, size: int) -> np.ndarray:
    """``pixels [H, W, C]`` resized (anti-aliased) so that the longer side is ``size``."""
    from skimage.transform import resize

    h, w = pixels.shape[:2]
    scale = size / max(h, w)
    shape = (max(2, round(h * scale)), max(2, round(w * scale)), pixels.shape[2])
    return resize(pixels, shape, anti_aliasing=True, preserve_range=True).astype(np.float32)


@register_signal("image")
class ImageSignal(GridSignal):
    """An image on axes ``(y, x)``; values are the pixels mapped to [-1, 1]."""

    options_cls = ImageOptions
    default_split = "x+y"

    def __init__(self, pixels01: np.ndarray, source: str = "<array>", bit_depth: int = 8, alpha: str = "keep") -> None:
        if pixels01.ndim == 2:
            pixels01 = pixels01[:, :, None]
        self.source = source
        self.bit_depth = bit_depth
        self.alpha = alpha
        self.size: int | None = None  # the longer side it was resized to on loading (ImageOptions.size)
        self.pixels01 = np.ascontiguousarray(pixels01, dtype=np.float32)  # [H, W, C] on [0, 1]
        self.axes = ("y", "x")
        self.shape = tuple(self.pixels01.shape[:2])
        self.out_features = self.pixels01.shape[2]
        self.values = torch.from_numpy(self.pixels01 * 2.0 - 1.0)

    @classmethod
    def load(cls, source: str | Path | None = None, **options: Any) -> ImageSignal:
        """Read ``source`` (a path or ``skimage:<name>``; default: the astronaut photo);
        ``options``: :class:`~coordfit.signals.options.ImageOptions`."""
        opts = cls.read_options(options)
        source = str(source) if source is not None else DEFAULT_IMAGE
        pixels, depth = read_image(source)
        if opts.alpha == "drop" and pixels.shape[-1] in (2, 4):
            pixels = pixels[..., :-1]
        if opts.size is not None:
            pixels = _fit_size(pixels, opts.size)
        if not source.startswith("skimage:"):
            source = str(Path(source).resolve())
        signal = cls(pixels, source=source, bit_depth=depth, alpha=opts.alpha)
        signal.size = opts.size
        return signal

    def meta(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "source": self.source,
            "options": {"alpha": self.alpha, **({"size": self.size} if self.size is not None else {})},
            "shape": list(self.shape),
            "channels": self.out_features,
            "bit_depth": self.bit_depth,
        }

    def finish(self, model: torch.nn.Module, run_dir: Path | None = None, report: Report = quiet,
               sample: int | None = None, ready: Ready | None = None) -> tuple[dict[str, Any], list[Path]]:
        """``psnr`` and ``ssim`` of one render, which is also ``reconstruction.png``; an image
        of more than ``sample`` pixels is scored on bands of rows spread evenly down it
        (:func:`sample_rows`), rendered first, and ``metrics_on`` says which."""
        from ..core.metrics import image_psnr, image_ssim, ssim

        h, w = self.shape
        bands = sample_rows(h, w, sample)
        recon = None
        if bands is None:
            recon = render_image(model, h, w, report=report)
            metrics = {"psnr": image_psnr(recon, self.pixels01), "ssim": image_ssim(recon, self.pixels01),
                       "metrics_on": f"all {h * w:,} pixels"}
        else:
            part = render_image(model, h, w, rows=bands.reshape(-1), report=report, phase="metrics")
            part, target = part.reshape(*bands.shape, w, -1), self.pixels01[bands]  # [bands, rows, W, C]
            ssim_bands = float(ssim(part, target, channel_axis=-1).mean())
            metrics = {"psnr": image_psnr(part, target), "ssim": ssim_bands,
                       "metrics_on": f"{bands.size * w:,} of {h * w:,} pixels: {len(bands)} band"
                       f"{'s' if len(bands) > 1 else ''} of {bands.shape[1]} rows spread evenly down the image "
                       "(--exact-metrics: all)",
                       "metric_bands": [int(r[0]) for r in bands]}  # the first row of each
            if ready is not None and run_dir is not None:
                ready(metrics)  # the full render comes next
        report("metrics", 1, 1)
        if run_dir is None:
            return metrics, []
        if recon is None:
            recon = render_image(model, h, w, report=report)
        path = save_image(Path(run_dir) / "reconstruction.png", recon, self.bit_depth)
        report("export", 1, 1)
        return metrics, [path]

    @staticmethod
    def default_render_name(meta: dict[str, Any], *, scale: float | None = None,
                            size: tuple[int, int] | None = None, **unused: Any) -> str:
        h, w = render_size(meta, scale, size)
        return f"render_{w}x{h}.png"

    @staticmethod
    def render_run(model: torch.nn.Module, meta: dict[str, Any], out: Path, *, scale: float | None = None,
                   size: tuple[int, int] | None = None, report: Report = quiet, **unused: Any) -> Path:
        """Render a fitted image at ``scale`` x its size or at ``size=(W, H)``."""
        bad = [k for k, v in unused.items() if v is not None]
        if bad:
            raise CoordfitError(f"an image run does not take --{bad[0].replace('_', '-')}")
        h, w = render_size(meta, scale, size)
        path = save_image(out, render_image(model, h, w, report=report), meta.get("bit_depth", 8))
        report("export", 1, 1)
        return path
