"""The fitting commands (image, video, shape, views), declared once.

Every fitting command takes the same flags (:func:`shared_flags`): the model's, one per
:class:`~coordfit.engine.config.TrainConfig` field, the run folder's; and the flags of its
signal kind, one per named field of the kind's typed options
(:mod:`coordfit.signals.options`). Flags are made by :func:`cli._flags.config_flags`
from the fields (their comments are the help), and every default a help states is read
from what the command will really use: the kind's default preset (``views``:
``hashgrid-views``) resolved for each device. A command module is its docstring, its PATH
help and which signal options it shows as flags; every other signal option is reachable
with ``-o KEY=VALUE`` (listed under the options), as every model option is. A command with
more to do (views: the comparison fit) adds its own flags and a ``finish`` step.

Nothing here imports torch: the library is imported when a command runs.
"""

from __future__ import annotations

import dataclasses
import inspect
import shlex
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from coordfit.core.checks import check_outputs, check_run_folder, check_source, parse_shard
from coordfit.core.defaults import DEFAULT_STEPS, METRICS_SAMPLE, RESUME_SETTINGS
from coordfit.core.errors import CoordfitError, TrainingInterrupted
from coordfit.core.registry import field_docs
from coordfit.engine.config import RESUME_LIMITS, TrainConfig
from coordfit.signals.options import SignalOptions

from ._common import console, err_console, parse_options
from ._flags import (PROGRESS, RESUME, check_resume_flags, config_flags, device_values, format_default, given,
                     make_command, option, per_device)
from ._flags import option as _opt  # noqa: F401  (the name command modules declare their extras with)

if typing.TYPE_CHECKING:
    import coordfit
    from coordfit.engine.presets import ResolvedPreset

Device = option("--device", help="auto (CUDA, then MPS, then the CPU), cpu, cuda or mps (default: auto).")
_MODEL_FLAGS = ("split", "width", "layers", "rank", "backend")
_TRAIN_FLAGS = tuple(f.name for f in dataclasses.fields(TrainConfig))
_FINISH_FLAGS = ("outputs", "exact_metrics")  # how the run is evaluated after training (coordfit.fit's)
# What --resume may change (coordfit.resume): how long and where it trains, how it reports.
_RESUME_FLAGS = (*RESUME_LIMITS, *(s for s in RESUME_SETTINGS if s in _TRAIN_FLAGS), "logger", "progress",
                 *_FINISH_FLAGS)
# The budgets of the "go further" commands (the tests shorten them to run every printed command).
HINT_MORE_SECONDS = 120.0
HINT_OTHER_SECONDS = 60.0
OUTPUTS = option("--outputs", help="What is evaluated and written after training: all (metrics and the "
                 "reconstruction), metrics (metrics.json only) or none (the model only; `coordfit render` later) "
                 "(default: all).")
EXACT_METRICS = option("--exact-metrics", tp=Optional[bool], help="Metrics of a large signal on "
                       f"all of it, not on an evenly spread sample of about {METRICS_SAMPLE:,} points (metrics.json "
                       "says which) (default: sampled).")
SHARD = option("--shard", help="Several inputs: fit slice I of N (1-based, e.g. 3/8: inputs 3, 11, 19...), so N "
               "jobs share a folder of inputs; give each the same --out.")


def command_defaults(kind: str, options_cls: type[SignalOptions]) -> ResolvedPreset:
    """What a fit of ``kind`` given no flags runs: its default preset (or none) resolved."""
    from coordfit.engine.presets import resolve_preset

    return resolve_preset(options_cls.default_preset, kind=kind)


def train_defaults(train: TrainConfig) -> dict[str, Any]:
    """The default of every training flag as a help states it, from ``train`` resolved on each device."""
    shown: dict[str, Any] = {f.name: getattr(train, f.name) for f in dataclasses.fields(TrainConfig)}
    values = lambda name: device_values(train.resolved, name)  # noqa: E731
    if train.steps is None and train.time_budget is None:
        budgets = per_device({d: f"{v:g} s" for d, v in values("time_budget").items()})
        shown["steps"] = f"{DEFAULT_STEPS:,} steps or {budgets}, whichever comes first"
        shown["time_budget"] = "see --steps"
    for name in ("grid_batch", "batch_points", "threads"):
        shown[name] = per_device(values(name))
    if train.precision == "auto":
        shown["precision"] = f"auto, which is {per_device(values('precision'))}"
    return shown


def shared_flags(kind: str, options_cls: type[SignalOptions]) -> dict[str, Any]:
    """The flags every fitting command takes (name -> annotation), defaults as ``kind`` resolves them."""
    choice = command_defaults(kind, options_cls)
    preset = options_cls.default_preset
    model_default = f"{choice.model}, from the preset {preset}" if preset else choice.model
    unit = f" ({options_cls.quality_unit})" if options_cls.quality_unit else " (0-1)"
    train = config_flags(TrainConfig, shown=train_defaults(choice.train), short={"steps": "-n", "time_budget": "-t"},
                         aliases={"target": ("--target-psnr",)},
                         helps={"target": f"stop once the training-batch {options_cls.quality_name.upper()} reaches "
                                          f"this{unit}"})
    return {
        "model": option("--model", "-m", help=f"Model from `coordfit models` (default: {model_default})."),
        "preset": option("--preset", "-p", help="Named preset from `coordfit presets`"
                         + (f" (default: {preset}, unless --model is given)." if preset else ".")),
        "split": option("--split", "-s", help="Split models: the split, e.g. x+y, xy+t, x+y+z (default: the "
                        "kind's)."),
        "width": option("--width", tp=Optional[int], help="Hidden width (default: the model's; see `coordfit "
                        "models -v`)."),
        "layers": option("--layers", tp=Optional[int], help="Linear layers in total (default: the model's)."),
        "rank": option("--rank", tp=Optional[int], help="CoordX feature expansion R (default: the model's)."),
        "option": option("--option", "-o", tp=Optional[list[str]], help="Any model or signal option as "
                         "KEY=VALUE (repeatable), e.g. -o fusion=sum."),
        **train,
        "out": option("--out", tp=Optional[Path], help="Run folder, new or empty (default: a new folder under "
                      "runs/, named by kind, model, input and time)."),
        "name": option("--name", help="Name of the run folder under runs/KIND/MODEL/ (a taken name gets -2, "
                       "-3...)."),
        "config": option("--config", tp=Optional[Path], help="Start from a run's config.json (or its folder) or "
                         "a JSON or YAML file; flags given override it."),
        "resume": RESUME,
        "backend": option("--backend", help="Grid models: torch, or tcnn (tinycudann on CUDA; falls back to "
                          "torch with a warning) (default: torch)."),
        "progress": PROGRESS,
        "outputs": OUTPUTS,
        "exact_metrics": EXACT_METRICS,
    }


def _more_options(kind: str, options_cls: type[SignalOptions], flags: tuple[str, ...]) -> str:
    """The signal options without a flag of their own, each with its meaning and default."""
    docs = field_docs(options_cls)
    parts = []
    for f in dataclasses.fields(options_cls):
        if f.name in flags:
            continue
        default = format_default(f.default)
        parts.append(f"{f.name} ({docs[f.name].rstrip('.')}" + (f"; default: {default})" if default else ")"))
    return f"Other {kind} options, as -o KEY=VALUE: {'; '.join(parts)}." if parts else ""


def _defaults_line(kind: str, options_cls: type[SignalOptions]) -> str:
    """What a run with no flags trains, as the help's last paragraph."""
    choice = command_defaults(kind, options_cls)
    cpu = choice.train.resolved("cpu")
    limit = f"{cpu.steps:,} steps" if cpu.time_budget is None else (
        f"{cpu.steps:,} steps or {cpu.time_budget:g} s, whichever comes first" if cpu.steps else f"{cpu.time_budget:g} s")
    name = options_cls.default_preset
    preset = f"the preset {name}: " if name else ""
    points = {k: v for k, v in choice.train.changed().items() if k in ("batch_points", "grid_batch")}
    batch = "".join(f", {v:,} points a step" for v in points.values())
    return f"With no flags: {preset}model {choice.model}; on a CPU {limit}{batch}."


Finish = Callable[["coordfit.FitResult", dict[str, Any]], "coordfit.FitResult"]


def fitting_command(kind: str, options_cls: type[SignalOptions], path_help: str, flags: tuple[str, ...] = (),
                    extras: dict[str, Any] | None = None, finish: Finish | None = None,
                    inputs: tuple[str, ...] = ()) -> Callable[[Callable[[], None]], Callable[..., None]]:
    """Make the fitting command for signal ``kind`` from a function that holds its docstring.

    The command takes PATH (``path_help``), the :func:`shared_flags` and a flag for each of
    the signal options named in ``flags``, and runs :func:`run_fit`. ``extras`` (name ->
    annotation) adds the command's own flags or redeclares a shared one;
    ``finish(result, flags)`` runs after the fit or the resume, before the summary.
    ``inputs`` (file suffixes such as ``.png``) lets PATH be several paths or a folder of
    such files, fitted one by one (:func:`cli._batch.run_batch`), and adds ``--shard``.
    """

    def deco(func: Callable[[], None]) -> Callable[..., None]:
        tp = Optional[list[str]] if inputs else Optional[str]
        path = inspect.Parameter("path", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
            tp, typer.Argument(help=path_help, show_default=False, metavar="PATH")])
        declared = {**shared_flags(kind, options_cls), **({"shard": SHARD} if inputs else {}), **(extras or {}),
                    **config_flags(options_cls, flags)}
        command = make_command(func, declared, lambda kw: run_fit(kind, options_cls, kw, signal_flags=flags,
                                                                   finish=finish, inputs=inputs), leading=[path])
        paragraphs = [inspect.cleandoc(func.__doc__ or ""), _defaults_line(kind, options_cls),
                      _more_options(kind, options_cls, flags)]
        command.__doc__ = "\n\n".join(p for p in paragraphs if p)
        return command

    return deco


def run_fit(kind: str, options_cls: type[SignalOptions], kw: dict[str, Any], signal_flags: tuple[str, ...] = (),
            finish: Finish | None = None, inputs: tuple[str, ...] = ()) -> coordfit.FitResult | None:
    """Check the flags ``kw`` (without torch: :func:`check_early`), then fit one input
    (:func:`fit_one`) or, for several paths or a folder of ``inputs`` files, each of them
    (:func:`cli._batch.run_batch`); print a summary and, after a first run, how to go further."""
    from coordfit.runs.batch import is_batch

    from ._batch import run_batch

    paths = kw.get("path")
    paths = [] if paths is None else [paths] if isinstance(paths, str) else list(paths)
    check_early(kind, options_cls, kw, signal_flags, paths)
    if inputs and is_batch(paths, inputs):
        run_batch(kind, options_cls, kw, paths, inputs, resume_flags=_RESUME_FLAGS,
                  fit=lambda one: fit_one(kind, options_cls, one, signal_flags, finish)[0])
        return None
    if kw.get("shard") is not None:
        raise CoordfitError("--shard splits several inputs (a folder or several paths) between jobs; "
                            "this is one input")
    try:
        result, first_run = fit_one(kind, options_cls, {**kw, "path": paths[0] if paths else None}, signal_flags,
                                    finish)
    except TrainingInterrupted as exc:
        err_console.print(f"{exc}; continue with: coordfit {kind} --resume {_quote(exc.run_dir)}", markup=False)
        raise typer.Exit(130) from None
    print_summary(result)
    if first_run is not None:
        print_next_steps(kind, result, first_run, input_given=bool(paths))
    return result


def fit_one(kind: str, options_cls: type[SignalOptions], kw: dict[str, Any], signal_flags: tuple[str, ...] = (),
            finish: Finish | None = None) -> tuple[coordfit.FitResult, float | None]:
    """Call :func:`coordfit.fit` (or :func:`coordfit.resume`) with the command's flags ``kw``,
    then ``finish`` -> the result, and the first-run time budget when neither the flags, a
    preset nor a config set a limit (else None). ``-o`` options go to :func:`coordfit.fit` as
    keyword options, which gives each to the model when its config has it, else to the
    signal. With neither ``--model``, ``--preset`` nor ``--config`` the kind's
    ``default_preset`` applies; the preset is resolved once, by :func:`coordfit.fit`."""
    import coordfit
    from coordfit.runs.spec import read_config_file

    train = given(kw, _TRAIN_FLAGS)
    evaluation = given(kw, _FINISH_FLAGS)
    first_run = None
    if kw.get("resume") is not None:
        result = coordfit.resume(kw["resume"], model=kw.get("model"), progress=kw.get("progress"), **evaluation,
                                 **given(kw, [f for f in _RESUME_FLAGS if f in _TRAIN_FLAGS]))
    else:
        spec = read_config_file(kw["config"]) if kw.get("config") is not None else None
        preset = kw.get("preset")
        if preset is None and kw.get("model") is None and spec is None:
            preset = options_cls.default_preset
        if spec is None and _sets_no_limit(preset, train):
            first_run = TrainConfig.from_dict(train).resolved().time_budget
        options = {**given(kw, _MODEL_FLAGS), **parse_options(kw.get("option"))}
        result = coordfit.fit(kw.get("path"), kw.get("model"), kind=kind, preset=preset, train=train,
                              out=kw.get("out"), name=kw.get("name"), config=spec, progress=kw.get("progress"),
                              signal_options=given(kw, signal_flags), **evaluation, **options)
    if finish is not None:
        result = finish(result, kw)
    return result, first_run


def check_early(kind: str, options_cls: type[SignalOptions], kw: dict[str, Any], signal_flags: tuple[str, ...],
                paths: list[str]) -> None:
    """What can be refused without torch, refused before the library is imported (a
    fraction of a second instead of seconds): numbers and choices (the training settings,
    ``--outputs``, the signal flags), the input paths, the run folder of ``--resume``, the
    config file, ``-o`` syntax and ``--shard``."""
    if kw.get("resume") is not None:
        _check_resume_flags(kw)
        check_run_folder(kw["resume"])
    TrainConfig.from_dict(given(kw, _TRAIN_FLAGS))  # validated, as coordfit.fit validates it
    if kw.get("outputs") is not None:
        check_outputs(kw["outputs"])
    for path in paths:
        check_source(path)
    if kw.get("config") is not None and not Path(kw["config"]).exists():
        raise CoordfitError(f"--config {kw['config']} does not exist")
    signal = given(kw, signal_flags)
    if signal:
        options_cls.from_dict(signal, owner=f"{kind} signal")  # as Signal.read_options reads them
    parse_options(kw.get("option"))
    parse_shard(kw.get("shard"))


def _quote(path: Any) -> str:
    """``path`` as a shell word, so a printed command runs when pasted."""
    return shlex.quote(str(path))


def _sets_no_limit(preset: str | None, train: dict[str, Any]) -> bool:
    """Whether neither the flags nor the preset limit the steps or the time: the first-run limits apply."""
    from coordfit.engine.presets import get_preset

    limits = {"steps", "time_budget"}
    return not (limits & set(train) or (preset is not None and limits & set(get_preset(preset).train_options)))


def _check_resume_flags(kw: dict[str, Any]) -> None:
    """Refuse, in one line, flags that would make a resumed run differ from the run it continues."""
    if any(kw.get(k) is not None for k in ("path", "out", "name", "config")):
        raise CoordfitError("--resume takes the signal, folder and settings from the run; "
                            "drop PATH, --out, --name and --config")
    check_resume_flags(kw, _RESUME_FLAGS, ignore=("model", "compare"))  # --model: checked against the run's


def next_steps(kind: str, result: coordfit.FitResult, input_given: bool = True) -> list[str]:
    """The "go further" commands after a first run, each runnable as printed: the run's
    folder and, when the user named one (``input_given``), the real input, quoted for the shell
    (without one the kind's built-in input and its first-run options apply again)."""
    other = "siren" if result.metrics.get("model") == "hashgrid" else "hashgrid"
    source = f" {_quote(result.signal.meta().get('source'))}" if input_given else ""
    lines = []
    if result.run_dir is not None:
        lines.append(f"coordfit {kind} --resume {_quote(result.run_dir)} --time-budget {HINT_MORE_SECONDS:g}"
                     f"   # train {HINT_MORE_SECONDS:g} s more")
    lines.append(f"coordfit {kind}{source} --model {other} --time-budget {HINT_OTHER_SECONDS:g}"
                 "   # another model (coordfit models)")
    return lines


def print_next_steps(kind: str, result: coordfit.FitResult, budget: float, input_given: bool = True) -> None:
    """After a run with the first-run limits: what they were and how to go further."""
    m = result.metrics
    lines = [f"no --steps or --time-budget: trained {DEFAULT_STEPS} steps or {budget:g} s, whichever came first "
             f"(here {m['steps']} steps in {m['train_seconds']:.1f} s)", "go further:",
             *("  " + line for line in next_steps(kind, result, input_given))]
    console.print("\n".join(lines), markup=False, soft_wrap=True)


def metrics_table(m: dict[str, Any], keys: tuple[str, ...]) -> Table:
    """The ``keys`` of metrics ``m`` that it has, one row each, numbers formatted."""
    table = Table(show_header=False, box=None)
    for key in (k for k in keys if k in m):
        v = m[key]
        table.add_row(key, f"{v:,.4g}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v))
    return table


def print_summary(result: coordfit.FitResult) -> None:
    m = result.metrics
    console.print(metrics_table(m, ("model", "split", "params", "psnr", "ssim", "iou", "chamfer_l1", "steps",
                                    "train_seconds", "stopped_by")))
    for line in m.get("warnings", []):
        err_console.print(f"warning: {line}", markup=False)
    if result.run_dir is not None:
        console.print(f"run folder: {result.run_dir}")
        for p in result.outputs:
            console.print(f"  wrote {p}")
        curves = result.run_dir / "curves.png"
        if curves.is_file():  # drawn by the trainer's loggers, not an output of the signal
            console.print(f"  wrote {curves} (loss and quality against steps and seconds)", soft_wrap=True)
    _print_heldout(m)


def _print_heldout(m: dict[str, Any]) -> None:
    """Views: the held-out scores of the fit and of what it is compared with."""
    held = m.get("heldout")
    if not held:
        return
    table = Table(title=f"held-out views {m.get('holdout')}", box=None)
    for col in ("", "PSNR dB", "SSIM"):
        table.add_column(col)
    for name, scores in held.items():
        table.add_row(name.replace("_", " "), f"{scores['psnr']:.2f}", f"{scores['ssim']:.3f}")
    console.print(table)
