"""Score a view-synthesis model on held-out views beside two trivial baselines.

Baselines: the *nearest input view* (the input camera whose centre is closest to the
target camera, copied as is) and the *mean of the input views*. A model that has learnt
nothing about 3D should not beat the mean by much; the nearest view is what a viewer
would see by snapping to the closest photo.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.metrics import gaussian_ssim, psnr, ssim
from .data import scene_batch
from .scenes import Scene

__all__ = ["evaluate", "baselines"]


def baselines(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Nearest-input-view and mean-of-inputs predictions ``[B, Vt, 3, H, W]``."""
    centres_in = batch["c2w"][:, :, :3, 3]  # [B, Vi, 3]
    centres_t = batch["target_c2w"][:, :, :3, 3]  # [B, Vt, 3]
    nearest = torch.cdist(centres_t, centres_in).argmin(-1)  # [B, Vt]
    imgs = batch["images"]
    near = imgs[torch.arange(imgs.shape[0])[:, None], nearest]
    mean = imgs.mean(1, keepdim=True).expand_as(batch["target"])
    return {"nearest_view": near, "mean_of_inputs": mean}


@torch.no_grad()
def evaluate(
    model: nn.Module,
    scenes: list[Scene],
    input_views: int,
    device: torch.device | str = "cpu",
    batch_size: int = 8,
    normalize: bool = False,
) -> dict[str, dict[str, float]]:
    """Mean PSNR and SSIM of the model and the baselines over every target view; the first
    ``input_views`` views of every scene are inputs, the others are targets (scenes may
    differ in view count and image size). ``ssim`` is scikit-image's, ``gaussian_ssim`` the
    11 x 11 Gaussian one the view-synthesis papers report (:mod:`coordfit.core.metrics`).

    Returns ``{"model": {"psnr": .., "ssim": .., "gaussian_ssim": ..}, "nearest_view": {...},
    "mean_of_inputs": {...}}``.
    """
    model.eval().to(device)
    sums: dict[str, list[torch.Tensor]] = {}
    groups: dict[tuple[int, tuple[int, int]], list[Scene]] = {}  # a batch needs one view count and size
    for scene in scenes:
        groups.setdefault((scene.num_views, scene.size), []).append(scene)
    chunks = [group[i : i + batch_size] for group in groups.values() for i in range(0, len(group), batch_size)]
    for chunk in chunks:
        batch = scene_batch(chunk, input_views, normalize)
        batch = {k: v.to(device) for k, v in batch.items()}
        preds = {"model": model(batch["images"], batch["c2w"], batch["fxfycxcy"],
                                batch["target_c2w"], batch["target_fxfycxcy"]).clamp(0, 1)}
        preds.update(baselines(batch))
        for name, pred in preds.items():
            sums.setdefault(name + ".psnr", []).append(psnr(pred, batch["target"]).flatten().cpu())
            sums.setdefault(name + ".ssim", []).append(ssim(pred, batch["target"]).flatten().cpu())
            sums.setdefault(name + ".gaussian_ssim", []).append(gaussian_ssim(pred, batch["target"]).flatten().cpu())
    out: dict[str, dict[str, float]] = {}
    for key, vals in sums.items():
        name, metric = key.split(".")
        out.setdefault(name, {})[metric] = round(float(torch.cat(vals).mean()), 4)
    return out
