"""3D shapes: fit occupancy or a truncated signed distance on (x, y, z), export meshes.

A mesh (OBJ/PLY/STL/OFF/GLB, or ``primitive:torus``...) is normalised into [-1, 1]^3
(longest side ``2 (1 - margin)``) and labelled on an ``R^3`` lattice
(``label_resolution``): inside/outside by generalized winding number (so open scans
work, see :mod:`.mesh_labels`) and, for ``field="sdf"``, the exact distance to the
surface truncated at ``sdf_clamp``. Training draws lattice nodes only, so every label is
exact; draws are biased toward the surface and made on the signal's device (see
:meth:`ShapeSignal.sample`).

Outputs (:meth:`ShapeSignal.finish`, the model evaluated once): the field on the
``resolution^3`` grid where the surface can pass (:mod:`.isosurface`), ``mesh.ply`` by
marching cubes in the input's frame, ``preview.png`` (three shaded views of it), and
metrics ``iou`` (uniform grid nodes), ``iou_near_surface``, ``chamfer_l1``,
``chamfer_l2``, ``normal_consistency``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.errors import CoordfitError
from ..geometry.grid import PERMUTE_RATIO, axis_coords, check_generator, flat_to_index, gather, index_coords, sub_grid_counts
from ..core.io import atomic_write
from ..core.phases import Ready, Report, quiet
from . import mesh_labels as ml
from .base import Signal, register_signal
from .isosurface import extract_mesh, field_volume, marching_cubes, mesh_metrics, surface_volume
from .image import save_image
from .options import ShapeOptions
from .preview import render_views

__all__ = ["ShapeSignal", "ShapeOptions", "extract_mesh", "field_volume", "mesh_metrics", "DEFAULT_SHAPE"]

DEFAULT_SHAPE = "primitive:torus"
# The built-in torus is the first-run shape: its mesh, lattice and metrics are sized so that
# `coordfit shape` with no flags finishes within a minute on a 2-core CPU (docs/shapes.md).
FIRST_RUN_OPTIONS = {"resolution": 96, "label_resolution": 64, "eval_points": 20_000}


@register_signal("shape")
class ShapeSignal(Signal):
    """A shape on axes ``(x, y, z)``: lattice labels ``[R, R, R]`` plus the normalised mesh.

    ``quality`` (progress bar, the quality stop) is the batch IoU in [0, 1] of the
    predicted inside (logit > 0, or sdf < 0) against the labels, on the biased
    training batch -- not the uniform IoU of ``metrics.json``. Labels, surface anchors
    and every mask stay on the signal's device.
    """

    options_cls = ShapeOptions  # its quality: IoU, unitless
    default_split = "x+y+z"
    summary_metrics = ("iou", "chamfer_l1")

    def __init__(self, mesh: ml.MeshData, source: str = "<mesh>", options: ShapeOptions | None = None) -> None:
        self.options = o = options or ShapeOptions()
        o.validate()
        self.source = source
        self.mesh, center, scale = ml.normalise(mesh, o.margin)
        self.center, self.scale = center, scale  # x_input = x_normalised / scale + center
        R = o.label_resolution
        self.axes, self.shape, self.out_features = ("x", "y", "z"), (R, R, R), 1
        self.surface = ml.SurfaceIndex.build(self.mesh, spacing=4 * 2.0 / (R - 1) / 3.0, seed=o.seed)
        occ = ml.label_grid(self.mesh, R, self.surface)  # bool [R, R, R]
        if not occ.any():
            raise CoordfitError(
                f"{source} encloses no volume at {R}^3 (a flat or degenerate mesh); an {o.field} field "
                "needs a closed or nearly closed surface"
            )
        if o.field == "occupancy":
            labels = occ.astype(np.float32)
        else:
            dist = ml.distance_grid(self.surface, R, o.sdf_clamp)
            labels = np.where(occ, -dist, dist).astype(np.float32)
        self.labels = torch.from_numpy(labels)[..., None]  # [R, R, R, 1]
        self.anchors = torch.from_numpy(self.surface.points).float()  # [S, 3] surface samples
        self._full_batch = None
        self._cache: dict[str, Any] = {}

    # -- construction / description -------------------------------------------------------
    @classmethod
    def load(cls, source: str | Path | None = None, **options: Any) -> ShapeSignal:
        """Read ``source`` (a mesh file or ``primitive:<name>``); ``options``:
        :class:`~coordfit.signals.options.ShapeOptions`.

        With no ``source`` it is the built-in torus, the first-run shape, with a smaller
        mesh, lattice and metric sample (:data:`FIRST_RUN_OPTIONS`) where not given.
        """
        if source is None:
            options = {**FIRST_RUN_OPTIONS, **options}
        opts = cls.read_options(options)
        source = str(source) if source is not None else DEFAULT_SHAPE
        mesh = ml.read_mesh(source)
        if not source.startswith("primitive:"):
            source = str(Path(source).resolve())
        return cls(mesh, source=source, options=opts)

    def meta(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "source": self.source,
            "options": asdict(self.options),
            "field": self.options.field,
            "center": [float(c) for c in self.center],
            "scale": float(self.scale),
            "faces": int(len(self.mesh.faces)),
        }

    @property
    def device(self) -> torch.device:
        return self.labels.device

    def to(self, device: torch.device | str) -> ShapeSignal:
        self.labels = self.labels.to(device).contiguous()
        self.anchors = self.anchors.to(device)
        self._full_batch = None
        return self

    # -- training ----------------------------------------------------------------------------
    def _to_index(self, pts: torch.Tensor) -> torch.Tensor:
        R = self.shape[0]
        return ((pts + 1.0) * 0.5 * (R - 1)).round().long().clamp_(0, R - 1)

    def sample(self, branches, budget, generator, step=0):
        """A sub-grid of lattice nodes, about ``budget`` of them, biased toward the surface.

        Each branch keeps the same fraction of its nodes (as ``grid.sample_branches``),
        drawn in O(budget) on the signal's device with ``generator`` only. Split models:
        each branch draws from a mixture, ``1 - block_fraction`` uniform and
        ``block_fraction`` Gaussian (std ``block_sigma`` per axis) around ONE surface
        point per step shared by all branches, so the outer product holds a block
        through the surface besides uniform slabs; a branch of at most
        ``grid.PERMUTE_RATIO`` times its draw draws distinct nodes (a device
        ``multinomial`` over its lattice), a larger one draws with replacement.
        Unsplit models: random nodes (with replacement), ``near_fraction`` of them near
        their own surface point (std ``near_sigma``). Labels are the lattice labels: exact.
        """
        R = self.shape[0]
        device = check_generator(generator, self.device)
        if R**3 <= budget:  # the whole lattice every step: build it once
            key = (tuple(map(tuple, branches)), device)
            if self._full_batch is None or self._full_batch[0] != key:
                index = [flat_to_index(torch.arange(R ** len(b), device=device), [R] * len(b)) for b in branches]
                self._full_batch = (key, self._batch(branches, index))
            return self._full_batch[1]
        counts = sub_grid_counts(branches, self.shape, budget)
        if len(branches) == 1:
            return self._batch(branches, [self._near_draw(counts[0], generator)])
        anchor = self.anchors[torch.randint(len(self.anchors), (1,), generator=generator, device=device)][0]  # [3]
        return self._batch(branches, [self._block_draw(b, m, anchor, generator) for b, m in zip(branches, counts)])

    def _near_draw(self, m: int, generator: torch.Generator) -> torch.Tensor:
        """Unsplit: ``m`` nodes ``[m, 3]``, uniform plus ``near_fraction`` around surface points."""
        R, o, dev = self.shape[0], self.options, self.device
        n_near = round(m * o.near_fraction)
        uni = torch.randint(R, (m - n_near, 3), generator=generator, device=dev)
        centre = self.anchors[torch.randint(len(self.anchors), (n_near,), generator=generator, device=dev)]
        near = self._to_index(centre + torch.randn(n_near, 3, generator=generator, device=dev) * o.near_sigma)
        return torch.cat([uni, near], dim=0)

    def _block_draw(self, b: Sequence[int], m: int, anchor: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Split: ``m`` nodes ``[m, len(b)]`` of branch ``b`` from the uniform + block mixture."""
        R, o, dev = self.shape[0], self.options, self.device
        d, n_b = len(b), R ** len(b)
        if n_b <= PERMUTE_RATIO * m:  # distinct nodes: the mixture's weights over the branch's n_b nodes
            ax = axis_coords(R, dev)
            w = torch.ones((), device=dev)
            for dim in b:  # the Gaussian is a product over the branch's axes: [R, ..., R]
                w = w[..., None] * torch.exp(-0.5 * ((ax - anchor[dim]) / o.block_sigma) ** 2)
            w = w.reshape(-1)
            w = (1.0 - o.block_fraction) / n_b + o.block_fraction * w / w.sum()
            return flat_to_index(torch.multinomial(w, m, replacement=False, generator=generator), [R] * d)
        # with replacement in O(m): uniform nodes, then the block's nodes from a Gaussian
        # truncated to the lattice's extent (inverse CDF), snapped to the nearest node
        n_block = round(m * o.block_fraction)
        uni = torch.randint(R, (m - n_block, d), generator=generator, device=dev)
        centre = torch.stack([anchor[dim] for dim in b])  # [d], views of the device tensor
        half = 1.0 + 1.0 / (R - 1)  # the end nodes own half a cell beyond +-1
        lo = torch.special.ndtr((-half - centre) / o.block_sigma)
        hi = torch.special.ndtr((half - centre) / o.block_sigma)
        u = lo + (hi - lo) * torch.rand(n_block, d, generator=generator, device=dev)
        block = self._to_index((centre + o.block_sigma * torch.special.ndtri(u)).clamp(-1.0, 1.0))
        return torch.cat([uni, block], dim=0)

    def _batch(self, branches, index):
        coords = [index_coords(i, [self.shape[0]] * i.shape[1]) for i in index]
        return coords, gather(self.labels, branches, index)

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.options.field == "occupancy":
            return torch.nn.functional.binary_cross_entropy_with_logits(pred, target)
        c = self.options.sdf_clamp
        return torch.nn.functional.l1_loss(pred.clamp(-c, c), target)

    def _inside(self, values: torch.Tensor) -> torch.Tensor:
        return values > 0 if self.options.field == "occupancy" else values < 0

    def quality(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Batch IoU in [0, 1], a 0-dim tensor on the batch's device (no copy to the host)."""
        p = self._inside(pred.detach())
        t = target > 0.5 if self.options.field == "occupancy" else target < 0
        return _iou(p, t)

    # -- evaluation and outputs -------------------------------------------------------------------
    def _eval_nodes(self, resolution: int, report: Report) -> tuple[np.ndarray, ...]:
        """Nodes of the ``resolution^3`` grid for the IoU metrics and their inside labels.

        ``eval_points`` uniform nodes and as many nodes nearest to surface samples plus
        N(0, 0.02) offsets, as index arrays ``[n, 3]``. On the label lattice (the default
        ``resolution``) their labels are the training labels, already exact; on another
        grid they are labelled by winding number, once per signal and resolution
        (``report("label", 1, 1)`` when that happens).
        """
        key = ("eval_nodes", resolution)
        if key not in self._cache:
            o, ax = self.options, ml.lattice(resolution)
            rng = np.random.default_rng(o.seed + 1)
            uni = rng.integers(0, resolution, (o.eval_points, 3))
            surf, _ = ml.sample_surface(self.mesh, o.eval_points, o.seed + 2)
            near = surf + rng.normal(0.0, 0.02, surf.shape)  # "surface + N(0, 0.01)" in a unit cube
            near = np.clip(np.rint((near + 1.0) * 0.5 * (resolution - 1)), 0, resolution - 1).astype(np.int64)
            if resolution == self.shape[0]:
                self._cache[key] = (uni, self._labelled_inside(uni), near, self._labelled_inside(near))
            else:
                self._cache[key] = (uni, ml.inside(self.mesh, ax[uni]), near, ml.inside(self.mesh, ax[near]))
                report("label", 1, 1)
        return self._cache[key]

    def _labelled_inside(self, nodes: np.ndarray) -> np.ndarray:
        """The training labels' inside test at lattice nodes ``[n, 3]`` -> ``bool [n]``."""
        labels = self.labels[..., 0][tuple(torch.from_numpy(nodes.T).to(self.device))]
        # sdf: an inside node on the surface is labelled -0.0, so the sign bit tells
        inside = labels > 0.5 if self.options.field == "occupancy" else torch.signbit(labels)
        return inside.cpu().numpy()

    def finish(self, model: torch.nn.Module, run_dir: Path | None = None, report: Report = quiet,
               sample: int | None = None, ready: Ready | None = None) -> tuple[dict[str, Any], list[Path]]:
        """The field on the ``resolution^3`` grid, evaluated once (where the surface can be:
        :func:`.isosurface.surface_volume`), gives the IoU metrics at grid nodes, the mesh
        (marching cubes), its chamfer and normal metrics, ``mesh.ply`` and ``preview.png``
        (three shaded views of the mesh: :func:`.preview.render_views`)."""
        o = self.options
        R = o.resolution
        uni, uni_in, near, near_in = self._eval_nodes(R, report)
        vol = surface_volume(model, R, seeds=self.surface.points, report=report)
        metrics: dict[str, Any] = {
            "iou": float(_iou(self._inside(torch.from_numpy(vol[tuple(uni.T)])), torch.from_numpy(uni_in))),
            "iou_near_surface": float(_iou(self._inside(torch.from_numpy(vol[tuple(near.T)])),
                                           torch.from_numpy(near_in))),
        }
        mesh = marching_cubes(vol, o.field)
        report("mesh", 1, 1)
        metrics.update(mesh_metrics(mesh, self.mesh, o.eval_points, o.seed))
        metrics.update(mesh_resolution=R, mesh_faces=len(mesh.faces))
        if len(mesh.faces) == 0:
            level = "logit 0" if o.field == "occupancy" else "distance 0"
            metrics["warnings"] = [f"mesh.ply is empty: the fitted field crosses its level set ({level}) nowhere "
                                   f"on the {R}^3 grid; train longer or use another model"]
        report("metrics", 1, 1)
        if run_dir is None:
            return metrics, []
        path = _save_mesh(Path(run_dir) / "mesh.ply", mesh, self.center, self.scale)
        report("export", 1, 1)
        preview = save_image(Path(run_dir) / "preview.png", render_views(mesh))
        report("preview", 1, 1)
        return metrics, [path, preview]

    @staticmethod
    def default_render_name(meta: dict[str, Any], *, resolution: int | None = None, **unused: Any) -> str:
        return f"mesh_{resolution or meta['options']['resolution']}.ply"

    @staticmethod
    def render_run(model: torch.nn.Module, meta: dict[str, Any], out: Path, *, resolution: int | None = None,
                   report: Report = quiet, **unused: Any) -> Path:
        """Re-extract the mesh of a fitted shape at ``resolution``^3, in the input's frame."""
        bad = [k for k, v in unused.items() if v is not None]
        if bad:
            raise CoordfitError(f"a shape run does not take --{bad[0].replace('_', '-')} (use --resolution)")
        res = resolution or meta["options"]["resolution"]
        if not 8 <= res <= 2048:
            raise CoordfitError(f"--resolution must be in [8, 2048], got {res}")
        options = meta["options"]
        mesh = extract_mesh(model, res, options.get("field", options.get("target", "occupancy")), report=report)
        path = _save_mesh(out, mesh, np.asarray(meta["center"]), float(meta["scale"]))
        report("export", 1, 1)
        return path


# -- helpers ----------------------------------------------------------------------------------
def _iou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Intersection over union of two masks, a 0-dim float tensor on their device (1 when both are empty)."""
    p, t = pred.reshape(-1).bool(), target.reshape(-1).bool()
    union = (p | t).sum()
    return torch.where(union > 0, (p & t).sum() / union.clamp_min(1), 1.0)


def _save_mesh(path: Path, mesh: ml.MeshData, center: np.ndarray, scale: float) -> Path:
    """Write ``mesh`` (normalised frame) as binary PLY in the input's frame, atomically."""
    import trimesh

    out = trimesh.Trimesh(mesh.vertices / scale + center, mesh.faces, process=False)
    return atomic_write(path, lambda p: out.export(p, file_type="ply"))
