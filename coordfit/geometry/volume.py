"""Rays, the scene box, scene contraction and volume rendering for fitting posed views.

A radiance field here is any coordinate network of the registry on three axes whose four
outputs are read as density and colour: ``sigma = exp(raw_0 - 1)`` (clamped) and
``rgb = sigmoid(raw_1..3)``. Its input is a point in *model coordinates* on [-1, 1]^3:

* world points are first put in *box units*: ``(x - centre) / half_size``, so the scene
  box (:class:`SceneBox`, found from the cameras) is [-1, 1]^3;
* then contracted (``contract``, mip-NeRF 360's contraction with the max norm): the box
  stays as it is and everything outside, out to infinity, is squeezed into the shell
  1 < |x|_inf < 2; halving gives [-1, 1]^3. The shell is what a background at infinity
  needs: the last sample of every ray lies on it, with an interval long enough to be
  opaque, so a ray that hits nothing takes the colour the field learns there.

Along each ray, distances ``t`` are in box units and split in three stretches
(:class:`RaySampling`): a few samples from ``near`` to where the ray enters the box,
most samples evenly inside the box, and the rest evenly in disparity (1/t) from the
box exit out to ``far``. Training jitters each sample inside its interval; rendering
takes the interval middles.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ..core.errors import CoordfitError

__all__ = [
    "SceneBox",
    "RaySampling",
    "ray_box",
    "ray_segments",
    "contract",
    "interval_edges",
    "sample_intervals",
    "field_outputs",
    "composite",
    "shade",
    "distortion",
    "render_rays",
    "camera_rays",
]


@dataclass(frozen=True)
class SceneBox:
    """An axis-aligned cube in world coordinates: the part of the scene modelled at full
    resolution (everything else lives in the contracted shell)."""

    centre: tuple[float, float, float]
    half_size: float

    def to_box(self, points: torch.Tensor) -> torch.Tensor:
        """World points ``[..., 3]`` -> box units (the box is [-1, 1]^3)."""
        c = torch.tensor(self.centre, dtype=points.dtype, device=points.device)
        return (points - c) / self.half_size

    def to_dict(self) -> dict:
        return {"centre": list(self.centre), "half_size": self.half_size}

    @classmethod
    def from_dict(cls, data: dict) -> SceneBox:
        return cls(tuple(float(x) for x in data["centre"]), float(data["half_size"]))


@dataclass(frozen=True)
class RaySampling:
    """How many samples each stretch of a ray gets, and where the ray starts and ends."""

    front: int = 4  # samples from `near` to where the ray enters the box
    inner: int = 32  # samples inside the box
    outer: int = 12  # samples in disparity from the box exit to `far` (the last one is the background)
    near: float = 0.05  # box units from the camera centre
    far: float = 1e3  # box units; a point there contracts onto the outer shell

    @property
    def total(self) -> int:
        return self.front + self.inner + self.outer

    def check(self) -> None:
        if self.front < 0 or self.inner < 1 or self.outer < 1:
            raise CoordfitError(
                f"samples per ray must be front >= 0, inner >= 1, outer >= 1; got {self.front}, {self.inner}, {self.outer}"
            )
        if not 0 < self.near < self.far:
            raise CoordfitError(f"ray range must be 0 < near < far, got near={self.near}, far={self.far}")

    def to_dict(self) -> dict:
        return asdict(self)


def ray_box(origins: torch.Tensor, dirs: torch.Tensor, half: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Where rays ``o + t d`` (``[R, 3]`` each) enter and leave the cube [-half, half]^3.

    Slab method: per axis the ray is inside between ``(-half - o) / d`` and
    ``(half - o) / d``; the box interval is the intersection over axes. Returns
    ``t_in, t_out`` ``[R]``; a ray that misses has ``t_in > t_out``. ``t`` may be negative
    (the box is behind, or around, the origin).
    """
    safe = torch.where(dirs.abs() < 1e-12, torch.full_like(dirs, 1e-12), dirs)
    t1 = (-half - origins) / safe
    t2 = (half - origins) / safe
    t_in = torch.minimum(t1, t2).amax(-1)
    t_out = torch.maximum(t1, t2).amin(-1)
    return t_in, t_out


def ray_segments(origins: torch.Tensor, dirs: torch.Tensor, cfg: RaySampling) -> tuple[torch.Tensor, torch.Tensor]:
    """``t_a <= t_b`` ``[R]``: the stretch of each ray (box units) sampled evenly inside the box.

    A ray that misses the box gets an empty stretch at its closest approach to the box
    centre; both ends are clamped to at least ``near``.
    """
    t_in, t_out = ray_box(origins, dirs)
    closest = -(origins * dirs).sum(-1) / (dirs * dirs).sum(-1)
    hit = t_in <= t_out
    t_a = torch.where(hit, t_in, closest).clamp(min=cfg.near)
    t_b = torch.maximum(torch.where(hit, t_out, closest).clamp(min=cfg.near), t_a)
    return t_a, t_b


def contract(x: torch.Tensor) -> torch.Tensor:
    """Box units ``[..., 3]`` -> model coordinates on [-1, 1]^3.

    Inside the box (|x|_inf <= 1) it is ``x / 2``; outside, ``(2 - 1/|x|_inf) x / |x|_inf / 2``,
    which maps infinity onto the surface of [-1, 1]^3 and is continuous at the box.
    """
    n = x.abs().amax(-1, keepdim=True).clamp(min=1e-12)
    outside = (2.0 - 1.0 / n) * x / n
    return torch.where(n <= 1.0, x, outside) * 0.5


def interval_edges(t_a: torch.Tensor, t_b: torch.Tensor, cfg: RaySampling) -> torch.Tensor:
    """Interval edges ``[R, S + 1]`` (``S = cfg.total``) of the three stretches of each ray."""
    r = t_a.shape[0]
    dev, dt = t_a.device, t_a.dtype

    def lin(n: int) -> torch.Tensor:
        return torch.linspace(0.0, 1.0, n + 1, device=dev, dtype=dt)[None, :].expand(r, n + 1)

    near = torch.full_like(t_a, cfg.near)
    front = near[:, None] + (t_a - near)[:, None] * lin(cfg.front)[:, :-1]  # [R, front]
    inner = t_a[:, None] + (t_b - t_a)[:, None] * lin(cfg.inner)[:, :-1]  # [R, inner]
    s = lin(cfg.outer)  # disparity from 1/t_b down to 1/far
    outer = 1.0 / (1.0 / t_b[:, None] * (1 - s) + s / cfg.far)  # [R, outer + 1]
    return torch.cat([front, inner, outer], dim=1)


def sample_intervals(edges: torch.Tensor, jitter: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One sample per interval: ``t`` and the interval length ``delta``, both ``[R, S]``.

    ``jitter [R, S]`` on [0, 1) places each sample inside its interval (stratified
    sampling); None takes the middles.
    """
    lo, hi = edges[:, :-1], edges[:, 1:]
    u = 0.5 if jitter is None else jitter
    return lo + (hi - lo) * u, hi - lo


def field_outputs(raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Network outputs ``[..., 4]`` -> density ``[...]`` (per box unit) and colour ``[..., 3]``."""
    sigma = torch.exp(raw[..., 0].clamp(-15.0, 15.0) - 1.0)
    return sigma, torch.sigmoid(raw[..., 1:4])


def composite(sigma: torch.Tensor, rgb: torch.Tensor, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The volume rendering integral, piecewise constant per interval.

    sigma, delta ``[R, S]``, rgb ``[R, S, 3]`` -> colour ``[R, 3]`` and weights ``[R, S]``
    (``w_i = T_i (1 - exp(-sigma_i delta_i))`` with ``T_i = exp(-sum_{j<i} sigma_j delta_j)``).
    Light that passes every interval contributes nothing (black); the last interval of
    a ray from :func:`interval_edges` is long enough to absorb it.
    """
    tau = sigma * delta
    alpha = 1.0 - torch.exp(-tau)
    trans = torch.exp(-torch.cumsum(F.pad(tau[:, :-1], (1, 0)), dim=1))
    weights = trans * alpha
    return (weights[..., None] * rgb).sum(1), weights


def shade(field: Callable[[torch.Tensor], torch.Tensor], points: torch.Tensor, delta: torch.Tensor,
          with_weights: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Colour ``[R, 3]`` of rays sampled at model-coordinate ``points [R, S, 3]`` with interval
    lengths ``delta [R, S]``; ``field`` maps ``[N, 3]`` to raw outputs ``[N, 4]``. With
    ``with_weights`` also the compositing weights ``[R, S]``."""
    raw = field(points.reshape(-1, 3)).reshape(*points.shape[:-1], -1)
    sigma, rgb = field_outputs(raw)
    colour, weights = composite(sigma, rgb, delta)
    return (colour, weights) if with_weights else colour


def distortion(weights: torch.Tensor) -> torch.Tensor:
    """mip-NeRF 360's distortion loss per ray ``[R]`` for weights ``[R, S]`` of equal intervals.

    Intervals are measured by their index (``s_i = (i + 1/2) / S``, width ``1/S``), so the
    loss is the same for every stretch of the ray:
    ``sum_ij w_i w_j |s_i - s_j| + sum_i w_i^2 / (3 S)``, the double sum in O(S) with
    cumulative sums. It is small when a ray's weight sits in one compact interval
    (a surface) and large for weight spread along the ray (fog, floaters).
    """
    n = weights.shape[-1]
    s = (torch.arange(n, device=weights.device, dtype=weights.dtype) + 0.5) / n
    ws = weights * s
    before_w = torch.cumsum(weights, -1) - weights
    before_ws = torch.cumsum(ws, -1) - ws
    pairs = 2.0 * (weights * (s * before_w - before_ws)).sum(-1)
    return pairs + weights.pow(2).sum(-1) / (3.0 * n)


def render_rays(
    field: Callable[[torch.Tensor], torch.Tensor],
    origins: torch.Tensor,
    dirs: torch.Tensor,
    cfg: RaySampling,
    jitter: torch.Tensor | None = None,
    segments: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Colour ``[R, 3]`` of rays in box units (``origins``, ``dirs`` ``[R, 3]``) through ``field``
    (model coordinates ``[N, 3]`` -> raw outputs ``[N, 4]``)."""
    t_a, t_b = segments if segments is not None else ray_segments(origins, dirs, cfg)
    t, delta = sample_intervals(interval_edges(t_a, t_b, cfg), jitter)
    return shade(field, contract(origins[:, None, :] + t[..., None] * dirs[:, None, :]), delta)


def camera_rays(
    c2w: torch.Tensor, fxfycxcy: torch.Tensor, height: int, width: int, box: SceneBox
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel rays of OpenCV cameras (c2w ``[V, 4, 4]``, fxfycxcy ``[V, 4]``) in box units:
    origins and unit directions ``[V * H * W, 3]``, row-major per view."""
    from .cameras import pixel_rays

    o, d = pixel_rays(c2w, fxfycxcy, height, width)  # [V, H, W, 3]
    return box.to_box(o.reshape(-1, 3)), d.reshape(-1, 3)
