"""Views: fit a radiance field to a few posed photos, optionally with a learned prior.

The field is any 3-D model of the registry (its four outputs read as density and colour,
see :mod:`coordfit.geometry.volume`), fitted through the one training loop: :meth:`sample` draws
random pixels of the *input* views (and of the prior's pseudo views) with their rays and
samples, in O(batch) on the signal's device; :meth:`predict` volume-renders them. Held-out
views are never turned into rays: they are only rendered and scored at the end.

With a prior (:class:`coordfit.signals.views.prior.ViewPrior`), pseudo views are rendered once at
poses around and between the input cameras; each step a share of the rays comes from
them, their loss weighted by ``prior_weight`` ramped up from 0 over ``prior_ramp`` steps.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ...core.metrics import psnr, psnr_from_mse, ssim
from .prior import ViewPrior
from ...core.phases import Ready, Report, quiet
from ...geometry.rig import Rig, pseudo_poses
from ...geometry.volume import RaySampling, SceneBox, contract, distortion, interval_edges, ray_segments, sample_intervals, shade
from ..base import Signal, register_signal
from ..options import ViewsOptions
from .data import choose_views, read_views
from .render import render_camera, write_outputs_for

__all__ = ["ViewsConfig", "ViewsSignal", "DEFAULT_PRESET", "DEFAULT_SOURCE"]

ViewsConfig = ViewsOptions  # its name before the views options joined coordfit.signals.options

DEFAULT_PRESET = ViewsOptions.default_preset  # 2-3 dB above the MLP fields at equal CPU time (docs/views.md)
DEFAULT_SOURCE = "procedural:1000000000"
_LOG_EVERY = 25  # steps between rows of prior_log.csv


@dataclass
class _Views:
    """Posed views as the sampler reads them: pixels ``[V, H, W, 3]``, box-unit cameras."""

    pixels: torch.Tensor  # [V, H, W, 3] on [0, 1]
    c2w: torch.Tensor  # [V, 4, 4], translation in box units
    fxfycxcy: torch.Tensor  # [V, 4]

    @property
    def count(self) -> int:
        return self.pixels.shape[0] * self.pixels.shape[1] * self.pixels.shape[2]

    def to(self, device: torch.device | str) -> _Views:
        return _Views(self.pixels.to(device), self.c2w.to(device), self.fxfycxcy.to(device))

    def rays(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Flat pixel numbers ``[R]`` -> origins, unit directions and colours ``[R, 3]``."""
        _, h, w, _ = self.pixels.shape
        view, pix = index // (h * w), index % (h * w)
        row, col = pix // w, pix % w
        k, c2w = self.fxfycxcy[view], self.c2w[view]  # [R, 4], [R, 4, 4]
        d_cam = torch.stack([(col + 0.5 - k[:, 2]) / k[:, 0], (row + 0.5 - k[:, 3]) / k[:, 1],
                             torch.ones_like(k[:, 0])], dim=-1)
        d = torch.nn.functional.normalize((c2w[:, :3, :3] @ d_cam[..., None])[..., 0], dim=-1)
        return c2w[:, :3, 3], d, self.pixels[view, row, col]


def _box_cameras(c2w: torch.Tensor, box: SceneBox) -> torch.Tensor:
    out = c2w.clone().float()
    out[:, :3, 3] = box.to_box(out[:, :3, 3])
    return out


@register_signal("views")
class ViewsSignal(Signal):
    """Posed photos of one scene on axes ``(x, y, z)``; the model is a radiance field."""

    options_cls = ViewsOptions
    default_split = "x+y+z"

    def __init__(self, scene: Any, config: ViewsOptions | None = None, source: str = "<scene>") -> None:
        self.config = cfg = config or ViewsOptions()
        cfg.validate()
        self.scene, self.source = scene, source
        self.inputs, self.holdout = choose_views(scene.num_views, cfg.inputs, cfg.holdout)
        self.height, self.width = scene.size
        self.rig = Rig.from_cameras(scene.c2w[self.inputs])
        self.box = SceneBox(tuple(self.rig.centre.tolist()), cfg.box_scale * float(self.rig.radius.mean()))
        self.sampling = RaySampling(cfg.samples_front, cfg.samples_inner, cfg.samples_outer)
        self.sampling.check()
        n = cfg.resolution or 4 * max(self.height, self.width)
        self.axes, self.shape, self.out_features = ("x", "y", "z"), (n, n, n), 4
        pick = torch.tensor(self.inputs)
        self._train = _Views(scene.images[pick].permute(0, 2, 3, 1).contiguous(),
                             _box_cameras(scene.c2w[pick], self.box), scene.fxfycxcy[pick].float())
        self.prior = ViewPrior.load(cfg.prior)
        self.pseudo: _Views | None = None
        self.pseudo_c2w: torch.Tensor | None = None
        if self.prior is not None:
            self._render_pseudo_views()
        self.baseline: torch.nn.Module | None = None  # the same fit without the prior, for comparison
        self._log: list[tuple[int, float, torch.Tensor, torch.Tensor]] = []
        self._step, self._real = 0, 1

    # -- construction ------------------------------------------------------------------
    @classmethod
    def load(cls, source: Any = None, **options: Any) -> ViewsSignal:
        """Read ``source`` (scene JSON, transforms.json or ``procedural:<seed>``) with
        :class:`~coordfit.signals.options.ViewsOptions` fields as options."""
        config = cls.read_options(options)
        source = str(source) if source is not None else DEFAULT_SOURCE
        if not source.startswith("procedural:"):
            source = str(Path(source).resolve())
        return cls(read_views(source), config, source)

    def without_prior(self) -> ViewsSignal:
        """The same views and settings with no prior (the comparison fit)."""
        return ViewsSignal(self.scene, replace(self.config, prior="none"), self.source)

    def _render_pseudo_views(self) -> None:
        s, cfg = self.scene, self.config
        pick = torch.tensor(self.inputs)
        self.prior.condition(s.images[pick], s.c2w[pick], s.fxfycxcy[pick])
        g = torch.Generator().manual_seed(cfg.pseudo_seed)
        self.pseudo_c2w = pseudo_poses(self.rig, cfg.pseudo_views, g, cfg.pseudo_near, cfg.pseudo_widen)
        k = s.fxfycxcy[pick[:1]].expand(cfg.pseudo_views, 4)
        images = self.prior.render(self.pseudo_c2w, k)  # [P, 3, h, w] at the prior's size
        k_small = self.prior.scale_intrinsics(k.float(), self.height, self.width)
        self.pseudo = _Views(images.permute(0, 2, 3, 1).contiguous(), _box_cameras(self.pseudo_c2w, self.box), k_small)

    @property
    def device(self) -> torch.device:
        return self._train.pixels.device

    def to(self, device: torch.device | str) -> ViewsSignal:
        self._train = self._train.to(device)
        if self.pseudo is not None:
            self.pseudo = self.pseudo.to(device)
        return self

    # -- training ----------------------------------------------------------------------
    def prior_weight_at(self, step: int) -> float:
        cfg = self.config
        return cfg.prior_weight * min(1.0, step / cfg.prior_ramp) if cfg.prior_ramp > 0 else cfg.prior_weight

    def sample(self, branches, budget, generator, step=0):
        """Random input-view (and pseudo-view) rays, ``budget // samples per ray`` of them:
        ``((points [R, S, 3], delta [R, S]), target [R, 4])``; the target holds colour
        and each ray's loss weight (input rays sum to 1, pseudo rays to the ramped weight)."""
        dev, gdev = self.device, generator.device
        rays = max(2, budget // self.sampling.total)
        n_pseudo = min(rays - 1, round(rays * self.config.pseudo_share)) if self.pseudo is not None else 0
        n_real = rays - n_pseudo
        idx = torch.randint(self._train.count, (n_real,), generator=generator, device=gdev).to(dev)
        o, d, rgb = self._train.rays(idx)
        weights = [torch.full((n_real,), 1.0 / n_real, device=dev)]
        if n_pseudo:
            idx = torch.randint(self.pseudo.count, (n_pseudo,), generator=generator, device=gdev).to(dev)
            po, pd, prgb = self.pseudo.rays(idx)
            o, d, rgb = torch.cat([o, po]), torch.cat([d, pd]), torch.cat([rgb, prgb])
            weights.append(torch.full((n_pseudo,), self.prior_weight_at(step) / n_pseudo, device=dev))
        jitter = torch.rand((rays, self.sampling.total), generator=generator, device=gdev).to(dev)
        t_a, t_b = ray_segments(o, d, self.sampling)
        t, delta = sample_intervals(interval_edges(t_a, t_b, self.sampling), jitter)
        points = contract(o[:, None, :] + t[..., None] * d[:, None, :])
        self._step, self._real = step, n_real
        return (points, delta), torch.cat([rgb, torch.cat(weights)[:, None]], dim=1)

    def predict(self, model: torch.nn.Module, batch: Any) -> torch.Tensor:
        """Rendered colour ``[R, 3]``; with a distortion weight, each ray's distortion as a 4th column."""
        points, delta = batch
        if not self.config.distortion:
            return shade(model, points, delta)
        colour, weights = shade(model, points, delta, with_weights=True)
        return torch.cat([colour, distortion(weights)[:, None]], dim=1)

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """MSE per ray, weighted by the target's 4th column (+ the distortion term)."""
        err = (pred[:, :3] - target[:, :3]).pow(2).mean(-1)  # [R]
        n = self._real
        if len(pred) > n and self._step % _LOG_EVERY == 0:
            self._log.append((self._step, self.prior_weight_at(self._step), err[:n].detach().mean(),
                              err[n:].detach().mean()))
        loss = (err * target[:, 3]).sum()
        return loss + self.config.distortion * pred[:, 3].mean() if self.config.distortion else loss

    def quality(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """PSNR (dB, a 0-dim tensor) of this step's input-view rays."""
        n = self._real
        mse = (pred[:n, :3].detach().clamp(0, 1) - target[:n, :3]).pow(2).mean()
        return psnr_from_mse(mse)

    # -- results -----------------------------------------------------------------------
    def render(self, model: torch.nn.Module, c2w: torch.Tensor, fxfycxcy: torch.Tensor,
               height: int | None = None, width: int | None = None) -> torch.Tensor:
        """Render cameras (world c2w ``[V, 4, 4]``, intrinsics ``[V, 4]``) -> ``[V, 3, H, W]``."""
        h, w = height or self.height, width or self.width
        return torch.stack([render_camera(model, c, k, h, w, self.box, self.sampling) for c, k in zip(c2w, fxfycxcy)])

    def comparisons(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """Held-out renders ``[Vh, 3, H, W]`` of everything compared: ground truth, the
        nearest input view, the prior alone, the fit without the prior, the fit."""
        s, held = self.scene, torch.tensor(self.holdout, dtype=torch.long)
        out = {"truth": s.images[held]}
        centres_in, centres_h = s.c2w[self.inputs, :3, 3], s.c2w[held, :3, 3]
        out["nearest"] = s.images[torch.tensor(self.inputs)][torch.cdist(centres_h, centres_in).argmin(-1)]
        if self.prior is not None:
            small = self.prior.render(s.c2w[held], s.fxfycxcy[held])
            out["prior"] = torch.nn.functional.interpolate(small, size=(self.height, self.width), mode="bilinear",
                                                           align_corners=False).clamp(0, 1)
        if self.baseline is not None:
            out["fit_no_prior"] = self.render(self.baseline, s.c2w[held], s.fxfycxcy[held])
        out["fit"] = self.render(model, s.c2w[held], s.fxfycxcy[held])
        return out

    def score(self, model: torch.nn.Module, report: Report = quiet) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """Held-out PSNR/SSIM of the fit and of what it is compared with, input-view PSNR
        -> ``(metrics, the held-out renders of :meth:`comparisons`)``, each rendered once."""
        s = self.scene
        first = self.inputs[:4]
        fit_in = self.render(model, s.c2w[first], s.fxfycxcy[first])
        metrics: dict[str, Any] = {"input_psnr": round(float(psnr(fit_in, s.images[first]).mean()), 4)}
        renders: dict[str, torch.Tensor] = {}
        if self.holdout:
            renders = self.comparisons(model)
            report("render", 1, 1)
            truth = renders["truth"]
            scores = {name: {"psnr": psnr(img, truth), "ssim": ssim(img, truth)}
                      for name, img in renders.items() if name != "truth"}
            metrics["heldout"] = {name: {k: round(float(v.mean()), 4) for k, v in sc.items()} for name, sc in scores.items()}
            metrics["heldout_per_view"] = {name: [round(float(x), 4) for x in sc["psnr"]] for name, sc in scores.items()}
            metrics["psnr"], metrics["ssim"] = metrics["heldout"]["fit"]["psnr"], metrics["heldout"]["fit"]["ssim"]
        else:
            metrics["psnr"] = metrics["input_psnr"]
        metrics.update(inputs=self.inputs, holdout=self.holdout, prior=self.prior.source if self.prior else "none")
        report("metrics", 1, 1)
        return metrics, renders

    def finish(self, model: torch.nn.Module, run_dir: Path | None = None, report: Report = quiet,
               sample: int | None = None, ready: Ready | None = None) -> tuple[dict[str, Any], list[Path]]:
        """The metrics of :meth:`score`; with ``run_dir``: ``views.png`` (from the same renders),
        ``orbit.mp4``; with a prior ``pseudo_views.png`` and ``prior_log.csv``; with a
        comparison fit ``no_prior.safetensors``."""
        metrics, renders = self.score(model, report)
        if run_dir is None:
            return metrics, []
        return metrics, write_outputs_for(self, model, Path(run_dir), renders, report)

    def prior_log(self) -> str:
        """``prior_log.csv``: step, ramped weight, input-view and pseudo-view MSE of that step's rays."""
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["step", "prior_weight", "input_mse", "pseudo_mse"])
        for step, weight, real, pseudo in self._log:
            writer.writerow([step, f"{weight:.4g}", f"{float(real):.6g}", f"{float(pseudo):.6g}"])
        return buf.getvalue()

    def meta(self) -> dict[str, Any]:
        s = self.scene
        return {
            "kind": self.kind,
            "source": self.source,
            "options": asdict(self.config),
            "shape": list(self.shape),
            "channels": self.out_features,
            "image_size": [self.height, self.width],
            "inputs": self.inputs,
            "holdout": self.holdout,
            "c2w": s.c2w.tolist(),
            "fxfycxcy": s.fxfycxcy.tolist(),
            "box": self.box.to_dict(),
            "rig": self.rig.to_dict(),
            "sampling": self.sampling.to_dict(),
        }

    @staticmethod
    def default_render_name(meta: dict[str, Any], **options: Any) -> str:
        from .render import render_name

        return render_name(meta, **options)

    @staticmethod
    def render_run(model: torch.nn.Module, meta: dict[str, Any], out: Path, **options: Any) -> Path:
        """``orbit=True`` (``frames``, ``fps``) writes an MP4 circling the scene; ``pose`` (a view
        number or a JSON camera file) a PNG; both at ``size=(W, H)`` or ``scale`` x the views' size."""
        from .render import render_from_meta

        return render_from_meta(model, meta, out, **options)
