"""The fitting commands (image, video, shape, views), declared once.

Every fitting command takes the same flags, listed once here (:data:`SHARED`), and the
flags of its signal kind, made from the fields of the kind's typed options
(:mod:`coordfit.signals.options`: their comments are the help). A command module is
its docstring, its PATH help and which signal options it shows as flags; every other
signal option is reachable with ``-o KEY=VALUE``, as every model option is. A command
with more to do (views: the comparison fit) adds its own flags and a ``finish`` step.

Nothing here imports torch: the library is imported when a command runs.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from coordfit.core.defaults import DEFAULT_STEPS, DEFAULTS, RESUME_SETTINGS
from coordfit.core.errors import CoordfitError, TrainingInterrupted
from coordfit.core.registry import field_docs
from coordfit.signals.options import SignalOptions

from ._common import console, err_console, parse_options

if typing.TYPE_CHECKING:
    import coordfit

_CPU, _CUDA = DEFAULTS["cpu"], DEFAULTS["cuda"]


def _opt(*names: str, help: str, tp: Any = Optional[str]) -> Any:  # noqa: A002
    return Annotated[tp, typer.Option(*names, help=help, show_default=False)]


# Each shared flag: its parameter name -> its type with the flag and help. Every default
# is None, "not given": the library's default applies (the help states it), and --resume
# can tell a flag given from one left alone.
Device = _opt("--device", help="auto, cpu, cuda or mps (default: auto).")
SHARED: dict[str, Any] = {
    "model": _opt("--model", "-m", help="Model from `coordfit models` (default: coordx)."),
    "preset": _opt("--preset", "-p", help="Named preset from `coordfit presets`."),
    "split": _opt("--split", "-s", help="Split spec for split models, e.g. x+y, xy+t, x+y+z."),
    "width": _opt("--width", tp=Optional[int], help="Hidden width (model default: see `coordfit models -v`; "
                  "256 for coordx, siren and pe-mlp, 64 for hashgrid, 16 for splitgrid)."),
    "layers": _opt("--layers", tp=Optional[int], help="Linear layers in total (model default)."),
    "rank": _opt("--rank", tp=Optional[int], help="CoordX feature expansion R."),
    "option": _opt("--option", "-o", tp=Optional[list[str]], help="Any model or signal option as KEY=VALUE "
                   "(repeatable), e.g. -o fusion=sum."),
    "steps": _opt("--steps", "-n", tp=Optional[int], help=f"Maximum training steps. With neither --steps nor "
                  f"--time-budget: {DEFAULT_STEPS} steps or {_CPU.first_run_seconds:g} s, whichever comes first."),
    "time_budget": _opt("--time-budget", "-t", tp=Optional[float],
                        help="Stop after this many seconds of training (on --resume: seconds more)."),
    "target": None,  # per kind: see _target
    "lr": _opt("--lr", tp=Optional[float], help="Adam learning rate (model default)."),
    "grid_batch": _opt("--grid-batch", tp=Optional[int], help=f"Split models: points per step in the sampled "
                       f"sub-grid (default: {_CPU.batch:,} on CPUs; on CUDA the whole grid up to {_CUDA.batch:,})."),
    "batch_points": _opt("--batch-points", tp=Optional[int], help=f"Unsplit models: random points per step "
                         f"(default: {_CPU.batch:,} on CPUs; on CUDA the whole grid up to {_CUDA.batch:,})."),
    "seed": _opt("--seed", tp=Optional[int], help="Random seed (model init and sampling) (default: 0)."),
                 "device": Device,
    "precision": _opt("--precision", help="auto (the device's default: fp32), fp32, tf32 (TF32 matmuls on "
                      "CUDA, fp32 elsewhere) or bf16 (autocast)."),
    "compile": _opt("--compile/--no-compile", tp=Optional[bool],
                    help="torch.compile the model (falls back to eager with one warning) (default: off)."),
    "threads": _opt("--threads", tp=Optional[int],
                    help=f"torch CPU threads (default: {_CPU.threads} on CPUs, torch's own with a GPU)."),
    "out": _opt("--out", tp=Optional[Path], help="Run folder (must be new or empty) (default: "
                "runs/<kind>/<model>/<input>-<time>/)."),
    "name": _opt("--name", help="Name the run folder runs/<kind>/<model>/NAME/ (a taken name gets -2, -3...)."),
    "config": _opt("--config", tp=Optional[Path], help="Start from a run's config.json (or its folder) or a "
                   "JSON/YAML file; flags given override it."),
    "resume": _opt("--resume", tp=Optional[Path], help="Continue the run in this folder (--steps: the new "
                   "total; --time-budget: seconds more). Flags that would change the run are refused."),
    "checkpoint_every": _opt("--checkpoint-every", tp=Optional[int],
                             help="Steps between checkpoints (0: end and Ctrl-C only) (default: 500)."),
    "logger": _opt("--logger", help="none or tensorboard: tensorboard also writes the log rows to "
                   "<run>/tensorboard/ (log.csv and curves.png are always written; default: none; on --resume: "
                   "from then on)."),
    "backend": _opt("--backend", help="Grid models: torch, or tcnn (tinycudann on CUDA; falls back to torch "
                    "with a warning)."),
    "progress": _opt("--progress/--no-progress", tp=Optional[bool], help="Progress: a bar on a terminal, a line "
                     "every few seconds elsewhere (default: on)."),
}
_MODEL_FLAGS = ("split", "width", "layers", "rank", "backend")
_TRAIN_FLAGS = ("steps", "time_budget", "target", "lr", "grid_batch", "batch_points", "seed", "device", "precision",
                "compile", "threads", "checkpoint_every", "logger")
# What --resume may change (coordfit.resume): how long and where it trains, how it reports.
_RESUME_FLAGS = ("steps", "time_budget", "target", *RESUME_SETTINGS, "logger", "progress")


def _target(options_cls: type[SignalOptions]) -> Any:
    unit = f" ({options_cls.quality_unit})" if options_cls.quality_unit else " (0-1)"
    return _opt("--target", "--target-psnr", tp=Optional[float], help=f"Stop once the training-batch "
                f"{options_cls.quality_name.upper()} reaches this{unit}; --target-psnr is an alias.")


def _signal_flag(options_cls: type[SignalOptions], name: str) -> inspect.Parameter:
    """A ``--flag`` for signal option ``name``: its comment as help, its default stated."""
    field = {f.name: f for f in dataclasses.fields(options_cls)}[name]
    tp = typing.get_type_hints(options_cls)[name]
    inner = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
    base = inner[0] if len(inner) == 1 and inner[0] in (int, float, bool) else str
    flag = "--" + name.replace("_", "-")
    default = field.default
    shown = {False: "off", True: "on"}.get(default) if isinstance(default, bool) else (
        f"{default:,}" if isinstance(default, int) else default)
    stated = "" if default is None else f" (default: {shown})"
    doc = field_docs(options_cls).get(name, "").rstrip(".")
    annotation = _opt(f"{flag}/--no-{flag[2:]}" if base is bool else flag, tp=Optional[base],
                      help=doc[:1].upper() + doc[1:] + stated + ".")
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)


Finish = Callable[["coordfit.FitResult", dict[str, Any]], "coordfit.FitResult"]


def fitting_command(kind: str, options_cls: type[SignalOptions], path_help: str, flags: tuple[str, ...] = (),
                    extras: dict[str, Any] | None = None,
                    finish: Finish | None = None) -> Callable[[Callable[[], None]], Callable[..., None]]:
    """Make the fitting command for signal ``kind`` from a function that holds its docstring.

    The command takes PATH (``path_help``), the :data:`SHARED` flags and a flag for each of
    the signal options named in ``flags``, and runs :func:`run_fit`. ``extras`` (name ->
    annotation, as in :data:`SHARED`) adds the command's own flags or redeclares a shared
    one; ``finish(result, flags)`` runs after the fit or the resume, before the summary.
    """

    def deco(func: Callable[[], None]) -> Callable[..., None]:
        path = inspect.Parameter("path", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
            Optional[str], typer.Argument(help=path_help, show_default=False)])
        declared = {**SHARED, "target": _target(options_cls), **(extras or {})}
        shared = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=a)
                  for n, a in declared.items()]
        params = [path, *shared, *(_signal_flag(options_cls, n) for n in flags)]

        @functools.wraps(func)
        def command(**kw: Any) -> None:
            run_fit(kind, options_cls, kw, signal_flags=flags, finish=finish)

        others = [f.name for f in dataclasses.fields(options_cls) if f.name not in flags]
        if others:  # the signal options without a flag of their own, so -o can be found
            more = f"More {kind} options (-o KEY=VALUE): {', '.join(others)}."
            command.__doc__ = f"{inspect.cleandoc(func.__doc__ or '')}\n\n{more}"
        command.__signature__ = inspect.Signature(params, return_annotation=None)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return deco


def _given(kw: dict[str, Any], names: tuple[str, ...] | list[str]) -> dict[str, Any]:
    return {k: kw[k] for k in names if kw.get(k) is not None}


def run_fit(kind: str, options_cls: type[SignalOptions], kw: dict[str, Any],
            signal_flags: tuple[str, ...] = (), finish: Finish | None = None) -> coordfit.FitResult:
    """Build the configs from the command's flags ``kw``, call :func:`coordfit.fit` (or
    :func:`coordfit.resume`), then ``finish``, print a summary. An ``-o`` key goes to the
    model when the model has that option (``seed`` of a Fourier encoding), else to the
    signal when ``options_cls`` has it; what neither takes is refused by the model's
    config. With neither ``--model``, ``--preset`` nor ``--config`` the kind's
    ``default_preset`` applies."""
    import coordfit
    from coordfit.models import model_entry
    from coordfit.engine.presets import resolve_preset
    from coordfit.runs.spec import read_config_file

    train = _given(kw, _TRAIN_FLAGS)
    first_run = False
    try:
        if kw.get("resume") is not None:
            _check_resume_flags(kw, signal_flags)
            result = coordfit.resume(kw["resume"], model=kw.get("model"), progress=kw.get("progress"),
                                     **_given(kw, [f for f in _RESUME_FLAGS if f in _TRAIN_FLAGS]))
        else:
            spec = read_config_file(kw["config"]) if kw.get("config") is not None else None
            preset = kw.get("preset")
            if preset is None and kw.get("model") is None and spec is None:
                preset = options_cls.default_preset
            choice = resolve_preset(preset, kind=kind, model=kw.get("model"), train=train)
            options = parse_options(kw.get("option"))
            model_fields = {f.name for f in dataclasses.fields(model_entry(choice.model).config_cls)}
            to_signal = {f.name for f in dataclasses.fields(options_cls)} - model_fields
            signal_options = {**_given(kw, signal_flags), **{k: v for k, v in options.items() if k in to_signal}}
            model_options = {**_given(kw, _MODEL_FLAGS), **{k: v for k, v in options.items() if k not in to_signal}}
            first_run = spec is None and choice.train.steps is None and choice.train.time_budget is None
            result = coordfit.fit(kw.get("path"), kw.get("model"), kind=kind, preset=preset, train=train,
                                  out=kw.get("out"), name=kw.get("name"), config=spec, progress=kw.get("progress"),
                                  signal_options=signal_options, **model_options)
        if finish is not None:
            result = finish(result, kw)
    except TrainingInterrupted as exc:
        err_console.print(f"{exc}; continue with: coordfit {kind} --resume {exc.run_dir}", markup=False)
        raise typer.Exit(130) from None
    print_summary(result)
    if first_run:
        print_next_steps(kind, result, choice.train.resolved().time_budget)
    return result


def _check_resume_flags(kw: dict[str, Any], signal_flags: tuple[str, ...]) -> None:
    """Refuse, in one line, flags that would make a resumed run differ from the run it continues."""
    if any(kw.get(k) is not None for k in ("path", "out", "name", "config")):
        raise CoordfitError("--resume takes the signal, folder and settings from the run; "
                            "drop PATH, --out, --name and --config")
    allowed = {*_RESUME_FLAGS, "resume", "model", "path", "out", "name", "config"}  # --model: checked against the run's
    fixed = [k for k in (*SHARED, *signal_flags) if k not in allowed and kw.get(k) not in (None, [])]
    if fixed:
        flags = ", ".join("-o" if k == "option" else "--" + k.replace("_", "-") for k in fixed)
        raise CoordfitError(f"--resume continues the run as it was set up; it cannot change {flags} "
                            f"(only {', '.join('--' + f.replace('_', '-') for f in _RESUME_FLAGS)}): "
                            "drop them, or start a new run")


def print_next_steps(kind: str, result: coordfit.FitResult, budget: float) -> None:
    """After a run with the first-run limits: what they were and how to go further."""
    m = result.metrics
    other = "siren" if m.get("model") == "hashgrid" else "hashgrid"
    lines = [f"no --steps or --time-budget: trained {DEFAULT_STEPS} steps or {budget:g} s, whichever came first "
             f"(here {m['steps']} steps in {m['train_seconds']:.1f} s)", "go further:"]
    if result.run_dir is not None:
        lines.append(f"  coordfit {kind} --resume {result.run_dir} --time-budget 120   # train 2 minutes more")
    lines.append(f"  coordfit {kind} [PATH] --model {other} --time-budget 60   # another model (coordfit models)")
    console.print("\n".join(lines), markup=False, soft_wrap=True)


def print_summary(result: coordfit.FitResult) -> None:
    m = result.metrics
    table = Table(show_header=False, box=None)
    shown = [k for k in ("model", "split", "params", "psnr", "ssim", "iou", "chamfer_l1", "steps",
                         "train_seconds", "stopped_by") if k in m]
    for key in shown:
        v = m[key]
        table.add_row(key, f"{v:,.4g}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v))
    console.print(table)
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
