"""The options of each signal kind, as typed configs on :class:`coordfit.core.registry.Config`.

A signal's ``load(source, **options)`` reads its options through its class here (the
signal's ``options_cls``): unknown keys refused, values read by type, validated once,
each in one line. So do ``coordfit.fit(signal_options=...)``, ``-o KEY=VALUE`` and a
resume that checks the run's options against the ones asked for.

The module imports neither torch nor numpy: the CLI builds each fitting command's
signal flags from these fields (their comments are the flags' help) without loading
the signals. Each class also names the kind's quality figure (``quality_name``,
``quality_unit``), which its :class:`~coordfit.signals.base.Signal` takes over, for the
same reason: ``--target``'s help says what it measures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal

from ..core.errors import CoordfitError
from ..core.registry import Config

__all__ = ["SignalOptions", "ImageOptions", "VideoOptions", "ShapeOptions", "ViewsOptions", "parse_indices"]


class SignalOptions(Config):
    """Base of a signal kind's options."""

    quality_name: ClassVar[Literal["psnr", "iou"]] = "psnr"  # what the kind's Signal.quality measures
    quality_unit: ClassVar[Literal["dB", ""]] = "dB"  # its unit, for help texts and the progress bar
    default_preset: ClassVar[str | None] = None  # the CLI's preset when neither --model nor --preset is given


@dataclass
class ImageOptions(SignalOptions):
    alpha: Literal["keep", "drop"] = "keep"  # RGBA or gray+alpha images: keep or drop the alpha channel
    size: int | None = None  # resize so that the longer side is this many pixels (default: as read)

    def validate(self) -> None:
        super().validate()
        if self.size is not None and not 2 <= self.size <= 65536:
            raise CoordfitError(f"size must be in [2, 65536], got {self.size}")


@dataclass
class VideoOptions(SignalOptions):
    """Which part of a clip to fit, and at what size."""

    start: int = 0  # first frame to fit (0-based, counted in the file's frames)
    end: int | None = None  # stop before this frame (default: the end of the clip)
    stride: int = 1  # keep every N-th frame from --start on (the frame rate drops to match)
    max_frames: int | None = None  # fit at most this many frames
    resize: tuple[int, int] | None = None  # resize frames to WxH as they are read
    scale: float | None = None  # or scale frames by this factor as they are read (0.5 = half size)
    fps: float | None = None  # frame rate of the source (default: from the file; 25 for folders)

    def validate(self) -> None:
        super().validate()
        if self.start < 0:
            raise CoordfitError(f"--start must be >= 0, got {self.start}")
        if self.end is not None and self.end <= self.start:
            raise CoordfitError(f"--end ({self.end}) must be greater than --start ({self.start})")
        if self.stride < 1:
            raise CoordfitError(f"--stride must be >= 1, got {self.stride}")
        if self.max_frames is not None and self.max_frames < 1:
            raise CoordfitError(f"--max-frames must be >= 1, got {self.max_frames}")
        if self.resize is not None and self.scale is not None:
            raise CoordfitError("give --resize or --scale, not both")
        if self.resize is not None:
            if len(self.resize) != 2 or min(self.resize) < 2:
                raise CoordfitError(f"--resize must be WxH with both at least 2, got {self.resize}")
            self.resize = (int(self.resize[0]), int(self.resize[1]))
        if self.scale is not None and not (0 < self.scale <= 16):
            raise CoordfitError(f"--scale must be in (0, 16], got {self.scale}")
        if self.fps is not None and not (0 < self.fps <= 1000):
            raise CoordfitError(f"--fps must be in (0, 1000], got {self.fps}")

    def to_dict(self) -> dict[str, Any]:
        """JSON form for the run's config (only fields that differ from the defaults)."""
        d = asdict(self)
        default = asdict(VideoOptions())
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items() if v != default[k]}

    def wants(self, index: int, kept: int) -> tuple[bool, bool]:
        """``(keep frame index, stop reading after it)`` given ``kept`` frames so far."""
        if self.end is not None and index >= self.end:
            return False, True
        keep = index >= self.start and (index - self.start) % self.stride == 0
        full = self.max_frames is not None and kept + keep >= self.max_frames
        last = self.end is not None and index + 1 >= self.end
        return keep, full or last


@dataclass
class ShapeOptions(SignalOptions):
    quality_name: ClassVar[Literal["psnr", "iou"]] = "iou"
    quality_unit: ClassVar[Literal["dB", ""]] = ""

    field: Literal["occupancy", "sdf"] = "occupancy"  # occupancy (BCE on logits) or sdf (L1 on a truncated signed distance)
    label_resolution: int = 128  # training lattice R^3 whose nodes are labelled exactly (64 for the built-in torus)
    resolution: int = 128  # grid of mesh.ply and of the metrics, as the label lattice (96 for the built-in torus; finer later: coordfit render RUN --resolution 512)
    margin: float = 0.05  # the longest side of the mesh spans [-1 + margin, 1 - margin]
    near_fraction: float = 0.5  # unsplit models: share of each step's points placed near the surface
    block_fraction: float = 0.25  # split models: share of each branch's draws around the step's surface point
    near_sigma: float = 0.02  # unsplit models: std of the offsets of near-surface points from the surface
    block_sigma: float = 0.1  # split models: std of each axis's draws around one surface point per step
    sdf_clamp: float = 0.1  # sdf field: distances truncated to +-this (the mesh spans [-0.95, 0.95])
    eval_points: int = 100_000  # points for each IoU metric and samples for chamfer (20,000 for the built-in torus)
    seed: int = 0  # seeds surface samples and evaluation points

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], owner: str | None = None) -> ShapeOptions:
        """As :meth:`Config.from_dict`; ``target`` is read as ``field``, its name in older run folders."""
        if isinstance(data, Mapping) and "target" in data and "field" not in data:
            data = {("field" if k == "target" else k): v for k, v in data.items()}
        return super().from_dict(data, owner)

    def validate(self) -> None:
        super().validate()
        for name in ("label_resolution", "resolution"):
            if not 8 <= getattr(self, name) <= 2048:
                raise CoordfitError(f"--{name.replace('_', '-')} must be in [8, 2048], got {getattr(self, name)}")
        if not 0.0 <= self.margin < 0.5:
            raise CoordfitError(f"margin must be in [0, 0.5), got {self.margin}")
        for name in ("near_fraction", "block_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise CoordfitError(f"{name.replace('_', '-')} must be in [0, 1], got {getattr(self, name)}")
        for name in ("near_sigma", "block_sigma", "sdf_clamp"):
            if not getattr(self, name) > 0:
                raise CoordfitError(f"{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.eval_points < 100:
            raise CoordfitError(f"eval-points must be at least 100, got {self.eval_points}")


def parse_indices(value: str | Sequence[int] | None, name: str) -> list[int] | None:
    """``"0,2,4"`` or ``[0, 2, 4]`` -> ``[0, 2, 4]``; None stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return [int(v) for v in value.replace(" ", "").split(",") if v != ""]
        except ValueError:
            raise CoordfitError(f"--{name} must be view numbers separated by commas (e.g. 0,2,4), got '{value}'") from None
    try:
        return [int(v) for v in value]
    except (TypeError, ValueError):
        raise CoordfitError(f"{name} must be a list of view numbers, got {value!r:.60}") from None


@dataclass
class ViewsOptions(SignalOptions):
    """Which views are fitted and judged, the prior, and how rays are sampled."""

    default_preset: ClassVar[str | None] = "hashgrid-views"  # 2-3 dB above the MLP fields at equal CPU time

    inputs: list[int] | None = None  # views to fit, e.g. 0,2,4 (default: every view not held out)
    holdout: list[int] | None = None  # views never trained on, scored at the end, e.g. 1,3,5
    prior: str = "none"  # the learned prior: default (the Efficient-LVSM shipped for this), shipped (the coordfit nvs one), a checkpoint or nvs run folder, or none
    prior_weight: float = 1.0  # weight of the pseudo-view loss once ramped up (input views weigh 1)
    prior_ramp: int = 200  # steps over which that weight grows linearly from 0
    pseudo_views: int = 1024  # pseudo views rendered by the prior
    pseudo_share: float = 0.5  # share of each step's rays drawn from the pseudo views (below 1)
    pseudo_seed: int = 0  # seeds the pseudo poses
    pseudo_near: float = 0.5  # share of pseudo poses between input cameras (the rest anywhere around the scene)
    pseudo_widen: float = 10.0  # degrees the pseudo elevations reach beyond the inputs'
    box_scale: float = 0.5  # scene box half-size, as a share of the mean camera distance to the look-at point
    resolution: int | None = None  # nominal grid size per axis for grid models (default: 4 x the longer image side)
    samples_front: int = 2  # samples per ray before the box
    samples_inner: int = 16  # samples per ray inside the box
    samples_outer: int = 6  # samples per ray beyond the box, the last one the background
    distortion: float = 0.0  # weight of mip-NeRF 360's distortion loss (compact weights along rays)

    def validate(self) -> None:
        super().validate()
        self.inputs = parse_indices(self.inputs, "inputs")
        self.holdout = parse_indices(self.holdout, "holdout")
        for name in ("distortion", "prior_weight"):
            if getattr(self, name) < 0:
                raise CoordfitError(f"{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.pseudo_near <= 1:
            raise CoordfitError(f"pseudo-near must be in [0, 1], got {self.pseudo_near}")
        if not 0 <= self.pseudo_share < 1:
            raise CoordfitError(f"pseudo-share must be in [0, 1): some rays come from the inputs; got {self.pseudo_share}")
        for name in ("pseudo_views", "box_scale"):
            if getattr(self, name) <= 0:
                raise CoordfitError(f"{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.prior_ramp < 0:
            raise CoordfitError(f"prior-ramp must be >= 0, got {self.prior_ramp}")
        if self.resolution is not None and self.resolution < 2:
            raise CoordfitError(f"resolution must be at least 2, got {self.resolution}")
        # the samples per ray are checked by volume.RaySampling.check when the signal is built
