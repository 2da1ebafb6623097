"""Image metrics for view synthesis, differentiable so SSIM can also be a loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["psnr", "ssim"]


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image for ``[..., 3, H, W]`` in [0, 1] -> ``[...]``."""
    mse = (pred - target).pow(2).flatten(-3).mean(-1)
    return -10 * torch.log10(mse.clamp(min=1e-10))


def ssim(pred: torch.Tensor, target: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """SSIM per image (Gaussian window, per channel, averaged) for ``[..., C, H, W]`` -> ``[...]``.

    The window shrinks to the image size for tiny images; borders use "valid" windows.
    """
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
