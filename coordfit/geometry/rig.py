"""The geometry of a few cameras looking at one scene: where they look, which way is up,
and new poses around them (orbits, pseudo views for a prior).

Cameras are OpenCV ``c2w`` ``[V, 4, 4]`` (x right, y down, z forward), as everywhere in
coordfit. A :class:`Rig` is measured from the *input* cameras only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["Rig", "look_at_point", "estimate_up", "rig_poses", "orbit_poses", "pseudo_poses"]


def look_at_point(c2w: torch.Tensor) -> torch.Tensor:
    """The point ``[3]`` nearest (least squares) to every camera's optical axis.

    Falls back to a point in front of the cameras, along their mean viewing direction,
    when the axes are (nearly) parallel, there is one camera, or the point would lie
    behind a camera; it is then as far out as the cameras are spread (at least 1).
    """
    c2w = c2w.double()
    o, z = c2w[:, :3, 3], F.normalize(c2w[:, :3, 2], dim=-1)
    proj = torch.eye(3, dtype=c2w.dtype) - z[:, :, None] * z[:, None, :]  # [V, 3, 3]
    a, b = proj.sum(0), (proj @ o[..., None]).sum(0)[:, 0]
    eig = torch.linalg.eigvalsh(a)
    if len(c2w) >= 2 and eig[0] > 1e-3 * eig[-1]:
        p = torch.linalg.solve(a, b)
        if bool((((p - o) * z).sum(-1) > 0).all()):
            return p.float()
    spread = float((o - o.mean(0)).norm(dim=-1).max()) if len(c2w) > 1 else 0.0
    forward = F.normalize(z.mean(0), dim=0)
    return (o.mean(0) + max(1.0, 2.0 * spread) * forward).float()


def estimate_up(c2w: torch.Tensor) -> torch.Tensor:
    """World direction ``[3]`` that appears upwards in the images.

    Cameras without roll have horizontal x axes, so up is the direction most
    perpendicular to every camera's x axis (the eigenvector of ``sum x x^T`` with the
    smallest eigenvalue), signed to agree with the cameras' up (``-y``). A world that is
    already z-up (every x axis horizontal in z) keeps +z exactly; with fewer than two
    distinct x axes the mean camera up is used.
    """
    x, up_cams = c2w[:, :3, 0].double(), -c2w[:, :3, 1].double()
    mean_up = up_cams.mean(0)
    if bool((x[:, 2].abs() < 1e-4).all()) and mean_up[2] > 0:
        return torch.tensor([0.0, 0.0, 1.0])
    vals, vecs = torch.linalg.eigh(x.T @ x)
    if vals[1] < 1e-3 * vals[2]:
        return F.normalize(mean_up, dim=0).float()
    up = vecs[:, 0]
    return (up if (up @ mean_up) >= 0 else -up).float()


@dataclass(frozen=True)
class Rig:
    """Where the cameras look (``centre``), which way is up, and their spherical
    coordinates around the centre: distances, elevations above the plane normal to
    ``up`` and azimuths around it (radians), each ``[V]``."""

    centre: torch.Tensor  # [3]
    up: torch.Tensor  # [3], unit
    basis: torch.Tensor  # [2, 3]: two unit vectors spanning the plane normal to up (azimuth 0 and 90 deg)
    radius: torch.Tensor  # [V]
    elevation: torch.Tensor  # [V]
    azimuth: torch.Tensor  # [V]

    @classmethod
    def from_cameras(cls, c2w: torch.Tensor) -> Rig:
        c2w = c2w.float()
        centre, up = look_at_point(c2w), estimate_up(c2w)
        rel = c2w[:, :3, 3] - centre
        radius = rel.norm(dim=-1).clamp(min=1e-6)
        elevation = torch.asin(((rel @ up) / radius).clamp(-1, 1))
        seed = torch.tensor([1.0, 0.0, 0.0]) if abs(float(up[0])) < 0.9 else torch.tensor([0.0, 1.0, 0.0])
        e1 = F.normalize(seed - (seed @ up) * up, dim=0)
        e2 = torch.cross(up, e1, dim=0)
        azimuth = torch.atan2(rel @ e2, rel @ e1)
        return cls(centre, up, torch.stack([e1, e2]), radius, elevation, azimuth)

    def to_dict(self) -> dict:
        return {k: getattr(self, k).tolist() for k in ("centre", "up", "basis", "radius", "elevation", "azimuth")}

    @classmethod
    def from_dict(cls, data: dict) -> Rig:
        return cls(**{k: torch.tensor(v, dtype=torch.float32) for k, v in data.items()})


def rig_poses(rig: Rig, azimuth: torch.Tensor, elevation: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """OpenCV ``c2w [P, 4, 4]`` of cameras at these spherical coordinates, looking at the centre."""
    from .cameras import look_at

    e1, e2 = rig.basis
    horizontal = torch.cos(azimuth)[:, None] * e1 + torch.sin(azimuth)[:, None] * e2
    direction = torch.cos(elevation)[:, None] * horizontal + torch.sin(elevation)[:, None] * rig.up
    eye = rig.centre + radius[:, None] * direction
    return look_at(eye, rig.centre.expand_as(eye), up=tuple(rig.up.tolist()))


def orbit_poses(rig: Rig, frames: int) -> torch.Tensor:
    """``frames`` cameras evenly on one circle around the centre, starting at the first
    input camera, at the inputs' mean distance and elevation: ``[frames, 4, 4]``."""
    az = rig.azimuth[0] + torch.arange(frames) * (2 * math.pi / frames)
    return rig_poses(rig, az, rig.elevation.mean().expand(frames), rig.radius.mean().expand(frames))


def pseudo_poses(rig: Rig, count: int, generator: torch.Generator, near_share: float = 0.5,
                 widen_deg: float = 10.0) -> torch.Tensor:
    """``count`` poses around and between the input cameras, looking at the centre: ``[count, 4, 4]``.

    A ``near_share`` of them lie between two input cameras (or beside the one input),
    spherically interpolated and jittered by ~8 degrees; the rest anywhere around the
    centre, at elevations the inputs span widened by ``widen_deg`` and their distances.
    """
    v = len(rig.radius)
    g = generator
    deg = math.pi / 180
    rand = torch.rand(count, 6, generator=g)
    near = rand[:, 0] < near_share
    a = torch.randint(v, (count,), generator=g)
    b = torch.randint(v, (count,), generator=g) if v > 1 else a
    t = rand[:, 1]
    gap = torch.remainder(rig.azimuth[b] - rig.azimuth[a] + math.pi, 2 * math.pi) - math.pi  # shorter arc
    jitter = torch.randn(count, 2, generator=g) * (8 * deg if v > 1 else 25 * deg)
    az_near = rig.azimuth[a] + t * gap + jitter[:, 0]
    el_near = torch.lerp(rig.elevation[a], rig.elevation[b], t) + jitter[:, 1]
    r_near = torch.lerp(rig.radius[a], rig.radius[b], t)
    lo, hi = rig.elevation.min() - widen_deg * deg, rig.elevation.max() + widen_deg * deg
    az_any = rand[:, 2] * 2 * math.pi
    el_any = lo + (hi - lo) * rand[:, 3]
    r_any = rig.radius.min() + (rig.radius.max() - rig.radius.min()) * rand[:, 4]
    az = torch.where(near, az_near, az_any)
    el = torch.where(near, el_near, el_any).clamp(-85 * deg, 85 * deg)
    r = torch.where(near, r_near, r_any)
    return rig_poses(rig, az, el, r)
