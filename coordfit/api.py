"""The Python API: ``fit`` a signal, ``resume`` a run, ``load`` a run back."""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ._version import __version__
from .core.checkpoint import load_train_state, load_weights, open_checkpoint
from .core.checks import Outputs, check_outputs
from .core.defaults import METRICS_SAMPLE, RESUME_SETTINGS
from .core.device import device_settings
from .core.errors import CoordfitError
from .geometry.grid import GridInfo
from .core.io import new_run_dir, read_json, source_stem, write_json
from .models import create_model, create_saved_model, model_entry  # noqa: F401  (tests patch api.create_model)
from .models.base import CoordNet
from .core.phases import Phases
from .engine.presets import ResolvedPreset, resolve_preset
from .runs.spec import RunSpec, check_signal, discard_if_unstarted, read_config_file, read_run_config, source_sha256
from .signals import Signal, load_signal, signal_class, signal_from_meta
from .engine.train import TrainConfig, Trainer

__all__ = ["FitResult", "Run", "fit", "resume", "load", "render", "RESUME_SETTINGS"]


@dataclass
class FitResult:
    """What :func:`fit` returns: the trained model, its metrics and the run folder."""

    model: CoordNet
    metrics: dict[str, Any]
    run_dir: Path | None
    signal: Signal
    outputs: list[Path] = field(default_factory=list)


def _prepare_model(model: str, signal: Signal, seed: int, options: dict[str, Any]) -> CoordNet:
    entry = model_entry(model)
    if "split" in options and not entry.splittable and options["split"] not in (None, ""):
        raise CoordfitError(f"model '{model}' does not split its input; --split applies to split models (e.g. coordx)")
    options = {k: v for k, v in options.items() if not (k == "split" and not entry.splittable)}
    config = entry.make_config(**options)  # validated before anything is created
    torch.manual_seed(seed)
    return entry.build(config, signal.info)


def _run_config(name: str, net: CoordNet, signal: Signal, train: TrainConfig) -> dict[str, Any]:
    model_config = dataclasses.asdict(net.config)
    if "split" in model_config:
        model_config["split"] = net.split  # the signal's default, resolved
    return {
        "coordfit_version": __version__,
        "model": name,
        "model_config": model_config,
        "split": net.split,
        "grid": net.info.to_dict(),
        "signal": signal.meta(),
        "source_sha256": source_sha256(signal.meta()),  # a resume warns when the source changed
        "train": dataclasses.asdict(train),
    }


def _train(trainer: Trainer, progress: bool | None) -> Phases:
    """Run the trainer; -> the phases so far, timed (``load`` as the signal measured it, ``train``)."""
    phases = Phases(progress)
    if trainer.signal.load_seconds is not None:
        phases.seconds["load"] = round(trainer.signal.load_seconds, 3)
    with phases.phase("train"):
        trainer.run(progress=progress)
    return phases


def _finish(trainer: Trainer, run_dir: Path | None, name: str, phases: Phases, outputs: Outputs = "all",
            exact_metrics: bool = False) -> FitResult:
    """Evaluate the trained model once (metrics and outputs: :meth:`Signal.finish`) under the
    fit's device settings (threads, TF32), and write metrics.json with every phase's seconds.

    ``outputs``: ``all`` (metrics and the reconstruction files), ``metrics`` (no files but
    metrics.json) or ``none`` (no evaluation: metrics.json holds the training's figures).
    Metrics cover at most :data:`~coordfit.core.defaults.METRICS_SAMPLE` points of a larger
    signal (an evenly spread sample, stated in the metrics) unless ``exact_metrics``; such
    metrics are written to metrics.json (``"outputs_done": false``) before the long render
    of the outputs, so a Ctrl-C there keeps them."""
    c, model, signal = trainer.config, trainer.model, trainer.signal

    def record(evaluated: dict[str, Any], done: bool = False) -> dict[str, Any]:
        metrics = {**evaluated, **trainer.summary(), "params": model.num_params(), "model": name,
                   "split": model.split, "outputs": outputs, "outputs_done": done, "phase_seconds": phases.seconds}
        if run_dir is not None:
            write_json(run_dir / "metrics.json", metrics)
        return metrics

    evaluated: dict[str, Any] = {}
    written: list[Path] = []
    if outputs != "none":
        with device_settings(trainer.device, c.precision, c.threads), \
                phases.finishing(after=phases.seconds.get("train"), run_dir=run_dir) as report:
            evaluated, written = signal.finish(model, run_dir if outputs == "all" else None, report,
                                               sample=None if exact_metrics else METRICS_SAMPLE, ready=record)
    metrics = record(evaluated, done=True)
    if run_dir is not None:
        written.append(run_dir / "metrics.json")
    return FitResult(model, metrics, run_dir, signal, written)


def fit(
    signal: Signal | str | Path | None = None,
    model: str | None = None,
    *,
    kind: str | None = None,
    preset: str | None = None,
    train: TrainConfig | Mapping[str, Any] | None = None,
    out: str | Path | None = None,
    name: str | None = None,
    config: str | Path | RunSpec | None = None,
    save: bool = True,
    runs_root: str | Path = "runs",
    progress: bool | None = None,
    signal_options: Mapping[str, Any] | None = None,
    outputs: Outputs = "all",
    exact_metrics: bool = False,
    **options: Any,
) -> FitResult:
    """Fit ``model`` to ``signal`` and (with ``save``) write a run folder.

    ``signal`` is a :class:`Signal`, a path, or None for the preset's signal or the kind's
    built-in default. ``options`` are the model's config fields (``width=128``,
    ``split="x+y"``...) and the signal's (``alpha="drop"``, ``prior="default"`` for
    views): each goes to the model when its config has it, else to the signal when the
    kind's options have it (then only when ``fit`` reads the signal); ``signal_options``
    names signal options alone. ``preset`` (see ``coordfit presets``) supplies the model,
    its options and training settings under the explicit ones
    (:func:`~coordfit.engine.presets.resolve_preset`); ``train`` is a :class:`TrainConfig`
    or a mapping of its fields. Without a preset the model is ``coordx`` and the kind
    ``image``. ``config`` (a JSON/YAML file, a run folder or a
    :class:`~coordfit.runs.spec.RunSpec`) starts from a saved run's choices, under the
    explicit ones (a mapping ``train`` overrides the fields it names; a
    :class:`TrainConfig` those that differ from its defaults). The run folder is ``out``
    (must be empty or new) or ``runs/<kind>/<model>/<name>/``, where ``name`` defaults to
    ``<input>-<YYYYmmdd-HHMMSS>``; a taken name gets ``-2``, ``-3``...
    :func:`coordfit.fit_views` also fits a views scene without its prior and compares.
    ``outputs`` (``all``, ``metrics``, ``none``) and ``exact_metrics``: what is evaluated
    and written after training (:func:`_finish`).

    >>> result = coordfit.fit("photo.png", "coordx", train=TrainConfig(steps=500))  # doctest: +SKIP
    >>> result = coordfit.fit(preset="coordx-image-paper", train={"steps": 500})  # doctest: +SKIP
    >>> result = coordfit.fit(config="runs/image/coordx/photo-20250101-120000", train={"lr": 3e-4})  # doctest: +SKIP
    >>> result.metrics["psnr"]  # doctest: +SKIP
    """
    check_outputs(outputs)
    spec: RunSpec | None = None
    if config is not None:
        spec = _read_spec(config)
        explicit_train = train.changed() if isinstance(train, TrainConfig) else dict(train or {})
        spec = spec.overridden(kind=signal.kind if isinstance(signal, Signal) else kind, model=model, preset=preset,
                               source=None if signal is None or isinstance(signal, Signal) else str(signal),
                               model_options=options, train=explicit_train, signal_options=signal_options)
        kind, model, preset, train = spec.kind, spec.model, spec.preset, spec.train
        options, signal_options = spec.model_options, spec.signal_options
        signal = signal if isinstance(signal, Signal) else spec.source
    choice = resolve_preset(preset, kind=signal.kind if isinstance(signal, Signal) else kind, model=model,
                            model_options=options, train=train)
    model_options, routed = _route_options(choice)
    signal_options = {**(signal_options or {}), **routed}
    if not isinstance(signal, Signal):
        signal = load_signal(choice.kind, signal if signal is not None else choice.source, **signal_options)
        if spec is not None:
            spec.check_source(signal)
    elif signal_options:
        named = ", ".join(f"{k}=" for k in signal_options)
        raise CoordfitError(f"signal options ({named}) apply when fit() reads the signal; give them to the "
                            "signal's load() instead")
    net = _prepare_model(choice.model, signal, choice.train.seed, model_options)
    stem = source_stem(signal.meta().get("source"))
    run_dir = new_run_dir(signal.kind, choice.model, out, runs_root, stem=stem, name=name) if save else None
    with discard_if_unstarted(run_dir):  # a start that fails leaves --out reusable
        trainer = Trainer(net, signal, choice.train, run_dir)
        if run_dir is not None:  # the settings resolved for the device (batch, precision, lr...)
            write_json(run_dir / "config.json", _run_config(choice.model, net, signal, trainer.config))
        phases = _train(trainer, progress)
    return _finish(trainer, run_dir, choice.model, phases, outputs, exact_metrics)


def _read_spec(config: str | Path | RunSpec) -> RunSpec:
    """A config file (or run folder) read, its training settings checked with the file named."""
    spec = config if isinstance(config, RunSpec) else read_config_file(config)
    try:
        TrainConfig.from_dict(spec.train)
    except CoordfitError as exc:
        raise CoordfitError(f"{spec.path or 'the config'}: {exc}") from None
    return spec


def _route_options(choice: ResolvedPreset) -> tuple[dict[str, Any], dict[str, Any]]:
    """``choice.model_options`` split into the model's (its config's fields, and whatever
    neither takes: the model's config refuses it) and the signal's (the kind's options)."""
    model_fields = {f.name for f in dataclasses.fields(model_entry(choice.model).config_cls)}
    signal_fields = {f.name for f in dataclasses.fields(signal_class(choice.kind).options_cls)}
    to_signal = {k for k in choice.model_options if k not in model_fields and k in signal_fields}
    return ({k: v for k, v in choice.model_options.items() if k not in to_signal},
            {k: v for k, v in choice.model_options.items() if k in to_signal})


def resume(
    run_dir: str | Path,
    *,
    steps: int | None = None,
    time_budget: float | None = None,
    target: float | None = None,
    model: str | None = None,
    logger: str | None = None,
    progress: bool | None = None,
    outputs: Outputs = "all",
    exact_metrics: bool = False,
    **settings: Any,
) -> FitResult:
    """Continue an interrupted or finished run in place.

    With neither ``steps`` nor ``time_budget`` the run continues to its own limits: the
    steps and training seconds it was started with (or last resumed to), so an
    interrupted run trains what it had left; a finished run is refused. ``steps`` is a
    new total of steps; ``time_budget`` is seconds more, counted from the resume. Passing
    either replaces both saved limits (``steps`` alone: no time budget; ``time_budget``
    alone: no step limit). ``config.json`` records the run's limits as totals. Unless
    ``progress`` is False, the first line (stderr) says which limits apply.
    ``logger`` (``none``, ``tensorboard``) replaces the saved one from this session on.
    ``outputs`` and ``exact_metrics`` as in :func:`fit`. ``settings`` may change where and
    how the run goes on (:data:`RESUME_SETTINGS` that :class:`TrainConfig` has: device,
    threads, compile, checkpoint_every), not what it computes: the model, the
    signal, the learning rate, the batches, the seed and the precision stay the run's
    (settings resolved for the first device, such as the batch, stay too). Renders of
    the older checkpoint in the folder (``render_*``, ``orbit_*``, ``pose_*``,
    ``mesh_<N>.ply``) are renamed ``<name>.step<N><ext>``: they no longer show the model.

    Everything is checked before anything in the folder is written: a refused resume
    leaves the run as it was.
    """
    check_outputs(outputs)
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    cfg = read_run_config(run_dir)
    state = _saved_state(run_dir)
    if model is not None and model != cfg["model"]:
        raise CoordfitError(f"{run_dir} was fitted with model '{cfg['model']}', not '{model}'")
    train = _resumed_settings(cfg, run_dir, dict(settings, target=target, logger=logger))
    plan = _resume_limits(train, state, steps, time_budget, run_dir)
    try:
        signal = signal_from_meta(cfg["signal"])
    except TypeError as exc:
        raise CoordfitError(f"{cfg_path}: 'signal' does not fit this coordfit ({exc})") from None
    check_signal(cfg, signal, run_dir)
    net = create_saved_model(cfg["model"], signal.info, cfg["model_config"])
    trainer = Trainer(net, signal, train, run_dir)
    trainer.load_checkpoint()
    write_json(cfg_path, {**cfg, "train": {**dataclasses.asdict(trainer.config), "time_budget": trainer.limits.seconds}})
    done = state["step"]
    renamed = _set_aside_renders(run_dir, done)
    if progress is not False:
        for line in (plan, *(f"{old} shows step {done}: kept as {new}" for old, new in renamed)):
            print(line, file=sys.stderr, flush=True)
    return _finish(trainer, run_dir, cfg["model"], _train(trainer, progress), outputs, exact_metrics)


def _resume_limits(train: TrainConfig, state: dict[str, Any], steps: int | None, time_budget: float | None,
                   run_dir: Path) -> str:
    """Set ``train``'s limits for a resume from ``state`` (see :func:`resume`) and validate
    it -> the line that says which limits apply. ``train.time_budget`` becomes this
    session's seconds (the Trainer adds the seconds already trained: :attr:`Trainer.limits`)."""
    done, trained = state["step"], float(state.get("seconds", 0.0))
    head = f"resuming {run_dir} at step {done:,} ({trained:.1f} s trained)"
    if steps is not None or time_budget is not None:
        train.steps, train.time_budget = steps, time_budget
        train.validate()
        if steps is not None and done >= steps:
            raise CoordfitError(f"{run_dir} already reached {done} steps; pass --steps larger than that")
        said = [f"to step {steps:,}" if steps is not None else "no step limit",
                f"{time_budget:g} s more (to {trained + time_budget:.1f} s in all)" if time_budget is not None
                else "no time limit"]
        return f"{head}: {', '.join(said)}, as given"
    train.validate()
    if state.get("finished"):
        raise CoordfitError(f"{run_dir} finished ({state.get('stopped_by') or 'steps'}) at step {done}; "
                            "pass --steps N (a new total) or --time-budget S (seconds more)")
    total = train.time_budget
    if total is not None:
        train.time_budget = total - trained
    if (train.steps is not None and done >= train.steps) or (train.time_budget is not None and train.time_budget <= 0):
        raise CoordfitError(f"{run_dir} has reached its own limits (step {done}, {trained:.1f} s); "
                            "pass --steps N (a new total) or --time-budget S (seconds more)")
    left = [f"{train.steps - done:,} steps" if train.steps is not None else "",
            f"{train.time_budget:.1f} s" if train.time_budget is not None else ""]
    own = " or ".join(x for x in (f"{train.steps:,} steps" if train.steps is not None else "",
                                   f"{total:g} s" if total is not None else "") if x)
    return (f"{head}: no new limit, so it continues to the run's own, {own or 'none'}, whichever comes first "
            f"({' or '.join(x for x in left if x)} left; --steps N or --time-budget S sets new ones)")


# The names renders get in a run folder (each kind's Signal.default_render_name).
_RENDER = re.compile(r"^(render_.+|orbit_.+|pose_.+|mesh_\d+)(\.png|\.mp4|\.ply)$")


def _set_aside_renders(run_dir: Path, step: int) -> list[tuple[str, str]]:
    """Rename the renders of the checkpoint at ``step`` to ``<name>.step<step><ext>`` -> (old, new) names."""
    renamed = []
    for path in sorted(run_dir.iterdir()):
        m = _RENDER.match(path.name)
        if m and path.is_file():
            new = path.with_name(f"{m.group(1)}.step{step}{m.group(2)}")
            if not new.exists():
                path.rename(new)
                renamed.append((path.name, new.name))
    return renamed


def _saved_state(run_dir: Path) -> dict[str, Any]:
    """The training state of the run's checkpoint (verified), refused in one line when there is none."""
    ckpt = open_checkpoint(run_dir)
    if not ckpt.has("train_state.json"):
        raise CoordfitError(f"{run_dir} has no checkpoint to resume from (no train_state.json)")
    return load_train_state(ckpt.path("train_state.json"))


def _resumed_settings(cfg: dict[str, Any], run_dir: Path, asked: dict[str, Any]) -> TrainConfig:
    """The run's training settings with what a resume may change applied besides its limits
    (``asked``: the target, the logger and :data:`RESUME_SETTINGS`; None: unchanged)."""
    try:
        train = TrainConfig.from_dict(cfg["train"])
    except CoordfitError as exc:
        raise CoordfitError(f"{run_dir / 'config.json'}: {exc}") from None
    allowed = [k for k in (*RESUME_SETTINGS, "target", "logger") if hasattr(train, k)]
    unknown = sorted(set(asked) - set(allowed))
    if unknown:
        raise CoordfitError(f"a resume cannot change {', '.join(unknown)} (only steps, time_budget, "
                            f"{', '.join(allowed)})")
    return dataclasses.replace(train, **{k: v for k, v in asked.items() if v is not None})


@dataclass
class Run:
    """A fitted run loaded back from its folder (see :func:`load`)."""

    run_dir: Path
    config: dict[str, Any]
    model: CoordNet
    metrics: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.config["signal"]["kind"]

    def render(self, out: str | Path | None = None, **options: Any) -> Path:
        """Render at another resolution (``scale=``/``size=`` for images...)."""
        return render(self, out, **options)


def load(run_dir: str | Path, device: str = "cpu") -> Run:
    """Load a run folder: its config, metrics, and the model with its fitted weights."""
    from .core.device import resolve_device

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CoordfitError(f"{run_dir} does not exist or is not a folder")
    cfg = read_run_config(run_dir)
    try:
        info = GridInfo.from_dict(cfg["grid"])
    except (KeyError, TypeError, ValueError):
        raise CoordfitError(f"{run_dir / 'config.json'} is not a coordfit run config") from None
    name = cfg["model"]
    net = create_saved_model(name, info, cfg["model_config"])
    load_weights(open_checkpoint(run_dir).path("model.safetensors"), net, name)
    net.to(resolve_device(device)).eval()
    metrics_path = run_dir / "metrics.json"
    metrics = read_json(metrics_path, expect=dict) if metrics_path.is_file() else {}
    return Run(run_dir, cfg, net, metrics)


def render(run: Run | str | Path, out: str | Path | None = None, *, progress: bool | None = None,
           **options: Any) -> Path:
    """Render a fitted run to a file; options depend on the signal kind.

    Images take ``scale`` or ``size=(W, H)`` and write a PNG (default
    ``<run>/render_<W>x<H>.png``); videos take ``scale``, ``size=(W, H[, T])``,
    ``frames`` and ``fps`` and write an MP4; shapes take ``resolution`` and write a PLY
    mesh. An existing file is never overwritten. ``progress`` as in :func:`fit`.
    """
    if not isinstance(run, Run):
        run = load(run)
    meta = run.config["signal"]
    cls = signal_class(meta["kind"])
    for key in ("scale", "fps", "frames", "resolution"):
        value = options.get(key)
        if value is not None and not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            raise CoordfitError(f"--{key} must be a positive number, got {value}")
    name = cls.default_render_name(meta, **options)  # sizes and options checked before any work
    out = run.run_dir / name if out is None else _render_target(Path(out), name)
    if out.exists():
        raise CoordfitError(f"{out} exists; choose another --out (coordfit never overwrites results)")
    with Phases(progress).finishing() as report:
        return cls.render_run(run.model, meta, out, report=report, **options)


def _render_target(out: Path, name: str) -> Path:
    """``out`` when a render named like ``name`` can be written there: a file name with the
    same extension whose first existing folder up the path is a folder."""
    if out.is_dir():
        raise CoordfitError(f"--out {out} is a folder; name the file, e.g. --out {out / name}")
    suffix = Path(name).suffix
    if out.suffix.lower() != suffix:
        raise CoordfitError(f"--out {out}: this run renders a {suffix} file; name it *{suffix}")
    parent = next(p for p in out.absolute().parents if p.exists())
    if not parent.is_dir():
        raise CoordfitError(f"--out {out}: {parent} is a file, not a folder")
    return out
