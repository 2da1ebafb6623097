"""Meshes as fitting targets: reading, normalising, inside tests and distances.

Inside/outside is decided by the *generalized winding number* ``w(p)`` (Jacobson et
al. 2013): the signed solid angle the surface subtends at ``p`` over 4 pi. It is 1
inside and 0 outside a closed, outward-oriented mesh and degrades gracefully on open
meshes (scans with holes): near a hole it varies smoothly between 0 and 1, and a point
is inside where ``w > 0.5`` -- as if each hole were closed by the smoothest cap.

* :func:`winding_numbers` uses libigl's fast winding number (Barill et al. 2018, a
  Barnes-Hut tree, ~0.3-1 M points/s on one core) when ``igl`` is installed and falls
  back, with one warning, to :func:`winding_numbers_exact` (the plain O(points x faces)
  sum in torch), which is also the reference the fast path is tested against.
* :func:`label_grid` labels a whole ``R^3`` lattice coarse-to-fine: exact winding
  numbers on every ``step``-th node, then exact values only in cells that touch the
  surface or whose corners disagree; the other cells take their corners' label.
* :func:`distance_grid` / :meth:`SurfaceIndex.distance`: exact point-to-mesh distance
  (libigl's AABB tree, or a KD-tree of face centroids and a closest-point-on-triangle
  test without it), truncated at a clamp distance for the SDF target.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.errors import CoordfitError

__all__ = [
    "MeshData",
    "PRIMITIVES",
    "read_mesh",
    "normalise",
    "winding_numbers",
    "winding_numbers_exact",
    "label_grid",
    "lattice",
    "inside",
    "sample_surface",
    "SurfaceIndex",
    "distance_grid",
    "point_triangle_sqdist",
]

MESH_SUFFIXES = (".obj", ".ply", ".stl", ".off", ".glb", ".gltf")
PRIMITIVES = ("torus", "sphere", "box", "capsule")


@dataclass
class MeshData:
    """A triangle mesh as plain arrays: ``vertices [V, 3]`` float64, ``faces [F, 3]`` int64."""

    vertices: np.ndarray
    faces: np.ndarray

    def to_trimesh(self):  # -> trimesh.Trimesh
        import trimesh

        return trimesh.Trimesh(self.vertices, self.faces, process=False)

    @property
    def area(self) -> float:
        v = self.vertices[self.faces]
        return float(0.5 * np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1).sum())


def _primitive(name: str):
    import trimesh

    if name == "torus":  # volume 2 pi^2 R r^2 = 2 pi^2 * 1 * 0.4^2
        return trimesh.creation.torus(major_radius=1.0, minor_radius=0.4, major_sections=64, minor_sections=32)
    if name == "sphere":  # radius 1
        return trimesh.creation.icosphere(subdivisions=4, radius=1.0)
    if name == "box":
        return trimesh.creation.box(extents=(2.0, 1.4, 1.0))
    return trimesh.creation.capsule(height=1.5, radius=0.5)


def read_mesh(source: str | Path) -> MeshData:
    """Read OBJ/PLY/STL/OFF/GLB (or ``primitive:<name>``) as a triangle mesh.

    Raises :class:`CoordfitError` with one line for a missing file, a file that is not
    a mesh, a mesh with no triangles, and NaN/infinite vertices.
    """
    src = str(source)
    if src.startswith("primitive:"):
        name = src.split(":", 1)[1]
        if name not in PRIMITIVES:
            raise CoordfitError(f"unknown primitive '{name}' (choose from: {', '.join(PRIMITIVES)})")
        m = _primitive(name)
        return MeshData(np.asarray(m.vertices, np.float64), np.asarray(m.faces, np.int64))
    path = Path(src)
    if not path.exists():
        raise CoordfitError(f"{path} does not exist")
    if path.is_dir():
        raise CoordfitError(f"{path} is a folder, not a mesh")
    if path.stat().st_size == 0:
        raise CoordfitError(f"{path} is empty")
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise CoordfitError(f"{path} is not a mesh file (expected one of {', '.join(MESH_SUFFIXES)})")
    if path.suffix.lower() == ".stl":
        _check_stl(path)
    import trimesh

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            geom = trimesh.load(path, process=False)
    except Exception as exc:  # trimesh raises many types for bad files
        if isinstance(exc, ImportError):  # trimesh reaching for an optional text-encoding guesser
            reason = f"it is not a valid {path.suffix[1:].upper()} file"
        else:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CoordfitError(f"cannot read {path} as a mesh ({reason[:120]})") from None
    if isinstance(geom, trimesh.Scene):
        parts = [g for g in geom.dump() if isinstance(g, trimesh.Trimesh)] if geom.geometry else []
        geom = trimesh.util.concatenate(parts) if parts else None
    if not isinstance(geom, trimesh.Trimesh) or len(geom.faces) == 0:
        raise CoordfitError(f"{path} holds no triangles (an empty mesh or a point cloud)")
    vertices = np.asarray(geom.vertices, np.float64)
    faces = np.asarray(geom.faces, np.int64)
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.min() < 0 or faces.max() >= len(vertices):
        raise CoordfitError(f"{path} has faces that index missing vertices")
    if not np.isfinite(vertices[np.unique(faces)]).all():
        raise CoordfitError(f"{path} has NaN or infinite vertex coordinates")
    return MeshData(vertices, faces)


def _check_stl(path: Path) -> None:
    """Refuse a file that is neither a binary STL (an 80-byte header, a triangle count n,
    then exactly 50 bytes per triangle) nor an ASCII STL (text that starts with 'solid')."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(1 << 16)
    if len(head) >= 84 and 84 + 50 * int.from_bytes(head[80:84], "little") == size:
        return
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        text = ""
    if not text.lstrip().lower().startswith("solid"):
        raise CoordfitError(
            f"{path} is not an STL file: neither binary (84 bytes + 50 per triangle; it has {size} bytes) "
            "nor ASCII text starting with 'solid'"
        )


def normalise(mesh: MeshData, margin: float) -> tuple[MeshData, np.ndarray, float]:
    """Centre the bounding box at 0 and scale its longest side to ``2 (1 - margin)``.

    Returns the normalised mesh, the ``center [3]`` and ``scale`` such that
    ``x_input = x_normalised / scale + center``.
    """
    used = mesh.vertices[np.unique(mesh.faces)]
    lo, hi = used.min(0), used.max(0)
    extent = float((hi - lo).max())
    if not extent > 0:
        raise CoordfitError("the mesh has no extent (all its vertices coincide)")
    center = (lo + hi) / 2.0
    scale = 2.0 * (1.0 - margin) / extent
    return MeshData((mesh.vertices - center) * scale, mesh.faces), center, scale


# -- winding numbers ----------------------------------------------------------------------
_IGL_WARNED = False
_EXACT_LIMIT = 2e10  # points x faces beyond which the exact fallback is refused (~hours on a CPU)


def _igl(quiet: bool = False):
    global _IGL_WARNED
    try:
        import igl  # noqa: PLC0415  (optional: fast winding numbers)

        return igl
    except ImportError:
        if not (_IGL_WARNED or quiet):
            warnings.warn("libigl is not installed: using the exact O(points x faces) winding number "
                          "(slow on large meshes; `pip install libigl` for the fast one)", stacklevel=3)
            _IGL_WARNED = True
        return None


def winding_numbers_exact(mesh: MeshData, points: np.ndarray, chunk: int = 1 << 22) -> np.ndarray:
    """Generalized winding number at ``points [N, 3]`` -> ``[N]``, summed over every face.

    Each triangle contributes its signed solid angle (Van Oosterom & Strackee):
    ``2 atan2(det[a b c], |a||b||c| + (a.b)|c| + (b.c)|a| + (c.a)|b|)`` with a, b, c
    the corners relative to the point.
    """
    tri = torch.from_numpy(mesh.vertices[mesh.faces])  # [F, 3, 3] float64
    pts = torch.from_numpy(np.asarray(points, np.float64))
    out = torch.empty(len(pts), dtype=torch.float64)
    step = max(1, chunk // max(len(tri), 1))
    for s in range(0, len(pts), step):
        rel = tri[None] - pts[s : s + step, None, None, :]  # [n, F, 3, 3]
        a, b, c = rel[:, :, 0], rel[:, :, 1], rel[:, :, 2]
        la, lb, lc = a.norm(dim=-1), b.norm(dim=-1), c.norm(dim=-1)
        det = (a * torch.cross(b, c, dim=-1)).sum(-1)
        den = la * lb * lc + (a * b).sum(-1) * lc + (b * c).sum(-1) * la + (c * a).sum(-1) * lb
        out[s : s + step] = (2.0 * torch.atan2(det, den)).sum(-1) / (4.0 * math.pi)
    return out.numpy()


def winding_numbers(mesh: MeshData, points: np.ndarray) -> np.ndarray:
    """Winding numbers at ``points [N, 3]`` -> ``[N]``: libigl's fast one, else the exact sum."""
    points = np.ascontiguousarray(points, dtype=np.float64)
    if len(points) == 0:
        return np.zeros(0)
    igl = _igl()
    if igl is None:
        if len(points) * len(mesh.faces) > _EXACT_LIMIT:
            raise CoordfitError(
                f"labelling {len(points):,} points against {len(mesh.faces):,} faces needs libigl's fast winding "
                "number (pip install libigl); the exact fallback would take hours"
            )
        return winding_numbers_exact(mesh, points)
    fwn = getattr(igl, "fast_winding_number", None) or igl.fast_winding_number_for_meshes  # libigl >= 2.6 / older
    return np.asarray(fwn(np.ascontiguousarray(mesh.vertices), np.ascontiguousarray(mesh.faces), points))


def inside(mesh: MeshData, points: np.ndarray) -> np.ndarray:
    """``w > 0.5``: inside for closed meshes; open meshes as if their holes were capped."""
    return winding_numbers(mesh, points) > 0.5


# -- coarse-to-fine labelling of a lattice ------------------------------------------------
def lattice(resolution: int) -> np.ndarray:
    """The ``R`` node coordinates of each axis on [-1, 1] (as ``grid.axis_coords``)."""
    return np.linspace(-1.0, 1.0, resolution) if resolution > 1 else np.zeros(1)


def _coarse_to_fine(
    resolution: int,
    step: int,
    coarse_value,  # (points [n, 3]) -> values [n]
    exact_cells,  # (coarse values [c, c, c]) -> bool [c-1, c-1, c-1]: cells to compute exactly
    fill_value,  # (coarse values [c, c, c]) -> values [c-1, c-1, c-1] for the other cells
    exact_value,  # (points [n, 3]) -> values [n]
    dtype,
) -> np.ndarray:
    R = resolution
    ax = lattice(R)
    ci = np.unique(np.r_[np.arange(0, R, step), R - 1])
    cg = np.stack(np.meshgrid(ax[ci], ax[ci], ax[ci], indexing="ij"), -1).reshape(-1, 3)
    coarse = coarse_value(cg).reshape(len(ci), len(ci), len(ci))
    if len(ci) < 2:
        return coarse.astype(dtype)
    cell = np.clip(np.searchsorted(ci, np.arange(R), side="right") - 1, 0, len(ci) - 2)  # [R] node -> cell
    exact = exact_cells(coarse)
    fill = fill_value(coarse)
    out = fill[cell[:, None, None], cell[None, :, None], cell[None, None, :]].astype(dtype)
    todo = exact[cell[:, None, None], cell[None, :, None], cell[None, None, :]]
    ijk = np.nonzero(todo)
    if len(ijk[0]):
        out[ijk] = exact_value(np.stack([ax[ijk[0]], ax[ijk[1]], ax[ijk[2]]], -1))
    # coarse nodes are exact already
    out[np.ix_(ci, ci, ci)] = coarse
    return out


def _corners(a: np.ndarray) -> list[np.ndarray]:
    return [a[i : a.shape[0] - 1 + i, j : a.shape[1] - 1 + j, k : a.shape[2] - 1 + k]
            for i in (0, 1) for j in (0, 1) for k in (0, 1)]


def _surface_cells(surface: SurfaceIndex, resolution: int, step: int) -> np.ndarray:
    """Coarse cells that hold a surface sample, dilated by one cell: ``bool [c-1]^3``."""
    from scipy.ndimage import binary_dilation

    ci = np.unique(np.r_[np.arange(0, resolution, step), resolution - 1])
    node = (surface.points + 1.0) * 0.5 * (resolution - 1)  # fractional node index
    cell = np.clip(np.searchsorted(ci, node, side="right") - 1, 0, len(ci) - 2)
    hit = np.zeros((len(ci) - 1,) * 3, bool)
    hit[cell[:, 0], cell[:, 1], cell[:, 2]] = True
    return binary_dilation(hit, structure=np.ones((3, 3, 3), bool))


def label_grid(mesh: MeshData, resolution: int, surface: SurfaceIndex | None = None, step: int = 4) -> np.ndarray:
    """Inside labels of the ``R^3`` lattice on [-1, 1]^3 -> ``bool [R, R, R]`` (axes x, y, z).

    Exact winding numbers on every ``step``-th node; cells near the surface (a surface
    sample in the cell or a neighbour) or with disagreeing corners are labelled node by
    node, the rest take their corners' common label (a surface-free cell whose corners
    agree holds no boundary, closed or -- for the caps of holes -- smooth).
    """
    surface = surface or SurfaceIndex.build(mesh, spacing=step * 2.0 / max(resolution - 1, 1) / 3.0)
    band = _surface_cells(surface, resolution, step)

    def exact_cells(c):
        k = _corners(c)
        agree = np.logical_and.reduce(k) | ~np.logical_or.reduce(k)
        return band | ~agree

    return _coarse_to_fine(resolution, step, lambda p: inside(mesh, p), exact_cells,
                           lambda c: c[:-1, :-1, :-1], lambda p: inside(mesh, p), bool)


# -- distances ------------------------------------------------------------------------------
def point_triangle_sqdist(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Squared distance from points ``p [N, 3]`` to triangles ``(a, b, c) [N, 3]`` -> ``[N]``.

    The closest point is found by Voronoi region (vertex, edge or face; Ericson,
    *Real-Time Collision Detection* 5.1.5), vectorised; degenerate triangles fall back
    to their nearest vertex.
    """
    ab, ac, ap = b - a, c - a, p - a
    bp, cp = p - b, p - c
    d1, d2 = (ab * ap).sum(-1), (ac * ap).sum(-1)
    d3, d4 = (ab * bp).sum(-1), (ac * bp).sum(-1)
    d5, d6 = (ab * cp).sum(-1), (ac * cp).sum(-1)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    with np.errstate(divide="ignore", invalid="ignore"):
        den = va + vb + vc
        q = a + ab * (vb / den)[:, None] + ac * (vc / den)[:, None]  # inside the face
        e1, e2 = d4 - d3, d5 - d6
        cases = [  # (condition, closest point), later entries take precedence (Ericson's order reversed)
            ((va <= 0) & (e1 >= 0) & (e2 >= 0), b + (c - b) * (e1 / (e1 + e2))[:, None]),
            ((vb <= 0) & (d2 >= 0) & (d6 <= 0), a + ac * (d2 / (d2 - d6))[:, None]),
            ((d6 >= 0) & (d5 <= d6), c),
            ((vc <= 0) & (d1 >= 0) & (d3 <= 0), a + ab * (d1 / (d1 - d3))[:, None]),
            ((d3 >= 0) & (d4 <= d3), b),
            ((d1 <= 0) & (d2 <= 0), a),
        ]
        for cond, point in cases:
            q = np.where(cond[:, None], point, q)
        dist = ((p - q) ** 2).sum(-1)
    bad = ~np.isfinite(dist)
    if bad.any():
        dist[bad] = np.min([((p[bad] - v[bad]) ** 2).sum(-1) for v in (a, b, c)], axis=0)
    return dist


@dataclass
class SurfaceIndex:
    """Surface samples (for band detection) and a KD-tree of face centroids (for distances)."""

    mesh: MeshData
    points: np.ndarray  # [S, 3] area-uniform samples on the surface
    spacing: float  # about the distance between neighbouring samples
    tree: Any  # scipy.spatial.cKDTree over the centroids of the ordinary faces
    small: np.ndarray  # [F_s] ids of the ordinary faces (the tree's points, in order)
    big: np.ndarray  # [F_b] ids of faces far larger than the median, tested against every point
    reach: float  # largest centroid-to-corner distance among the ordinary faces

    @classmethod
    def build(cls, mesh: MeshData, spacing: float, max_samples: int = 2_000_000, seed: int = 0) -> SurfaceIndex:
        from scipy.spatial import cKDTree

        count = int(min(max_samples, max(len(mesh.faces) * 2, mesh.area / spacing**2)))
        points, _ = sample_surface(mesh, count, seed)
        tri = mesh.vertices[mesh.faces]  # [F, 3, 3]
        cen = tri.mean(1)
        radius = np.linalg.norm(tri - cen[:, None], axis=-1).max(1)  # [F]
        big = radius > 8.0 * max(float(np.median(radius)), 1e-12)
        small = np.nonzero(~big)[0]
        reach = float(radius[small].max()) if len(small) else 0.0
        return cls(mesh, points, math.sqrt(mesh.area / max(count, 1)), cKDTree(cen[small]), small,
                   np.nonzero(big)[0], reach)

    def _face_sqdist(self, points: np.ndarray, faces: np.ndarray) -> np.ndarray:
        """``points [N, 3]``, face ids ``[N, k]`` -> squared distances ``[N, k]``."""
        tri = self.mesh.vertices[self.mesh.faces[faces.reshape(-1)]]
        p = np.repeat(points, faces.shape[1], axis=0)
        return point_triangle_sqdist(p, tri[:, 0], tri[:, 1], tri[:, 2]).reshape(faces.shape)

    def distance(self, points: np.ndarray, upper: float = np.inf, k: int = 16) -> np.ndarray:
        """Exact unsigned distance to the mesh at ``points [N, 3]`` -> ``[N]``, capped at ``upper``.

        The closest face lies within ``d + reach`` of the point, where ``d`` is any upper
        bound of the distance (here: to the face of the nearest centroid): every centroid
        in that ball is tested, ``k`` at a time, doubling ``k`` where the ball holds more.
        Faces far larger than the rest are tested against every point.
        """
        points = np.ascontiguousarray(points, np.float64)
        igl = _igl(quiet=True)
        if igl is not None and len(points):  # libigl's AABB tree: the same exact distance, faster
            d2, _, _ = igl.point_mesh_squared_distance(points, self.mesh.vertices, self.mesh.faces)
            return np.minimum(np.sqrt(d2), upper)
        return self.distance_reference(points, upper, k)

    def distance_reference(self, points: np.ndarray, upper: float = np.inf, k: int = 16) -> np.ndarray:
        """:meth:`distance` in numpy/scipy alone (the fallback, and the reference in tests)."""
        points = np.ascontiguousarray(points, np.float64)
        d2 = np.full(len(points), np.inf)
        if len(self.big):
            d2 = self._face_sqdist(points, np.broadcast_to(self.big, (len(points), len(self.big)))).min(1)
        if len(self.small) and len(points):
            dc, nn = self.tree.query(points, k=1)
            d2 = np.minimum(d2, self._face_sqdist(points, self.small[nn][:, None])[:, 0])
            todo = np.nonzero(dc - self.reach < upper)[0]  # the rest is at least `upper` away
            kk = min(k, len(self.small))
            while len(todo):
                bound = np.minimum(np.sqrt(d2[todo]), upper) + self.reach
                dist, nn = self.tree.query(points[todo], k=kk)
                dist, nn = dist.reshape(len(todo), -1), nn.reshape(len(todo), -1)
                inball = dist <= bound[:, None]
                ids = self.small[np.where(inball, nn, nn[:, :1])]
                sq = np.where(inball, self._face_sqdist(points[todo], ids), np.inf)
                d2[todo] = np.minimum(d2[todo], sq.min(1))
                if kk >= len(self.small):
                    break
                todo = todo[inball[:, -1]]  # the ball may hold more centroids than we looked at
                kk = min(2 * kk, len(self.small))
        return np.minimum(np.sqrt(d2), upper)


def sample_surface(mesh: MeshData, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` area-uniform samples on the surface -> ``(points [count, 3], face [count])``."""
    import trimesh

    points, face = trimesh.sample.sample_surface(mesh.to_trimesh(), count, seed=seed)
    return np.asarray(points, np.float64), np.asarray(face, np.int64)


def distance_grid(surface: SurfaceIndex, resolution: int, clamp: float, step: int = 4) -> np.ndarray:
    """Unsigned distance on the ``R^3`` lattice, truncated at ``clamp`` -> ``float32 [R, R, R]``.

    Cells whose coarse corners all lie farther than ``clamp`` plus the cell diagonal
    are set to ``clamp`` without per-node work.
    """
    diag = math.sqrt(3.0) * step * 2.0 / max(resolution - 1, 1)

    def exact_cells(c):
        return np.minimum.reduce(_corners(c)) < clamp + diag

    return _coarse_to_fine(resolution, step, lambda p: surface.distance(p, upper=clamp + 2 * diag), exact_cells,
                           lambda c: np.full(np.array(c.shape) - 1, clamp), lambda p: surface.distance(p, upper=clamp),
                           np.float32).clip(max=clamp)
