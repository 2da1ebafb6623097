"""A picture of a mesh: a few shaded views side by side, drawn by a small z-buffer rasteriser.

``preview.png`` of a shape run shows the extracted mesh from the front, the side and
above at an angle, orthographically, each face flat-shaded by a light from the viewer's
upper left (both sides lit, so a face wound either way shows). NumPy only: each view is
one pass over the faces, vectorised over the pixels their bounding boxes cover, so it
costs about a second for a few hundred thousand faces at the default size.
"""

from __future__ import annotations

import math

import numpy as np

from .mesh_labels import MeshData

__all__ = ["VIEWS", "render_views", "rasterise"]

# (azimuth about the up axis y, elevation), degrees: front, side, above at an angle.
VIEWS: tuple[tuple[float, float], ...] = ((0.0, 10.0), (90.0, 10.0), (35.0, 40.0))
_BIG = 12  # faces whose box is wider than this many pixels are drawn one by one
_BACKGROUND = np.array([1.0, 1.0, 1.0])
_COLOUR = np.array([0.62, 0.72, 0.86])  # a light steel blue, shaded


def render_views(mesh: MeshData, size: int = 256, views: tuple[tuple[float, float], ...] = VIEWS) -> np.ndarray:
    """``mesh`` (y up) from each of ``views``, side by side, all at one scale that fits the
    mesh in every panel -> ``float32 [size, size * len(views), 3]`` on [0, 1]; white where
    nothing is."""
    cams = [mesh.vertices @ _rotation(az, el).T for az, el in views]  # [V, 3] each: x right, y up, z near
    centre = [(c[:, :2].max(axis=0) + c[:, :2].min(axis=0)) / 2 if len(c) else np.zeros(2) for c in cams]
    half = max((np.abs(c[:, :2] - m).max() for c, m in zip(cams, centre) if len(c)), default=1.0) * 1.08
    panels = [_view(mesh.faces, c, m, half, size) for c, m in zip(cams, centre)]
    return np.concatenate(panels, axis=1).astype(np.float32)


def _rotation(azimuth: float, elevation: float) -> np.ndarray:
    """World -> camera (x right, y up, z toward the viewer) for a camera at ``azimuth`` about y, ``elevation`` up."""
    a, e = math.radians(azimuth), math.radians(elevation)
    ry = np.array([[math.cos(a), 0.0, -math.sin(a)], [0.0, 1.0, 0.0], [math.sin(a), 0.0, math.cos(a)]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(e), -math.sin(e)], [0.0, math.sin(e), math.cos(e)]])
    return rx @ ry


def _view(faces: np.ndarray, cam: np.ndarray, centre: np.ndarray, half: float, size: int) -> np.ndarray:
    """One panel: the faces of camera-frame vertices ``cam``, ``centre +- half`` filling it."""
    image = np.broadcast_to(_BACKGROUND, (size, size, 3)).copy()
    if len(faces) == 0:
        return image
    tri = cam[faces]  # [F, 3, 3]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-20)
    light = np.array([-0.4, 0.5, 0.77])
    shade = 0.25 + 0.75 * np.abs(normal @ (light / np.linalg.norm(light)))  # [F]
    scale = size / (2 * half)
    xy = np.stack([(tri[..., 0] - centre[0] + half) * scale, (half - tri[..., 1] + centre[1]) * scale], axis=-1)
    pixel, _, face = rasterise(xy, tri[..., 2], size)  # row 0 at the top: y up
    image.reshape(-1, 3)[pixel] = shade[face, None] * _COLOUR
    return image


def rasterise(xy: np.ndarray, z: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Triangles ``xy [F, 3, 2]`` (pixel coordinates) with depths ``z [F, 3]`` (larger is
    nearer) on a ``size x size`` grid: for each covered pixel centre, the nearest face ->
    ``(pixel [N] flat index, depth [N], face [N])``."""
    lo = np.floor(xy.min(axis=1) - 0.5).astype(np.int64).clip(0, size - 1)  # [F, 2] first pixel of the box
    hi = np.ceil(xy.max(axis=1) - 0.5).astype(np.int64).clip(0, size - 1)
    extent = hi - lo + 1
    small = np.flatnonzero(extent.max(axis=1) <= _BIG)
    found = [_cover(xy, z, lo, extent, small, size, dx, dy)
             for dy in range(int(extent[small, 1].max(initial=0))) for dx in range(int(extent[small, 0].max(initial=0)))]
    for f in np.flatnonzero(extent.max(axis=1) > _BIG):  # few: a coarse mesh's large faces
        ys, xs = np.mgrid[lo[f, 1] : hi[f, 1] + 1, lo[f, 0] : hi[f, 0] + 1]
        found.append(_inside(xy[f][None], z[f][None], xs.reshape(-1), ys.reshape(-1),
                             np.full(xs.size, f), size, np.zeros(xs.size, np.int64)))
    pixel, depth, face = (np.concatenate(parts) for parts in zip(*found)) if found else (np.zeros(0, np.int64),) * 3
    order = np.lexsort((-depth, pixel))  # per pixel, nearest first
    pixel, depth, face = pixel[order], depth[order], face[order]
    first = np.r_[True, pixel[1:] != pixel[:-1]] if len(pixel) else np.zeros(0, bool)
    return pixel[first], depth[first], face[first]


def _cover(xy, z, lo, extent, faces, size, dx, dy):
    """The pixels at offset ``(dx, dy)`` in the boxes of ``faces`` that their triangles cover."""
    keep = faces[(extent[faces, 0] > dx) & (extent[faces, 1] > dy)]
    xs, ys = lo[keep, 0] + dx, lo[keep, 1] + dy
    return _inside(xy[keep], z[keep], xs, ys, keep, size, np.arange(len(keep)))


def _inside(xy, z, xs, ys, face, size, row):
    """Of pixels ``(xs, ys)``, each tested against triangle ``xy[row]``: those inside -> (pixel, depth, face)."""
    px, py = xs + 0.5, ys + 0.5
    a, b, c = xy[row, 0], xy[row, 1], xy[row, 2]  # [N, 2]
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    w0 = (b[:, 0] - px) * (c[:, 1] - py) - (b[:, 1] - py) * (c[:, 0] - px)
    w1 = (c[:, 0] - px) * (a[:, 1] - py) - (c[:, 1] - py) * (a[:, 0] - px)
    w2 = area - w0 - w1
    sign = np.sign(area)
    hit = (area != 0) & (w0 * sign >= 0) & (w1 * sign >= 0) & (w2 * sign >= 0)
    safe = np.where(area == 0, 1.0, area)
    depth = (w0 * z[row, 0] + w1 * z[row, 1] + w2 * z[row, 2]) / safe
    return (ys * size + xs)[hit], depth[hit], face[hit]
