"""Training and evaluation batches of posed views, from scene folders or the procedural renderer.

A batch is a dict of tensors::

    images         [B, Vi, 3, H, W]  input views in [0, 1]
    c2w            [B, Vi, 4, 4]
    fxfycxcy       [B, Vi, 4]
    target         [B, Vt, 3, H, W]  ground truth of the target views
    target_c2w     [B, Vt, 4, 4]
    target_fxfycxcy[B, Vt, 4]

Every batch is a pure function of its index (and the source's seed), so training is
reproducible, resumable at any step and splits across DDP ranks without overlap, and
:func:`batches` can render them ahead of the training step in background threads without
changing which batch a step sees.
"""

from __future__ import annotations

import collections
import os
import shutil
import tempfile
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from ..core.errors import CoordfitError
from ..core.io import ensure_empty_dir
from ..geometry.cameras import normalize_poses
from .procedural import ProceduralConfig, make_scene
from .scenes import Scene, load_scenes, save_scene

__all__ = ["HELD_OUT_SEED", "ViewSource", "scene_batch", "held_out_scenes", "batches", "default_workers",
           "write_scenes"]

HELD_OUT_SEED = 1_000_000_000
"""Procedural scenes with seeds from here on are never used for training."""


def scene_batch(scenes: list[Scene], input_views: int, normalize: bool = False) -> dict[str, torch.Tensor]:
    """Stack scenes into a batch: the first ``input_views`` views are inputs, the rest targets."""
    if isinstance(input_views, bool) or not isinstance(input_views, int) or input_views < 1:
        raise CoordfitError(f"--input-views must be a positive integer, got {input_views!r}")
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
        if self.scenes is None:
            ProceduralConfig(size=size, views=input_views[1] + target_views).validate()
        else:
            need = input_views[1] + target_views
            few = [s.name for s in self.scenes if s.num_views < need]
            if few:
                raise CoordfitError(
                    f"scenes {few[:3]} have fewer than {need} views "
                    f"({input_views[1]} inputs + {target_views} targets)"
                )
            if len({s.size for s in self.scenes}) > 1:
                raise CoordfitError("all training scenes must have the same image size")

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of every view this source draws."""
        return self.scenes[0].size if self.scenes is not None else (self.size, self.size)

    def check_range(self, batches: int, batch_size: int) -> None:
        """Refuse a run whose batches ``0 .. batches - 1`` would draw held-out procedural scenes."""
        if self.scenes is None and self.seed * 10_000_000 + batches * batch_size > HELD_OUT_SEED:
            raise CoordfitError(
                f"seed {self.seed} with {batches} batches of {batch_size} would draw held-out procedural "
                f"scenes (seeds from {HELD_OUT_SEED:,}); use a smaller --seed"
            )

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
    _check_count(count)
    cfg = ProceduralConfig(size=size, views=views)
    cfg.validate()
    return [make_scene(HELD_OUT_SEED + i, cfg) for i in range(count)]


def write_scenes(out: str | Path, count: int, cfg: ProceduralConfig, seed: int | None = None) -> Path:
    """Render ``count`` procedural scenes with seeds ``seed, seed + 1, ...`` (default: the
    held-out range) into the new or empty folder ``out``, in the scene JSON format.

    The scenes are written into a hidden folder beside ``out`` that is renamed into place
    when all are done: an interrupted call leaves ``out`` empty, so it can be run again."""
    _check_count(count)
    cfg.validate()
    first = HELD_OUT_SEED if seed is None else seed
    if isinstance(first, bool) or not isinstance(first, int) or not 0 <= first <= 2**63 - count:
        raise CoordfitError(f"--seed must be an integer from 0 to 2^63 - count, got {seed!r}")
    out = ensure_empty_dir(out, resumable=False)  # scenes has no --resume
    staging = Path(tempfile.mkdtemp(prefix=".tmp", dir=out.parent))  # a name clean_stale knows
    try:
        for i in range(count):
            save_scene(make_scene(first + i, cfg, name=f"scene_{i:05d}"), staging)
        staging.chmod(out.stat().st_mode)  # mkdtemp's is private to the user
        out.rmdir()
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _check_count(count: int) -> None:
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise CoordfitError(f"--count must be a positive integer, got {count!r}")


def default_workers(source: ViewSource) -> int:
    """Rendering threads :func:`batches` uses when not told: rendering procedural scenes is
    the costly part (several milliseconds a scene on one CPU core), so half the cores render, up to
    4; batches cut from a scene folder already in memory cost about a millisecond and are
    drawn in the training thread."""
    return 0 if source.scenes is not None else min(4, max(1, (os.cpu_count() or 2) // 2))


def batches(
    source: ViewSource,
    batch_size: int,
    steps: range,
    workers: int = 0,
    stride: int = 1,
    offset: int = 0,
    pin_memory: bool = False,
) -> Generator[dict[str, torch.Tensor], None, None]:
    """The batches of training steps ``steps``, in order: step s gets batch ``s * stride + offset``
    (DDP: stride = world size, offset = rank).

    ``workers > 0`` renders them ahead of the step in a pool of that many background
    threads, two batches in flight per thread, refilled as the step takes one; ``0``
    renders each one when it is asked for. Either way a step's batch depends only on its
    index, never on timing, so runs stay reproducible and resume exactly. Rendering is
    torch ops, which release the GIL, and threads cost no start-up or copies: on the
    2-core CPU they beat DataLoader worker processes (docs/nvs.md, "Batches off the
    critical path"). ``pin_memory`` (for CUDA) pins each batch in its thread so the copy
    to the device can overlap. ``close()`` the generator to stop early: it waits for the
    batches being rendered and drops the rest.
    """
    indices = [s * stride + offset for s in steps]

    def make(index: int) -> dict[str, torch.Tensor]:
        batch = source.batch(index, batch_size)
        return {k: v.pin_memory() for k, v in batch.items()} if pin_memory else batch

    if workers <= 0:
        yield from (make(i) for i in indices)
        return
    pool = ThreadPoolExecutor(workers, thread_name_prefix="coordfit-batches")
    try:
        ahead = collections.deque(pool.submit(make, i) for i in indices[: 2 * workers])
        for i in indices[2 * workers :]:
            batch = ahead.popleft().result()
            ahead.append(pool.submit(make, i))
            yield batch
        while ahead:
            yield ahead.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
