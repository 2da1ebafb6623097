"""Quality metrics, wrapping scikit-image where it has them."""

from __future__ import annotations

import numpy as np

__all__ = ["image_psnr", "image_ssim"]


def image_psnr(pred01: np.ndarray, target01: np.ndarray) -> float:
    """PSNR in dB of ``[H, W, C]`` arrays on [0, 1] (prediction clipped), data range 1."""
    from skimage.metrics import peak_signal_noise_ratio

    return float(peak_signal_noise_ratio(target01.astype(np.float64), np.clip(pred01, 0, 1).astype(np.float64), data_range=1.0))


def image_ssim(pred01: np.ndarray, target01: np.ndarray) -> float:
    """SSIM of ``[H, W, C]`` arrays on [0, 1], data range 1 (scikit-image's defaults)."""
    from skimage.metrics import structural_similarity

    p = np.clip(pred01, 0, 1).astype(np.float64)
    t = target01.astype(np.float64)
    win = min(7, min(t.shape[0], t.shape[1]))
    win -= 1 - win % 2  # odd window that fits small images
    if win < 3:
        return float("nan")
    return float(structural_similarity(t, p, data_range=1.0, channel_axis=-1, win_size=win))
