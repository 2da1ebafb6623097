"""Training and evaluation batches of posed views, from scene folders or the procedural renderer.

A batch is a dict of tensors::

    images         [B, Vi, 3, H, W]  input views in [0, 1]
    c2w            [B, Vi, 4, 4]
    fxfycxcy       [B, Vi, 4]
    target         [B, Vt, 3, H, W]  ground truth of the target views
    target_c2w     [B, Vt, 4, 4]
    target_fxfycxcy[B, Vt, 4]

Every batch is a pure function of its index (and the source's seed), so training is
reproducible, resumable at any step and splits across DDP ranks without overlap.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import CoordfitError
from .cameras import normalize_poses
from .procedural import ProceduralConfig, make_scene
from .scenes import Scene, load_scenes

__all__ = ["HELD_OUT_SEED", "ViewSource", "scene_batch", "held_out_scenes"]

HELD_OUT_SEED = 1_000_000_000
"""Procedural scenes with seeds from here on are never used for training."""


def scene_batch(scenes: list[Scene], input_views: int, normalize: bool = False) -> dict[str, torch.Tensor]:
    """Stack scenes into a batch: the first ``input_views`` views are inputs, the rest targets."""
    if any(s.num_views <= input_views for s in scenes):
        raise CoordfitError(f"every scene needs more than {input_views} views (inputs + at least one target)")
    if len({s.num_views for s in scenes}) > 1 or len({s.size for s in scenes}) > 1:
        raise CoordfitError("scenes in one batch must have the same number of views and image size")
    c2ws = []
    for s in scenes:
        c2w = s.c2w
        if normalize:
            ref, tgt = normalize_poses(c2w[:input_views], c2w[input_views:])
            c2w = torch.cat([ref, tgt])
        c2ws.append(c2w)
    images = torch.stack([s.images for s in scenes])
    c2w = torch.stack(c2ws)
    k = torch.stack([s.fxfycxcy for s in scenes])
    vi = input_views
    return {
        "images": images[:, :vi], "c2w": c2w[:, :vi], "fxfycxcy": k[:, :vi],
        "target": images[:, vi:], "target_c2w": c2w[:, vi:], "target_fxfycxcy": k[:, vi:],
    }


class ViewSource:
    """Draws batches either from a folder of scenes or from fresh procedural scenes."""

    def __init__(
        self,
        scenes: str | Path | None,
        size: int = 32,
        input_views: tuple[int, int] = (2, 4),
        target_views: int = 2,
        seed: int = 0,
        normalize: bool = False,
    ) -> None:
        if not 1 <= input_views[0] <= input_views[1]:
            raise CoordfitError(f"input views must be a range 1 <= min <= max, got {input_views}")
        if target_views < 1:
            raise CoordfitError(f"target views must be at least 1, got {target_views}")
        self.input_views, self.target_views = input_views, target_views
        self.seed, self.size, self.normalize = seed, size, normalize
        self.scenes = load_scenes(scenes) if scenes is not None else None
        if self.scenes is not None:
            need = input_views[1] + target_views
            few = [s.name for s in self.scenes if s.num_views < need]
            if few:
                raise CoordfitError(
                    f"scenes {few[:3]} have fewer than {need} views "
                    f"({input_views[1]} inputs + {target_views} targets)"
                )
            if len({s.size for s in self.scenes}) > 1:
                raise CoordfitError("all training scenes must have the same image size")

    def batch(self, index: int, batch_size: int) -> dict[str, torch.Tensor]:
        """Batch number ``index``; its view count is drawn from ``input_views`` per batch."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        vi = int(torch.randint(self.input_views[0], self.input_views[1] + 1, (1,), generator=g))
        views = vi + self.target_views
        if self.scenes is None:
            cfg = ProceduralConfig(size=self.size, views=views)
            first = self.seed * 10_000_000 + index * batch_size
            if first + batch_size > HELD_OUT_SEED:
                raise CoordfitError("procedural training seeds ran into the held-out range")
            picked = [make_scene(first + j, cfg) for j in range(batch_size)]
        else:
            picked = []
            for _ in range(batch_size):
                s = self.scenes[int(torch.randint(len(self.scenes), (1,), generator=g))]
                order = torch.randperm(s.num_views, generator=g)[:views]
                picked.append(Scene(s.name, s.images[order], s.c2w[order], s.fxfycxcy[order]))
        return scene_batch(picked, vi, self.normalize)


def held_out_scenes(count: int, views: int, size: int = 32) -> list[Scene]:
    """``count`` procedural scenes that training never sees."""
    cfg = ProceduralConfig(size=size, views=views)
    return [make_scene(HELD_OUT_SEED + i, cfg) for i in range(count)]
