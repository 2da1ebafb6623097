"""Options shared by the fitting commands (image, video, shape) and the code they run."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

import coordfit
from coordfit.device import DEFAULTS
from coordfit.errors import CoordfitError
from coordfit.loggers import LOGGERS
from coordfit.presets import resolve_preset
from coordfit.runs import read_config_file
from coordfit.signals import signal_class
from coordfit.train import DEFAULT_STEPS, TrainingInterrupted

from ._common import console, err_console, parse_options

_CPU, _CUDA = DEFAULTS["cpu"], DEFAULTS["cuda"]

# Annotated option types, so each fitting command declares the same flags in one line each.
Model = Annotated[Optional[str], typer.Option("--model", "-m", help="Model from `coordfit models` (default: coordx).")]
Preset = Annotated[Optional[str], typer.Option("--preset", "-p", help="Named preset from `coordfit presets`.")]
Split = Annotated[Optional[str], typer.Option("--split", "-s", help="Split spec for split models, e.g. x+y, xy+t, x+y+z.")]
Width = Annotated[Optional[int], typer.Option("--width", help="Hidden width (model default: 256).")]
Layers = Annotated[Optional[int], typer.Option("--layers", help="Linear layers in total (model default: 5).")]
Rank = Annotated[Optional[int], typer.Option("--rank", help="CoordX feature expansion R.")]
Options = Annotated[Optional[list[str]], typer.Option("--option", "-o", help="Any model option as KEY=VALUE (repeatable), e.g. -o fusion=sum.")]
Steps = Annotated[Optional[int], typer.Option("--steps", "-n", help=f"Maximum training steps. With neither --steps nor --time-budget: {DEFAULT_STEPS} steps or {_CPU.first_run_seconds:g} s, whichever comes first.")]
TimeBudget = Annotated[Optional[float], typer.Option("--time-budget", "-t", help="Stop after this many seconds of training (on --resume: seconds more).")]
LR = Annotated[Optional[float], typer.Option("--lr", help="Adam learning rate (model default).")]
GridBatch = Annotated[Optional[int], typer.Option("--grid-batch", help=f"Split models: points per step in the sampled sub-grid (default: {_CPU.batch:,} on CPUs; on CUDA the whole grid up to {_CUDA.batch:,}).")]
BatchPoints = Annotated[Optional[int], typer.Option("--batch-points", help=f"Unsplit models: random points per step (default: {_CPU.batch:,} on CPUs; on CUDA the whole grid up to {_CUDA.batch:,}).")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed (model init and sampling).")]
Device = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or mps.")]
Precision = Annotated[str, typer.Option("--precision", help="auto (the device's default: fp32), fp32, tf32 (TF32 matmuls on CUDA, fp32 elsewhere) or bf16 (autocast).")]
Compile = Annotated[bool, typer.Option("--compile/--no-compile", help="torch.compile the model (falls back to eager with one warning).")]
Threads = Annotated[Optional[int], typer.Option("--threads", help=f"torch CPU threads (default: {_CPU.threads} on CPUs, torch's own with a GPU).")]
Out = Annotated[Optional[Path], typer.Option("--out", help="Run folder (must be new or empty) (default: runs/<kind>/<model>/<input>-<time>/).")]
Name = Annotated[Optional[str], typer.Option("--name", help="Name the run folder runs/<kind>/<model>/NAME/ (a taken name gets -2, -3...).")]
Config = Annotated[Optional[Path], typer.Option("--config", help="Start from a run's config.json (or its folder) or a JSON/YAML file; flags given override it.")]
Logger = Annotated[Optional[str], typer.Option("--logger", help=f"{' or '.join(LOGGERS)}: tensorboard also writes the log rows to <run>/tensorboard/ (log.csv and curves.png are always written; default: none; on --resume: from then on).")]
Resume = Annotated[Optional[Path], typer.Option("--resume", help="Continue the run in this folder (--steps: the new total; --time-budget: seconds more).")]
CheckpointEvery = Annotated[int, typer.Option("--checkpoint-every", help="Steps between checkpoints (0: end and Ctrl-C only).")]
Backend = Annotated[Optional[str], typer.Option("--backend", help="Grid models: torch, or tcnn (tinycudann on CUDA; falls back to torch with a warning).")]
Progress = Annotated[Optional[bool], typer.Option("--progress/--no-progress", help="Progress: a bar on a terminal, a line every few seconds elsewhere (default: on).")]


def _target_help(kind: str) -> str:
    cls = signal_class(kind)
    unit = f" ({cls.quality_unit})" if cls.quality_unit else " (0-1)"
    return f"Stop once the training-batch {cls.quality_name.upper()} reaches this{unit}; --target-psnr is an alias."


ImageTarget = Annotated[Optional[float], typer.Option("--target", "--target-psnr", help=_target_help("image"))]
VideoTarget = Annotated[Optional[float], typer.Option("--target", "--target-psnr", help=_target_help("video"))]
ShapeTarget = Annotated[Optional[float], typer.Option("--target", "--target-psnr", help=_target_help("shape"))]


_MODEL_FLAGS = ("split", "width", "layers", "rank", "backend")
_TRAIN_FLAGS = ("steps", "time_budget", "target", "lr", "grid_batch", "batch_points", "seed", "device", "precision",
                "compile", "threads", "checkpoint_every", "logger")


def _shared_options(target: Any) -> list[inspect.Parameter]:
    """The options every fitting command takes, in --help order."""
    opts: list[tuple[str, Any, Any]] = [
        ("model", Model, None), ("preset", Preset, None), ("split", Split, None), ("width", Width, None),
        ("layers", Layers, None), ("rank", Rank, None), ("option", Options, None), ("steps", Steps, None),
        ("time_budget", TimeBudget, None), ("target", target, None), ("lr", LR, None), ("grid_batch", GridBatch, None),
        ("batch_points", BatchPoints, None), ("seed", Seed, 0), ("device", Device, "auto"),
        ("precision", Precision, "auto"), ("compile", Compile, False), ("threads", Threads, None), ("out", Out, None),
        ("name", Name, None), ("config", Config, None), ("resume", Resume, None),
        ("checkpoint_every", CheckpointEvery, 500), ("backend", Backend, None), ("logger", Logger, None),
        ("progress", Progress, None),
    ]
    return [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=a) for n, a, d in opts]


def fitting_command(kind: str, target: Any) -> Callable[[Callable[..., dict[str, Any]]], Callable[..., None]]:
    """Make a fitting command from a function of its own arguments (``path`` and signal options).

    The function returns the signal options; the command gets the options shared by every
    fitting command (model, training, run folder) besides its own, so ``image``, ``video``
    and ``shape`` take the same flags by construction, and runs :func:`run_fit`.
    """

    def deco(func: Callable[..., dict[str, Any]]) -> Callable[..., None]:
        own = inspect.signature(func, eval_str=True).parameters
        shared = _shared_options(target)

        @functools.wraps(func)
        def command(ctx: typer.Context, **kw: Any) -> None:
            path = kw.get("path")
            signal_options = func(**{name: kw.pop(name) for name in own})
            if kw["config"] is not None:  # only the flags given override the config (defaults do not)
                signal_options = {k: v for k, v in signal_options.items() if _given(ctx, k)}
                kw = {k: v if _given(ctx, k) else None for k, v in kw.items()}
            run_fit(kind, path, model=kw.pop("model"), preset=kw.pop("preset"),
                    model_flags={k: kw.pop(k) for k in _MODEL_FLAGS}, options=kw.pop("option"),
                    train={k: v for k in _TRAIN_FLAGS if (v := kw.pop(k)) is not None}, out=kw.pop("out"),
                    name=kw.pop("name"), config=kw.pop("config"), resume=kw.pop("resume"),
                    progress=kw.pop("progress"), signal_options=signal_options)

        mine = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own.values()]
        context = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
        params = [context] + [p for p in mine if p.name == "path"] + shared + [p for p in mine if p.name != "path"]
        command.__signature__ = inspect.Signature(params, return_annotation=None)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return deco


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether option ``name`` was given (on the command line or by environment), not defaulted."""
    source = ctx.get_parameter_source(name)  # click's ParameterSource (typer vendors click)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def run_fit(
    kind: str,
    source: Any,
    *,
    model: str | None,
    preset: str | None,
    model_flags: dict[str, Any],
    options: list[str] | None,
    train: dict[str, Any],
    out: Path | None,
    resume: Path | None,
    progress: bool | None,
    signal_options: dict[str, Any] | None = None,
    name: str | None = None,
    config: Path | None = None,
) -> coordfit.FitResult:
    """Build the configs from CLI flags, call :func:`coordfit.fit` (or resume), print a summary.

    ``model_flags``: model options by flag (None: not given); ``train``: TrainConfig fields
    (with ``config``: only those given, which override the config's).
    """
    first_run = False
    try:
        if resume is not None:
            if source is not None or out is not None or name is not None or config is not None:
                raise CoordfitError("--resume takes the signal, folder and settings from the run; "
                                    "drop PATH, --out, --name and --config")
            result = coordfit.resume(resume, steps=train.get("steps"), time_budget=train.get("time_budget"),
                                     target=train.get("target"), model=model, logger=train.get("logger"),
                                     progress=progress)
        else:
            model_options: dict[str, Any] = {}
            model_options.update({k: v for k, v in model_flags.items() if v is not None})
            model_options.update(parse_options(options))
            spec = read_config_file(config) if config is not None else None
            limits = resolve_preset(preset, kind=kind, model=model, train=train).train
            first_run = spec is None and limits.steps is None and limits.time_budget is None
            result = coordfit.fit(source, model, kind=kind, preset=preset, train=train, out=out, name=name,
                                  config=spec, progress=progress, signal_options=signal_options, **model_options)
    except TrainingInterrupted as exc:
        err_console.print(f"{exc}; continue with: coordfit {kind} --resume {exc.run_dir}", markup=False)
        raise typer.Exit(130) from None
    print_summary(result)
    if first_run:
        print_next_steps(kind, result, limits.resolved().time_budget)
    return result


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
