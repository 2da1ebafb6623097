"""The surface of a fitted shape: its field on a grid, marching cubes, and mesh metrics.

* :func:`field_volume` evaluates the model on every node of an ``R^3`` grid over
  [-1, 1]^3 through its split path, in slabs of x: the reference.
* :func:`surface_volume` evaluates the same grid only where the level set can pass
  (coarse-to-fine, as the multiresolution isosurface extraction of Occupancy Networks,
  Mescheder et al. 2019), and gives marching cubes the same mesh as the full grid at a
  fraction of the cost: the surface is a thin shell of the volume.
* :func:`marching_cubes` / :func:`extract_mesh` turn a field into a mesh (normalised
  frame); :func:`mesh_metrics` compares two meshes (chamfer, normal consistency).

All evaluation goes through :func:`coordfit.geometry.grid.evaluate_grid` (memory-bounded chunks,
the model's device) and reports ``render`` progress through the callback passed in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import torch

from ..geometry.grid import axis_coords, evaluate_grid
from ..core.phases import Report, quiet
from . import mesh_labels as ml

__all__ = ["BLOCK", "field_volume", "surface_volume", "marching_cubes", "extract_mesh", "mesh_metrics"]

Field = Literal["occupancy", "sdf"]
BLOCK = 8  # grid cells along each side of the blocks surface_volume evaluates whole or skips
# A block evaluated alone costs about (1 + 1/BLOCK)^3 = 1.4x its share of the whole grid (its
# faces are shared with its neighbours): past this fraction of blocks, the whole grid is cheaper.
WHOLE_GRID_FRACTION = 0.5


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def field_volume(model: torch.nn.Module, resolution: int, chunk: int | None = None,
                 report: Report = quiet) -> np.ndarray:
    """The model's output on every node of a ``resolution^3`` grid -> ``float32 [R, R, R]``.

    Evaluated through the split path (:func:`evaluate_grid`, ``chunk`` outputs at a time)
    in slabs of x of about 262,144 nodes (``report("render", x_done, R)``).
    """
    ax = axis_coords(resolution, _device(model))
    vol = np.empty((resolution,) * 3, np.float32)
    slab = max(1, (1 << 18) // (resolution * resolution))
    for s in range(0, resolution, slab):
        vol[s : s + slab] = evaluate_grid(model, [ax[s : s + slab], ax, ax], chunk=chunk)[..., 0].cpu().numpy()
        report("render", min(s + slab, resolution), resolution)
    return vol


@torch.no_grad()
def surface_volume(model: torch.nn.Module, resolution: int, *, seeds: np.ndarray | None = None,
                   block: int = BLOCK, chunk: int | None = None, report: Report = quiet) -> np.ndarray:
    """The model's field on the ``resolution^3`` grid, exact wherever its zero level passes.

    First the nodes of every ``block``-th grid plane (a coarse grid); then every node of
    the blocks (coarse cells) whose corners disagree in sign or that hold a point of
    ``seeds [S, 3]`` (samples of the reference surface, normalised frame), and of their
    neighbours; then, until none is left, of the neighbours of every evaluated block
    that the level set crosses. Each remaining block holds one sign at its corners and
    is filled with their mean. Marching cubes then finds the mesh of the full grid
    (:func:`field_volume`), except surface pieces lying wholly inside blocks that touch
    neither the seeds nor any crossed block (a speck smaller than a block, away from the
    rest of the surface). Grids of fewer than 3 blocks a side, and fields whose level set
    reaches over :data:`WHOLE_GRID_FRACTION` of the blocks, are evaluated whole.
    """
    from scipy.ndimage import binary_dilation

    R = resolution
    ci = np.unique(np.r_[np.arange(0, R, block), R - 1])  # coarse node indices
    nb = len(ci) - 1
    if nb < 3:
        return field_volume(model, R, chunk, report)
    ax = axis_coords(R, _device(model))
    axc = ax[torch.from_numpy(ci).to(ax.device)]
    coarse = evaluate_grid(model, [axc, axc, axc], chunk=chunk)[..., 0].cpu().numpy()  # [c, c, c]
    corners = [coarse[i : i + nb, j : j + nb, k : k + nb] for i in (0, 1) for j in (0, 1) for k in (0, 1)]
    positive = [c > 0 for c in corners]
    todo = np.logical_or.reduce(positive) & ~np.logical_and.reduce(positive)  # [nb, nb, nb]
    cell = np.clip(np.searchsorted(ci, np.arange(R), side="right") - 1, 0, nb - 1)  # node -> block
    if seeds is not None and len(seeds):
        node = np.clip(np.rint((np.asarray(seeds) + 1.0) * 0.5 * (R - 1)).astype(np.int64), 0, R - 1)
        todo[cell[node[:, 0]], cell[node[:, 1]], cell[node[:, 2]]] = True
    fill = np.mean(corners, axis=0, dtype=np.float32)
    vol = fill[cell[:, None, None], cell[None, :, None], cell[None, None, :]]
    vol[np.ix_(ci, ci, ci)] = coarse
    cube = np.ones((3, 3, 3), bool)
    done = np.zeros_like(todo)
    todo = binary_dilation(todo, structure=cube)
    while todo.any():  # progress in blocks: those planned so far, + 1 until no more are added
        if (done | todo).mean() > WHOLE_GRID_FRACTION:  # a level set almost everywhere (a noisy field)
            return field_volume(model, R, chunk, report)
        first = int(done.sum())
        done |= todo
        planned = int(done.sum()) + 1
        crossed = _evaluate_blocks(model, ax, ci, todo, vol, chunk,
                                   lambda n, a=first, b=planned: report("render", a + n, b))
        todo = binary_dilation(crossed, structure=cube) & ~done
    report("render", int(done.sum()), int(done.sum()))
    return vol


def _evaluate_blocks(model: torch.nn.Module, ax: torch.Tensor, ci: np.ndarray, todo: np.ndarray, vol: np.ndarray,
                     chunk: int | None, evaluated: Callable[[int], None]) -> np.ndarray:
    """Evaluate every node of the ``todo`` blocks into ``vol``; -> the blocks the level set crosses.

    One :func:`evaluate_grid` call per (x, y) column of blocks (its z blocks together),
    so split models keep their outer-product evaluation; ``evaluated(blocks)`` after each.
    """
    nb = len(ci) - 1
    crossed = np.zeros_like(todo)
    bx, by, bz = np.nonzero(todo)  # row-major: the z blocks of one column are consecutive
    column = bx * nb + by
    starts = np.r_[0, np.flatnonzero(np.diff(column)) + 1, len(bx)]
    for s, e in zip(starts[:-1], starts[1:]):
        i, j, ks = bx[s], by[s], bz[s:e]
        x0, x1, y0, y1 = ci[i], ci[i + 1] + 1, ci[j], ci[j + 1] + 1
        zs = np.unique(np.concatenate([np.arange(ci[k], ci[k + 1] + 1) for k in ks]))
        out = evaluate_grid(model, [ax[x0:x1], ax[y0:y1], ax[torch.from_numpy(zs).to(ax.device)]], chunk=chunk)
        out = out[..., 0].cpu().numpy()  # [nx, ny, nz]
        vol[x0:x1, y0:y1, zs] = out
        positive = out > 0
        for k in ks:
            p = positive[:, :, (zs >= ci[k]) & (zs <= ci[k + 1])]
            crossed[i, j, k] = p.any() and not p.all()
        evaluated(int(e))
    return crossed


def marching_cubes(vol: np.ndarray, field: Field) -> ml.MeshData:
    """Marching cubes (scikit-image) of a field ``[R, R, R]`` on [-1, 1]^3 -> mesh (normalised frame).

    The surface is logit 0 (occupancy) or distance 0 (sdf); faces point outward. A field
    with no zero crossing gives an empty mesh.
    """
    from skimage.measure import marching_cubes as skimage_marching_cubes

    inside_positive = vol if field == "occupancy" else -vol
    if not (inside_positive.max() > 0 > inside_positive.min()):
        return ml.MeshData(np.zeros((0, 3)), np.zeros((0, 3), np.int64))
    step = 2.0 / (vol.shape[0] - 1)
    verts, faces, _, _ = skimage_marching_cubes(inside_positive, level=0.0, spacing=(step, step, step),
                                                gradient_direction="ascent")
    return ml.MeshData(verts.astype(np.float64) - 1.0, faces.astype(np.int64))


def extract_mesh(model: torch.nn.Module, resolution: int, field: Field, report: Report = quiet) -> ml.MeshData:
    """The mesh of the model's level set at ``resolution^3`` (:func:`surface_volume`, normalised frame)."""
    mesh = marching_cubes(surface_volume(model, resolution, report=report), field)
    report("mesh", 1, 1)
    return mesh


def mesh_metrics(pred: ml.MeshData, ref: ml.MeshData, samples: int, seed: int = 0) -> dict[str, float | None]:
    """Chamfer L1/L2 and normal consistency between two meshes (normalised frame).

    ``samples`` area-uniform points on each, drawn with the same seed (so a mesh against
    itself scores exactly 0 and 1); nearest neighbours by KD-tree both ways.
    ``chamfer_l1`` = mean of the two mean distances, ``chamfer_l2`` the same with
    squared distances, ``normal_consistency`` the mean |cos| between each point's face
    normal and its neighbour's. ``None`` when the predicted mesh is empty.
    """
    from scipy.spatial import cKDTree

    if len(pred.faces) == 0:
        return {"chamfer_l1": None, "chamfer_l2": None, "normal_consistency": None}
    pa, fa = ml.sample_surface(pred, samples, seed + 3)
    pb, fb = ml.sample_surface(ref, samples, seed + 3)
    na, nb = _face_normals(pred)[fa], _face_normals(ref)[fb]
    d_ab, i_ab = cKDTree(pb).query(pa)
    d_ba, i_ba = cKDTree(pa).query(pb)
    cos = np.r_[np.abs((na * nb[i_ab]).sum(-1)), np.abs((nb * na[i_ba]).sum(-1))]
    return {
        "chamfer_l1": float(0.5 * (d_ab.mean() + d_ba.mean())),
        "chamfer_l2": float(0.5 * ((d_ab**2).mean() + (d_ba**2).mean())),
        "normal_consistency": float(cos.mean()),
    }


def _face_normals(mesh: ml.MeshData) -> np.ndarray:
    v = mesh.vertices[mesh.faces]
    n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-20)
