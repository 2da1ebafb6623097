"""Pinhole cameras in the OpenCV convention, per-pixel rays and Plucker embeddings.

Conventions used everywhere in :mod:`coordfit.nvs`:

* ``c2w`` is a camera-to-world ``[..., 4, 4]`` matrix; camera axes are x right, y down,
  z forward (OpenCV). ``w2c`` is its inverse.
* ``fxfycxcy`` is ``[..., 4]``: focal lengths and principal point in pixels.
* A pixel ``(u, v)`` (column, row) is sampled at its centre ``(u + 0.5, v + 0.5)``.
* The world is z-up for the procedural scenes, but nothing here depends on it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "opengl_to_opencv",
    "look_at",
    "intrinsics_from_fov",
    "pixel_rays",
    "plucker",
    "normalize_poses",
]

_GL_TO_CV = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0]))


def opengl_to_opencv(c2w_gl: torch.Tensor) -> torch.Tensor:
    """Convert OpenGL/Blender camera-to-world poses (y up, looking along -z) to OpenCV.

    ``c2w_cv = c2w_gl @ diag(1, -1, -1, 1)``; the conversion is its own inverse.
    """
    return c2w_gl @ _GL_TO_CV.to(c2w_gl)


def look_at(
    eye: torch.Tensor, target: torch.Tensor, up: tuple[float, float, float] = (0.0, 0.0, 1.0)
) -> torch.Tensor:
    """OpenCV ``c2w`` ``[..., 4, 4]`` for cameras at ``eye [..., 3]`` looking at ``target``.

    ``up`` is the world direction that should appear upwards in the image (so the camera
    y axis, which points down, is roughly ``-up``). ``eye - target`` must not be parallel
    to ``up``.
    """
    eye, target = torch.broadcast_tensors(eye, target.to(eye))
    up_t = torch.tensor(up, dtype=eye.dtype, device=eye.device).expand_as(eye)
    z = F.normalize(target - eye, dim=-1)
    x = F.normalize(torch.cross(z, up_t, dim=-1), dim=-1)
    y = torch.cross(z, x, dim=-1)
    c2w = torch.zeros(*eye.shape[:-1], 4, 4, dtype=eye.dtype, device=eye.device)
    c2w[..., :3, 0] = x
    c2w[..., :3, 1] = y
    c2w[..., :3, 2] = z
    c2w[..., :3, 3] = eye
    c2w[..., 3, 3] = 1.0
    return c2w


def intrinsics_from_fov(height: int, width: int, fov_deg: float) -> torch.Tensor:
    """``[fx, fy, cx, cy]`` for square pixels and a horizontal field of view in degrees."""
    f = 0.5 * width / math.tan(math.radians(fov_deg) / 2)
    return torch.tensor([f, f, width / 2, height / 2])


def pixel_rays(
    c2w: torch.Tensor, fxfycxcy: torch.Tensor, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """World-space ray origins and unit directions for every pixel centre.

    c2w ``[..., 4, 4]``, fxfycxcy ``[..., 4]`` -> origins, directions ``[..., H, W, 3]``.
    """
    dtype, device = c2w.dtype, c2w.device
    v, u = torch.meshgrid(
        torch.arange(height, dtype=dtype, device=device) + 0.5,
        torch.arange(width, dtype=dtype, device=device) + 0.5,
        indexing="ij",
    )  # [H, W]
    k = fxfycxcy[..., None, None, :]  # [..., 1, 1, 4]
    x = (u - k[..., 2]) / k[..., 0]
    y = (v - k[..., 3]) / k[..., 1]
    d_cam = torch.stack([x, y, torch.ones_like(x)], dim=-1)  # [..., H, W, 3]
    rot = c2w[..., None, None, :3, :3]
    d = F.normalize((rot @ d_cam[..., None])[..., 0], dim=-1)
    o = c2w[..., None, None, :3, 3].expand_as(d)
    return o, d


def plucker(c2w: torch.Tensor, fxfycxcy: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Plucker ray embedding ``[o x d, d]`` per pixel, channels first: ``[..., 6, H, W]``."""
    o, d = pixel_rays(c2w, fxfycxcy, height, width)
    emb = torch.cat([torch.cross(o, d, dim=-1), d], dim=-1)  # [..., H, W, 6]
    return emb.movedim(-1, -3)


def normalize_poses(
    c2w_ref: torch.Tensor, *others: torch.Tensor, scale_to: float = 1.0
) -> tuple[torch.Tensor, ...]:
    """Express poses in the frame of the mean reference camera, translations scaled to a box.

    c2w_ref ``[V, 4, 4]`` (usually the input views) defines the frame: origin at the mean
    camera centre, axes from the averaged (re-orthonormalised) camera axes. The same rigid
    transform and scale are applied to ``others`` (e.g. the target views), so relative
    geometry is preserved. The largest absolute translation coordinate of the reference
    cameras becomes ``scale_to`` (left unscaled for a single camera).
    Returns ``(ref, *others)`` with the same shapes.
    """
    centre = c2w_ref[:, :3, 3].mean(0)
    z = F.normalize(c2w_ref[:, :3, 2].mean(0), dim=0)
    y_mean = c2w_ref[:, :3, 1].mean(0)
    x = F.normalize(torch.cross(y_mean, z, dim=0), dim=0)
    y = torch.cross(z, x, dim=0)
    mean_c2w = torch.eye(4, dtype=c2w_ref.dtype, device=c2w_ref.device)
    mean_c2w[:3, 0], mean_c2w[:3, 1], mean_c2w[:3, 2], mean_c2w[:3, 3] = x, y, z, centre
    w2mean = torch.linalg.inv(mean_c2w)
    out = [w2mean @ p for p in (c2w_ref, *others)]
    extent = out[0][:, :3, 3].abs().max()
    scale = scale_to / extent if extent > 1e-8 else torch.ones((), dtype=extent.dtype)
    for p in out:
        p[..., :3, 3] *= scale
    return tuple(out)
