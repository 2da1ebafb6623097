"""Image quality metrics in torch, batched over images and run where the pixels are: the one
home of PSNR and SSIM in coordfit.

- :func:`psnr_from_mse` is the one PSNR formula; :func:`psnr` scores each image of a batch,
  :func:`image_psnr` all pixels at once. Training reads it from a batch's MSE on the device.
- :func:`ssim` is SSIM as scikit-image computes it (``structural_similarity`` with its
  defaults: a 7 x 7 uniform window, sample covariance, K1 = 0.01, K2 = 0.03, the mean over
  the pixels whose window fits and over channels), tested equal to it: the figure every
  ``ssim`` a user reads (metrics.json, ``coordfit nvs eval``) reports.
- :func:`gaussian_ssim` is the 11 x 11 Gaussian-window SSIM (sigma 1.5, population
  covariance: Wang et al. 2004, scikit-image's ``gaussian_weights=True,
  use_sample_covariance=False``), the figure the view-synthesis papers (LVSM,
  Efficient-LVSM) report; differentiable, it is also the SSIM term of the ``nvs train`` loss.

Computed here rather than through scikit-image so that a video's frames are scored in one
batched call on the render's device, and so that a run does not pay for importing SciPy
(seconds on a busy machine) after training.
"""

from __future__ import annotations

import math
from typing import Union, overload

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["psnr_from_mse", "psnr", "ssim", "gaussian_ssim", "image_psnr", "image_ssim"]

Pixels = Union[np.ndarray, torch.Tensor]
_MSE_FLOOR = 1e-20  # identical images: a finite PSNR (200 dB on [0, 1]) instead of infinity


@overload
def psnr_from_mse(mse: float, data_range: float = 1.0) -> float: ...
@overload
def psnr_from_mse(mse: torch.Tensor, data_range: float = 1.0) -> torch.Tensor: ...
def psnr_from_mse(mse: float | torch.Tensor, data_range: float = 1.0) -> float | torch.Tensor:
    """PSNR in dB, ``10 log10(data_range^2 / mse)``; a tensor stays on its device (no host sync)."""
    if isinstance(mse, torch.Tensor):
        return 10.0 * torch.log10(data_range**2 / mse.clamp_min(_MSE_FLOOR))
    return 10.0 * math.log10(data_range**2 / max(mse, _MSE_FLOOR))


def _tensor(a: Pixels, device: torch.device | None = None) -> torch.Tensor:
    t = torch.from_numpy(np.asarray(a)) if isinstance(a, np.ndarray) else a
    device = t.device if device is None else device
    dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
    return t.to(device, dtype)


def psnr(pred01: Pixels, target01: Pixels) -> torch.Tensor:
    """PSNR in dB of each image of ``[..., H, W, C]`` or ``[..., C, H, W]`` on [0, 1] (the
    mean squared error over its last three dimensions; prediction clipped) -> ``[...]``."""
    t = _tensor(target01)
    p = _tensor(pred01, t.device).clamp(0, 1)
    return psnr_from_mse((p - t).square().flatten(-3).mean(-1))


def ssim(pred01: Pixels, target01: Pixels, channel_axis: int = -3, pixels: int = 1 << 16) -> torch.Tensor:
    """SSIM as scikit-image computes it, of each image on [0, 1], data range 1 -> ``[...]``:
    ``[..., C, H, W]`` (``channel_axis=-3``) or ``[..., H, W, C]`` (``channel_axis=-1``); NaN
    for images smaller than 3 x 3. Computed an image, or a slab of rows, of about ``pixels``
    pixels at a time: the working set stays in cache and memory stays bounded."""
    t = _tensor(target01).movedim(channel_axis, -3)
    p = _tensor(pred01, t.device).clamp(0, 1).movedim(channel_axis, -3)
    lead, (c, h, w) = t.shape[:-3], t.shape[-3:]
    t, p = t.reshape(-1, c, h, w), p.reshape(-1, c, h, w)  # [N, C, H, W]
    n = t.shape[0]
    win = min(7, h, w)
    win -= 1 - win % 2  # an odd window that fits small images
    if win < 3:
        return torch.full(lead, math.nan, dtype=t.dtype, device=t.device)
    rows = max(1, pixels // w)  # rows of SSIM per slab; a slab reads win - 1 more
    total = torch.zeros(n, dtype=t.dtype, device=t.device)
    for i in range(n):
        for start in range(0, h - win + 1, rows):
            sl = slice(start, start + rows + win - 1)
            total[i] += _ssim_map(p[i : i + 1, :, sl], t[i : i + 1, :, sl], win).sum()
    return (total / ((h - win + 1) * (w - win + 1) * c)).reshape(lead)


def _box(x: torch.Tensor, win: int) -> torch.Tensor:
    """Mean over each ``win x win`` window that fits in ``[N, C, H, W]`` (a separable sum of shifted views)."""
    h, w = x.shape[2] - win + 1, x.shape[3] - win + 1
    rows = x[:, :, :h].clone()
    for i in range(1, win):
        rows += x[:, :, i : i + h]
    out = rows[..., :w].clone()
    for i in range(1, win):
        out += rows[..., i : i + w]
    return out / (win * win)


def _ssim_map(p: torch.Tensor, t: torch.Tensor, win: int) -> torch.Tensor:
    """SSIM at every pixel whose ``win x win`` window fits in ``[N, C, H, W]`` -> ``[N, C, H-win+1, W-win+1]``."""
    c = p.shape[1]
    up, ut, upp, utt, upt = _box(torch.cat([p, t, p * p, t * t, p * t], 1), win).split(c, 1)
    cov = win * win / (win * win - 1.0)  # sample covariance, as scikit-image's default
    vp, vt, vpt = cov * (upp - up * up), cov * (utt - ut * ut), cov * (upt - up * ut)
    c1, c2 = 0.01**2, 0.03**2
    return (2 * up * ut + c1) * (2 * vpt + c2) / ((up * up + ut * ut + c1) * (vp + vt + c2))


def image_psnr(pred01: Pixels, target01: Pixels) -> float:
    """PSNR in dB of two arrays of pixels on [0, 1] (``[H, W, C]``, or frames), over all of them."""
    return float(psnr(_tensor(pred01).reshape(1, 1, -1), _tensor(target01).reshape(1, 1, -1)))


def image_ssim(pred01: Pixels, target01: Pixels) -> float:
    """:func:`ssim` of one ``[H, W, C]`` image."""
    return float(ssim(pred01, target01, channel_axis=-1))


def gaussian_ssim(pred: torch.Tensor, target: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """SSIM with an 11 x 11 Gaussian window (sigma 1.5, population covariance), per channel
    and averaged, for ``[..., C, H, W]`` -> ``[...]``: the view-synthesis papers' figure,
    equal to scikit-image's with ``gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False``; differentiable (a loss term). The window shrinks to the
    image size for tiny images; borders use "valid" windows. Not :func:`ssim`."""
    lead, (c, h, w) = pred.shape[:-3], pred.shape[-3:]
    x, y = pred.reshape(-1, c, h, w), target.reshape(-1, c, h, w)
    window = min(window, h, w)
    coords = torch.arange(window, dtype=x.dtype, device=x.device) - (window - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :]).expand(c, 1, window, window).contiguous()

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, kernel, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.flatten(1).mean(-1).reshape(lead)
