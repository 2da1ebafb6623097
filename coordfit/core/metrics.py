"""Image quality metrics in torch, batched over frames and run where the pixels are.

PSNR and SSIM as scikit-image computes them (``peak_signal_noise_ratio``;
``structural_similarity`` with its defaults: a 7 x 7 uniform window, sample covariance,
K1 = 0.01, K2 = 0.03, the mean over the pixels whose window fits and over channels),
tested equal to it. Computed here rather than through scikit-image so that a video's
frames are scored in one batched call on the render's device, and so that a run does not
pay for importing SciPy (seconds on a busy machine) after training.
"""

from __future__ import annotations

import math
from typing import Union

import numpy as np
import torch

__all__ = ["image_psnr", "image_ssim", "frame_psnr", "frame_ssim"]

Pixels = Union[np.ndarray, torch.Tensor]


def _tensor(a: Pixels, device: torch.device | None = None) -> torch.Tensor:
    t = torch.from_numpy(np.asarray(a)) if isinstance(a, np.ndarray) else a
    device = t.device if device is None else device
    dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
    return t.to(device, dtype)


def frame_psnr(pred01: Pixels, target01: Pixels) -> torch.Tensor:
    """PSNR in dB of each ``[N, H, W, C]`` frame on [0, 1] (prediction clipped), data range 1 -> ``[N]``."""
    t = _tensor(target01)
    p = _tensor(pred01, t.device).clamp(0, 1)
    mse = (p - t).square().flatten(1).mean(1)
    return 10.0 * torch.log10(1.0 / mse)


def frame_ssim(pred01: Pixels, target01: Pixels, pixels: int = 1 << 16) -> torch.Tensor:
    """SSIM of each ``[N, H, W, C]`` frame on [0, 1], data range 1 -> ``[N]`` (NaN for
    frames smaller than 3 x 3). Computed a frame, or a slab of rows, of about ``pixels``
    pixels at a time: the working set stays in cache and memory stays bounded."""
    t = _tensor(target01).movedim(-1, 1)  # [N, C, H, W]
    p = _tensor(pred01, t.device).clamp(0, 1).movedim(-1, 1)
    n, _, h, w = t.shape
    win = min(7, h, w)
    win -= 1 - win % 2  # an odd window that fits small images
    if win < 3:
        return torch.full((n,), math.nan, dtype=t.dtype, device=t.device)
    rows = max(1, pixels // w)  # rows of SSIM per slab; a slab reads win - 1 more
    total = torch.zeros(n, dtype=t.dtype, device=t.device)
    for i in range(n):
        for start in range(0, h - win + 1, rows):
            sl = slice(start, start + rows + win - 1)
            total[i] += _ssim_map(p[i : i + 1, :, sl], t[i : i + 1, :, sl], win).sum()
    return total / ((h - win + 1) * (w - win + 1) * t.shape[1])


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
    return float(frame_psnr(_tensor(pred01).reshape(1, -1), _tensor(target01).reshape(1, -1))[0])


def image_ssim(pred01: Pixels, target01: Pixels) -> float:
    """SSIM of ``[H, W, C]`` arrays on [0, 1], data range 1 (scikit-image's defaults)."""
    return float(frame_ssim(_tensor(pred01)[None], _tensor(target01)[None])[0])
