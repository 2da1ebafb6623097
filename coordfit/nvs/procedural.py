"""A tiny ray tracer that renders random posed scenes for training and testing.

Scenes hold a few spheres and (yawed) boxes standing on a checkered ground plane
(z = 0, world z up) under a sky gradient, lit by one directional light with hard
shadows and Lambertian shading. Cameras look at the scene centre from a hemisphere or
an orbit. Everything is drawn from a ``torch.Generator`` seeded by the scene seed, so
``make_scene(seed, cfg)`` is deterministic, and a 6-view 32 px scene takes ~2 ms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from ..core.errors import CoordfitError
from ..core.registry import Config
from ..geometry.cameras import intrinsics_from_fov, look_at, pixel_rays
from .scenes import Scene

__all__ = ["ProceduralConfig", "make_scene", "render"]

_EPS = 1e-4


@dataclass
class ProceduralConfig(Config):
    """How procedural scenes are drawn: a :class:`~coordfit.core.registry.Config` (``from_dict``
    refuses unknown keys; ``validate()`` checks every choice and range, each in one line)."""

    size: int = 32
    """Image height and width in pixels."""
    views: int = 6
    """Views rendered per scene."""
    layout: Literal["hemisphere", "orbit"] = "hemisphere"
    """Random positions on a hemisphere band, or evenly spaced on one orbit."""
    objects: tuple[int, int] = (2, 4)
    """Min and max number of objects."""
    radius: tuple[float, float] = (3.5, 4.5)
    """Camera distance from the look-at point."""
    elevation_deg: tuple[float, float] = (15.0, 55.0)
    """Camera elevation range above the ground (orbit uses the middle)."""
    fov_deg: float = 50.0
    """Horizontal field of view."""

    def validate(self) -> None:
        super().validate()  # the layout's choices
        if self.size < 4:
            raise CoordfitError(f"scene size must be at least 4 px, got {self.size}")
        if self.views < 1:
            raise CoordfitError(f"views must be at least 1, got {self.views}")
        if not 0 < self.objects[0] <= self.objects[1]:
            raise CoordfitError(f"objects range must be 0 < min <= max, got {self.objects}")


@dataclass
class _World:
    spheres: torch.Tensor  # [S, 7]: centre xyz, radius, rgb
    boxes: torch.Tensor  # [B, 10]: centre xyz, half sizes xyz, yaw, rgb (rgb in the last 3)
    ground: torch.Tensor  # [7]: checker rgb a, rgb b, cell size
    sky: torch.Tensor  # [6]: horizon rgb, zenith rgb
    light: torch.Tensor  # [3] unit direction towards the light


def _uniform(g: torch.Generator, lo: float, hi: float, *shape: int) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=g)


def _random_world(g: torch.Generator, cfg: ProceduralConfig) -> _World:
    n = int(torch.randint(cfg.objects[0], cfg.objects[1] + 1, (1,), generator=g))
    centres: list[tuple[float, float, float]] = []  # x, y, footprint radius
    spheres, boxes = [], []
    for _ in range(n):
        size = float(_uniform(g, 0.3, 0.65))
        for _try in range(20):  # rejection sampling keeps objects apart
            r, a = math.sqrt(float(_uniform(g, 0, 1))) * 1.6, float(_uniform(g, 0, 2 * math.pi))
            x, y = r * math.cos(a), r * math.sin(a)
            if all(math.hypot(x - cx, y - cy) > size + cs + 0.05 for cx, cy, cs in centres):
                break
        centres.append((x, y, size * 1.3))
        colour = _uniform(g, 0.15, 1.0, 3)
        if float(_uniform(g, 0, 1)) < 0.5:
            spheres.append(torch.cat([torch.tensor([x, y, size, size]), colour]))
        else:
            half = _uniform(g, 0.6, 1.0, 3) * size
            yaw = _uniform(g, 0, math.pi / 2, 1)
            boxes.append(torch.cat([torch.tensor([x, y, float(half[2])]), half, yaw, colour]))
    base = _uniform(g, 0.2, 0.9, 3)
    ground = torch.cat([base, (base * _uniform(g, 0.3, 0.7, 1)), _uniform(g, 0.3, 0.8, 1)])
    sky = torch.cat([_uniform(g, 0.6, 1.0, 3), _uniform(g, 0.2, 0.7, 3) * torch.tensor([0.6, 0.8, 1.0])])
    az, el = float(_uniform(g, 0, 2 * math.pi)), float(_uniform(g, 0.5, 1.2))
    light = torch.tensor([math.cos(az) * math.cos(el), math.sin(az) * math.cos(el), math.sin(el)])
    return _World(
        spheres=torch.stack(spheres) if spheres else torch.zeros(0, 7),
        boxes=torch.stack(boxes) if boxes else torch.zeros(0, 10),
        ground=ground,
        sky=sky,
        light=light,
    )


def _random_cameras(g: torch.Generator, cfg: ProceduralConfig) -> torch.Tensor:
    v = cfg.views
    if cfg.layout == "orbit":
        phase = float(_uniform(g, 0, 2 * math.pi))
        az = phase + torch.arange(v) * (2 * math.pi / v)
        el = torch.full((v,), math.radians(sum(cfg.elevation_deg) / 2))
        rad = torch.full((v,), sum(cfg.radius) / 2)
    else:
        az = _uniform(g, 0, 2 * math.pi, v)
        el = torch.deg2rad(_uniform(g, *cfg.elevation_deg, v))
        rad = _uniform(g, *cfg.radius, v)
    eye = torch.stack([torch.cos(az) * torch.cos(el), torch.sin(az) * torch.cos(el), torch.sin(el)], -1)
    eye = eye * rad[:, None] + torch.tensor([0.0, 0.0, 0.3])
    return look_at(eye, torch.tensor([0.0, 0.0, 0.3]).expand(v, 3))


def make_scene(seed: int, cfg: ProceduralConfig | None = None, name: str | None = None) -> Scene:
    """Render scene number ``seed``: same seed and config, same pixels and cameras."""
    cfg = cfg or ProceduralConfig()
    cfg.validate()
    g = torch.Generator().manual_seed(int(seed))
    world = _random_world(g, cfg)
    c2w = _random_cameras(g, cfg)
    k = intrinsics_from_fov(cfg.size, cfg.size, cfg.fov_deg).expand(cfg.views, 4).clone()
    images = render(world, c2w, k, cfg.size, cfg.size)
    return Scene(name=name or f"scene_{seed:06d}", images=images, c2w=c2w, fxfycxcy=k)


def render(world: _World, c2w: torch.Tensor, fxfycxcy: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Ray trace ``world`` from cameras c2w ``[V, 4, 4]`` -> images ``[V, 3, H, W]``."""
    o, d = pixel_rays(c2w, fxfycxcy, height, width)
    o, d = o.reshape(-1, 3), d.reshape(-1, 3)
    n_rays = o.shape[0]
    t_best = torch.full((n_rays,), math.inf)
    normal = torch.zeros(n_rays, 3)
    albedo = torch.zeros(n_rays, 3)

    t_obj, n_obj, c_obj = _hit_objects(world, o, d)
    take = t_obj < t_best
    t_best = torch.where(take, t_obj, t_best)
    normal[take], albedo[take] = n_obj[take], c_obj[take]

    # ground plane z = 0 with a checker texture, only where no object is closer
    t_g = torch.where(d[:, 2] < -1e-6, -o[:, 2] / d[:, 2].clamp(max=-1e-6), torch.full_like(t_best, math.inf))
    take = t_g < t_best
    p_g = o + t_g.clamp(max=1e4)[:, None] * d
    cell = world.ground[6]
    parity = (torch.floor(p_g[:, 0] / cell) + torch.floor(p_g[:, 1] / cell)).remainder(2)[:, None]
    tex = torch.where(parity > 0.5, world.ground[:3], world.ground[3:6])
    t_best = torch.where(take, t_g, t_best)
    normal[take] = torch.tensor([0.0, 0.0, 1.0])
    albedo[take] = tex[take]

    hit = torch.isfinite(t_best)
    p = o + torch.where(hit, t_best, torch.zeros_like(t_best))[:, None] * d
    light = world.light.expand_as(p)
    t_shadow, _, _ = _hit_objects(world, p + normal * 1e-3, light)
    lit = (~torch.isfinite(t_shadow)).float()
    lambert = (normal * light).sum(-1).clamp(min=0) * lit
    colour = albedo * (0.35 + 0.75 * lambert)[:, None]

    up = d[:, 2].clamp(0, 1)[:, None]
    sky = world.sky[:3] * (1 - up) + world.sky[3:] * up
    fog = torch.exp(-t_best.clamp(max=1e4) / 25.0)[:, None]  # distant ground fades into the horizon
    colour = torch.where(hit[:, None], colour * fog + world.sky[:3] * (1 - fog), sky)
    return colour.clamp(0, 1).reshape(c2w.shape[0], height, width, 3).permute(0, 3, 1, 2).contiguous()


def _hit_objects(world: _World, o: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Nearest hit distance ``[N]`` (inf for a miss), normal ``[N, 3]`` and albedo ``[N, 3]``."""
    n = o.shape[0]
    t_best = torch.full((n,), math.inf)
    normal = torch.zeros(n, 3)
    albedo = torch.zeros(n, 3)
    for s in world.spheres:
        c, r = s[:3], s[3]
        oc = o - c
        b = (oc * d).sum(-1)
        disc = b * b - ((oc * oc).sum(-1) - r * r)
        t = -b - torch.sqrt(disc.clamp(min=0))
        t = torch.where((disc > 0) & (t > _EPS), t, torch.full_like(t, math.inf))
        take = t < t_best
        t_best = torch.where(take, t, t_best)
        normal[take] = F.normalize(o[take] + t[take, None] * d[take] - c, dim=-1)
        albedo[take] = s[4:7]
    for box in world.boxes:
        c, half, yaw = box[:3], box[3:6], box[6]
        cos, sin = torch.cos(yaw), torch.sin(yaw)
        rot = torch.stack([torch.stack([cos, -sin, 0 * cos]), torch.stack([sin, cos, 0 * cos]),
                           torch.tensor([0.0, 0.0, 1.0])])  # box-to-world
        ol, dl = (o - c) @ rot, d @ rot  # world-to-box: R^T x, written as row vectors
        dl = torch.where(dl.abs() < 1e-9, torch.full_like(dl, 1e-9), dl)
        t1, t2 = (-half - ol) / dl, (half - ol) / dl
        t_near, axis = torch.minimum(t1, t2).max(-1)
        t_far = torch.maximum(t1, t2).min(-1).values
        ok = (t_far >= t_near) & (t_near > _EPS)
        t = torch.where(ok, t_near, torch.full_like(t_near, math.inf))
        take = t < t_best
        t_best = torch.where(take, t, t_best)
        n_local = -torch.sign(dl) * F.one_hot(axis, 3).float()
        normal[take] = (n_local @ rot.T)[take]
        albedo[take] = box[7:10]
    return t_best, normal, albedo
