"""A view-synthesis model used as a learned prior: pseudo views for fitting a scene.

:class:`ViewPrior` wraps an Efficient-LVSM (or LVSM) checkpoint. ``condition`` encodes
the input views once (Efficient-LVSM: through the input stream into its KV cache);
``render`` then draws any number of target cameras from that cache, a chunk at a time.

Image size: the model runs at *its own* size (``size`` in its JSON or run config, 32 px
for the shipped checkpoint; the longer side, the other one following the scene's aspect,
both rounded to whole patches). Input views are resized to it (area averaging) with
their intrinsics scaled; renders come back at that size, for cameras whose intrinsics
are scaled the same way (callers cast rays at that size, or resize the renders).

Poses: a prior trained on procedural scenes knows their frame (world z up, cameras
3.5-4.5 units from a point 0.3 above the ground, looking at it). Without
``normalize_poses`` in its checkpoint, cameras are moved into that frame by a
similarity taken from the input cameras (up -> +z, look-at point -> (0, 0, 0.3),
mean distance brought into 3.5-4.5); with it, into the mean input camera frame as in
training. Procedural scenes stay where they are (to float rounding).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ...core.errors import CoordfitError
from ...geometry.rig import Rig
from ...geometry.cameras import normalize_poses
from ...nvs.registry import SHIPPED_CHECKPOINT, load_model

__all__ = ["ViewPrior", "prior_source", "DEFAULT_PRIOR"]

DEFAULT_PRIOR = SHIPPED_CHECKPOINT.with_name("efficient-lvsm-32px-w128.safetensors")
"""``--prior default``: Efficient-LVSM, width 128, 4 + 4 layers, trained by ``coordfit nvs train`` on a GPU
(``shipped`` names the smaller CPU-trained checkpoint that ``coordfit nvs`` uses)."""

_LOOK_AT = (0.0, 0.0, 0.3)  # where procedural cameras look (coordfit/nvs/procedural.py)
_RADIUS = (3.5, 4.5)  # procedural camera distances (ProceduralConfig.radius)
_CHUNK = 8  # targets rendered per call


def prior_source(spec: str | Path | None) -> Path | None:
    """``none``/None -> None, ``default`` -> :data:`DEFAULT_PRIOR`, ``shipped`` -> the ``coordfit nvs``
    checkpoint, else the path as given."""
    named = {"none": None, "default": DEFAULT_PRIOR, "shipped": SHIPPED_CHECKPOINT}
    if spec is None:
        return None
    return named[str(spec).lower()] if str(spec).lower() in named else Path(spec)


class ViewPrior:
    """Renders pseudo views of a scene from a few posed input views."""

    def __init__(self, model: nn.Module, info: dict, source: str = "") -> None:
        self.model = model.eval()
        self.info = info
        self.source = source
        self.patch = int(model.cfg.patch)
        self.trained_size = int(info.get("size", 32))
        self.normalize = bool(info.get("normalize_poses", False))
        self._cache = None
        self._inputs: tuple[torch.Tensor, ...] | None = None
        self._input_c2w: torch.Tensor | None = None
        self._frame: tuple[torch.Tensor, torch.Tensor, float] | None = None

    @classmethod
    def load(cls, spec: str | Path | None) -> ViewPrior | None:
        """``default``, a checkpoint (``.safetensors`` or an ``nvs train`` run folder) or ``none``."""
        path = prior_source(spec)
        if path is None:
            return None
        try:
            model, info = load_model(path)
        except CoordfitError as exc:
            raise CoordfitError(f"--prior {spec} is not a view-synthesis checkpoint: {exc}") from None
        if "size" not in info:  # a run folder records its training size in config.json
            run_cfg = (path if path.is_dir() else path.parent) / "config.json"
            try:
                info["size"] = int(json.loads(run_cfg.read_text()).get("size", 32)) if run_cfg.is_file() else 32
            except (ValueError, AttributeError, TypeError):
                info["size"] = 32
        return cls(model, info, str(path))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def size_for(self, height: int, width: int) -> tuple[int, int]:
        """The (H, W) the prior runs at for a scene of ``height`` x ``width``."""
        s, p = self.trained_size, self.patch
        long_side = max(height, width)
        h = max(p, round(s * height / long_side / p) * p)
        w = max(p, round(s * width / long_side / p) * p)
        return h, w

    def scale_intrinsics(self, fxfycxcy: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Intrinsics ``[..., 4]`` of a ``height x width`` camera -> the same camera at the prior's size."""
        h, w = self.size_for(height, width)
        scale = torch.tensor([w / width, h / height, w / width, h / height], dtype=fxfycxcy.dtype)
        return fxfycxcy * scale.to(fxfycxcy.device)

    @torch.no_grad()
    def condition(self, images: torch.Tensor, c2w: torch.Tensor, fxfycxcy: torch.Tensor) -> None:
        """Encode the input views once: images ``[V, 3, H, W]`` on [0, 1], c2w ``[V, 4, 4]``, fxfycxcy ``[V, 4]``."""
        height, width = images.shape[-2:]
        h, w = self.size_for(height, width)
        dev = self.device
        small = F.interpolate(images.float(), size=(h, w), mode="area") if (h, w) != (height, width) else images
        k = self.scale_intrinsics(fxfycxcy.float(), height, width)
        self._input_c2w = c2w.float()
        self._frame = None if self.normalize else _procedural_frame(self._input_c2w)
        cams = self._to_frame(self._input_c2w)
        self._inputs = (small[None].to(dev), cams[None].to(dev), k[None].to(dev))
        self._cache = self.model.add_views(None, *self._inputs) if hasattr(self.model, "add_views") else None
        self._scene_size = (height, width)

    @torch.no_grad()
    def render(self, c2w: torch.Tensor, fxfycxcy: torch.Tensor) -> torch.Tensor:
        """Render cameras c2w ``[P, 4, 4]`` with intrinsics ``[P, 4]`` of the scene's image size
        -> ``[P, 3, h, w]`` on [0, 1] at the prior's size (CPU)."""
        if self._inputs is None:
            raise CoordfitError("ViewPrior.render before condition()")
        k = self.scale_intrinsics(fxfycxcy.float(), *self._scene_size).to(self.device)
        cams = self._to_frame(c2w.float()).to(self.device)
        out = []
        for i in range(0, len(cams), _CHUNK):
            tc, tk = cams[None, i : i + _CHUNK], k[None, i : i + _CHUNK]
            if self._cache is not None:
                out.append(self.model.render(self._cache, tc, tk)[0])
            else:
                out.append(self.model(*self._inputs, tc, tk)[0])
        return torch.cat(out).clamp(0, 1).cpu()

    def _to_frame(self, c2w: torch.Tensor) -> torch.Tensor:
        """World cameras ``[V, 4, 4]`` -> the frame the prior was trained in (fixed by the inputs)."""
        if self.normalize:
            return normalize_poses(self._input_c2w, c2w)[1]
        rot, shift, scale = self._frame
        out = c2w.clone()
        out[:, :3, :3] = rot @ c2w[:, :3, :3]
        out[:, :3, 3] = scale * (c2w[:, :3, 3] @ rot.T) + shift
        return out


def _procedural_frame(c2w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Rotation ``[3, 3]``, shift ``[3]`` and scale taking the input rig into the procedural frame:
    ``x -> scale * R x + shift`` sends up to +z and the look-at point to ``_LOOK_AT``."""
    rig = Rig.from_cameras(c2w)
    rot = _rotation_onto(rig.up, torch.tensor([0.0, 0.0, 1.0]))
    mean_r = float(rig.radius.mean())
    scale = min(max(mean_r, _RADIUS[0]), _RADIUS[1]) / mean_r
    shift = torch.tensor(_LOOK_AT) - scale * (rot @ rig.centre)
    return rot, shift, scale


def _rotation_onto(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The smallest rotation ``[3, 3]`` taking unit vector ``a`` onto unit vector ``b`` (Rodrigues)."""
    v = torch.cross(a, b, dim=0)
    c = float(a @ b)
    if float(v.norm()) < 1e-9:
        if c > 0:
            return torch.eye(3)
        axis = F.normalize(torch.cross(a, torch.tensor([1.0, 0.0, 0.0]), dim=0), dim=0)
        if float(axis.norm()) < 0.5:
            axis = F.normalize(torch.cross(a, torch.tensor([0.0, 1.0, 0.0]), dim=0), dim=0)
        return 2 * torch.outer(axis, axis) - torch.eye(3)
    vx = torch.tensor([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return torch.eye(3) + vx + vx @ vx * (1 / (1 + c))
