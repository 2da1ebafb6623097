"""Fit a scene to a few posed views with a learned prior, and compare with the same fit without it.

``coordfit.fit(scene, model, kind="views", prior=...)`` is the fit itself; :func:`fit_views`
adds what ``coordfit views`` shows by default: the same fit (same model, seed and steps)
without the prior, rendered beside it in ``views.png`` and scored in ``metrics.json``
(``heldout.fit_no_prior``), its weights in ``no_prior.safetensors``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from .api import FitResult, fit, resume
from .core.errors import CoordfitError
from .core.io import read_json, write_json
from .engine.presets import resolve_preset
from .signals.views.signal import DEFAULT_PRESET, ViewsSignal
from .engine.train import TrainConfig

__all__ = ["fit_views", "resume_views", "compare_run", "add_comparison"]


def fit_views(
    scene: ViewsSignal | str | Path | None = None,
    model: str | None = None,
    *,
    preset: str | None = None,
    prior: str = "default",
    compare: bool = True,
    train: TrainConfig | Mapping[str, Any] | None = None,
    out: str | Path | None = None,
    save: bool = True,
    progress: bool | None = None,
    signal_options: dict[str, Any] | None = None,
    **model_options: Any,
) -> FitResult:
    """Fit ``model`` to ``scene`` with ``prior``; with ``compare`` (and a prior) also without it.

    ``signal_options`` are :class:`coordfit.signals.options.ViewsOptions` fields
    (``inputs``, ``holdout``, ``prior_weight``...); ``model_options`` go to the model;
    ``preset`` (default ``hashgrid-views`` when no model is named) fills what is not given.
    """
    if model is None and preset is None:
        preset = DEFAULT_PRESET
    choice = resolve_preset(preset, kind="views", model=model, model_options=model_options, train=train)
    signal = scene if isinstance(scene, ViewsSignal) else ViewsSignal.load(scene, **{**(signal_options or {}), "prior": prior})
    result = fit(signal, choice.model, train=choice.train, out=out, save=save, progress=progress, **choice.model_options)
    return add_comparison(result, choice.train, progress, **choice.model_options) if compare else result


def resume_views(run_dir: str | Path, *, compare: bool = True, progress: bool | None = None, **limits: Any) -> FitResult:
    """Continue a views run (``steps=``, ``time_budget=``...), then redo the comparison fit."""
    result = resume(run_dir, progress=progress, **limits)
    return compare_run(result, progress) if compare else result


def compare_run(result: FitResult, progress: bool | None = None) -> FitResult:
    """:func:`add_comparison` with the training settings and model options of ``result``'s
    run folder (as ``config.json`` recorded them): what ``coordfit views`` runs after a fit or a resume."""
    if result.run_dir is None:
        raise CoordfitError("compare_run needs a saved run; use add_comparison(result, train, **model_options)")
    cfg = read_json(result.run_dir / "config.json")
    return add_comparison(result, TrainConfig(**cfg["train"]), progress, **cfg["model_config"])


def add_comparison(result: FitResult, train: TrainConfig, progress: bool | None = None, **model_options: Any) -> FitResult:
    """Fit ``result``'s views again without the prior (nothing to do when it had none) and
    rewrite its ``views.png`` and ``metrics.json`` with the comparison."""
    signal = result.signal
    if not isinstance(signal, ViewsSignal) or signal.prior is None:
        return result
    name = result.model.registry_name
    plain = fit(signal.without_prior(), name, train=replace(train), save=False, progress=progress, **model_options)
    signal.baseline = plain.model
    metrics, renders = signal.score(result.model)
    result.metrics.update(metrics)
    if result.run_dir is not None:
        from .signals.views.render import write_comparison

        written = write_comparison(signal, result.model, result.run_dir, renders)
        write_json(result.run_dir / "metrics.json", result.metrics)
        result.outputs.extend(p for p in written if p not in result.outputs)
    return result
