"""What every signal provides to the trainer, and the dense-grid signal most kinds share."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch

from ..geometry.grid import GridInfo, check_generator, gather, sample_branches
from ..core.metrics import psnr_from_mse
from ..core.phases import Ready, Report, quiet
from ..core.registry import Registry
from .options import SignalOptions

__all__ = ["Signal", "GridSignal", "SIGNALS", "register_signal", "signal_class", "signal_kinds"]

SIGNALS: Registry[type[Signal]] = Registry("signal kind")


def register_signal(kind: str):
    """Class decorator: registers a :class:`Signal` subclass as ``kind``."""

    def deco(cls: type[Signal]) -> type[Signal]:
        cls.kind = kind
        return SIGNALS.add(kind, cls)

    return deco


def signal_class(kind: str) -> type[Signal]:
    return SIGNALS.get(kind)


def signal_kinds() -> list[str]:
    return SIGNALS.names()


class Signal(ABC):
    """A fitting target on a coordinate grid with named axes.

    The trainer only calls :meth:`sample`, :meth:`predict`, :meth:`loss`,
    :meth:`quality` and :meth:`to`; the API calls :meth:`finish` at the end (the model
    evaluated once for the metrics and the outputs) and :meth:`meta` to record how to
    reload the signal (for ``--resume``).

    ``options_cls`` is the kind's typed options (:mod:`coordfit.signals.options`):
    :meth:`load` reads its options through :meth:`read_options`.

    ``quality_name`` names the one quality figure of the kind end to end: the batch
    figure :meth:`quality` returns, the ``log.csv`` column, ``--target``, the progress
    bar, and the report's time to target and plot names; :meth:`finish` reports the
    same figure on the full signal under the same name. A subclass takes it and
    ``quality_unit`` from its ``options_cls`` (where the CLI reads them without torch).
    """

    kind: ClassVar[str] = "?"
    options_cls: ClassVar[type[SignalOptions]] = SignalOptions
    default_split: ClassVar[str] = ""
    quality_name: ClassVar[Literal["psnr", "iou"]] = "psnr"  # what `quality` measures
    quality_unit: ClassVar[Literal["dB", ""]] = "dB"  # its unit, for help texts and the progress bar
    summary_metrics: ClassVar[tuple[str, ...]] = ("psnr", "ssim")  # final metrics summaries show, quality first
    axes: tuple[str, ...]
    shape: tuple[int, ...]
    out_features: int
    load_seconds: float | None = None  # seconds `load_signal` took to read (and label) it

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in ("quality_name", "quality_unit"):
            if name not in cls.__dict__:
                setattr(cls, name, getattr(cls.options_cls, name))

    @classmethod
    def read_options(cls, options: Mapping[str, Any]) -> SignalOptions:
        """``options`` as the kind's typed config: unknown keys refused, values read by
        type and validated, in one :class:`~coordfit.core.errors.CoordfitError` line."""
        return cls.options_cls.from_dict(options, owner=f"{cls.kind} signal")

    @property
    def info(self) -> GridInfo:
        return GridInfo(self.axes, self.shape, self.out_features, self.default_split)

    @abstractmethod
    def sample(
        self, branches: Sequence[Sequence[int]], budget: int, generator: torch.Generator, step: int = 0
    ) -> tuple[Any, torch.Tensor]:
        """A training batch and its target: for grid signals per-branch coordinates
        ``[n_b, d_b]`` and ``[n_1..n_k, C]``. ``step`` is the optimiser step about to run
        (signals whose batches change over training, such as a loss ramp, read it)."""

    def predict(self, model: torch.nn.Module, batch: Any) -> torch.Tensor:
        """The model's output for ``batch`` (from :meth:`sample`), compared by :meth:`loss`.

        Grid signals evaluate the sub-grid through the split path; a signal whose
        prediction is not a grid evaluation (volume rendering along rays) overrides this.
        """
        return model.forward_grid(batch)

    @abstractmethod
    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def quality(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The batch's ``quality_name`` figure as a 0-dim tensor on the batch's device.

        Called only at the trainer's readings; it must not copy to the host (the
        trainer reads it together with the loss, in one sync)."""

    @abstractmethod
    def finish(self, model: torch.nn.Module, run_dir: Path | None = None, report: Report = quiet,
               sample: int | None = None, ready: Ready | None = None) -> tuple[dict[str, Any], list[Path]]:
        """Evaluate ``model`` once on the full signal: the final metrics (``psnr``,
        ``ssim``... or ``iou``...) and, with a ``run_dir``, the outputs a person opens
        (reconstruction.png, .mp4, mesh.ply) written there -> ``(metrics, paths)``.

        ``sample``: a signal of more points than this may compute its metrics on an
        evenly spread sample of about that many points, and says so in
        ``metrics["metrics_on"]``; None: on all of it. Kinds whose evaluation is bounded
        by their own options (shapes: ``eval_points``; views: the held-out views) ignore it.
        ``ready(metrics)``, where given, is called once the metrics are known and before
        outputs that may take long are written (a kind that scores a sample first), so the
        caller can keep them should the outputs be cut short.

        Progress goes only through ``report(phase, done, total)`` after each unit of work
        (phases ``render``, ``mesh``, ``metrics``, ``export``...; see
        :mod:`coordfit.core.phases`); a signal draws no terminal UI of its own. Metrics are
        JSON-able; a result that is there but empty says so in ``metrics["warnings"]``.
        """

    def evaluate(self, model: torch.nn.Module) -> dict[str, Any]:
        """The final metrics alone (:meth:`finish` without a run folder)."""
        return self.finish(model)[0]

    @abstractmethod
    def meta(self) -> dict[str, Any]:
        """JSON-able description: ``kind``, ``source``, ``options`` and output format facts."""

    @abstractmethod
    def to(self, device: torch.device | str) -> Signal: ...

    @classmethod
    @abstractmethod
    def load(cls, source: Any = None, **options: Any) -> Signal:
        """Read a signal of this kind from ``source`` (None: the kind's built-in default)."""

    @staticmethod
    @abstractmethod
    def default_render_name(meta: dict[str, Any], **options: Any) -> str:
        """File name for ``coordfit render`` output inside the run folder."""

    @staticmethod
    @abstractmethod
    def render_run(model: torch.nn.Module, meta: dict[str, Any], out: Path, **options: Any) -> Path:
        """Render a fitted model (at any resolution the options ask for) to ``out``."""


class GridSignal(Signal):
    """A signal stored densely as ``values [*shape, C]`` on [-1, 1]; MSE loss, PSNR quality.

    Batches are drawn on ``values.device`` with the generator passed in, in O(batch)
    (:func:`coordfit.geometry.grid.sample_branches`); when the whole grid fits the budget it is
    built once and reused every step.
    """

    values: torch.Tensor  # [*shape, C], contiguous

    @property
    def device(self) -> torch.device:
        return self.values.device

    def to(self, device: torch.device | str) -> GridSignal:
        self.values = self.values.to(device).contiguous()
        self._full_batch = None
        return self

    def sample(self, branches, budget, generator, step=0):
        device = check_generator(generator, self.values.device)
        full = math.prod(self.shape) <= budget
        key = (tuple(map(tuple, branches)), device)
        cached = getattr(self, "_full_batch", None)
        if full and cached is not None and cached[0] == key:
            return cached[1]  # the whole grid every step: build it once
        coords, index = sample_branches(branches, self.shape, budget, generator, device=device)
        batch = (coords, gather(self.values, branches, index))
        if full:
            self._full_batch = (key, batch)
        return batch

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.mse_loss(pred, target)

    def quality(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Batch PSNR in dB, a 0-dim tensor on the batch's device (read without a host sync)."""
        # values live on [-1, 1]: a range of 2; the same as PSNR on [0, 1] with range 1.
        mse = torch.mean((pred.detach().float().clamp(-1, 1) - target.float()) ** 2)
        return psnr_from_mse(mse, data_range=2.0)
