"""Options shared by the fitting commands (image, video, shape) and the code they run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

import coordfit
from coordfit.errors import CoordfitError
from coordfit.train import TrainingInterrupted

from ._common import console, err_console, parse_options

# Annotated option types, so each fitting command declares the same flags in one line each.
Model = Annotated[Optional[str], typer.Option("--model", "-m", help="Model from `coordfit models` (default: coordx).")]
Preset = Annotated[Optional[str], typer.Option("--preset", "-p", help="Named preset from `coordfit presets`.")]
Split = Annotated[Optional[str], typer.Option("--split", "-s", help="Split spec for split models, e.g. x+y, xy+t, x+y+z.")]
Width = Annotated[Optional[int], typer.Option("--width", help="Hidden width (model default: 256).")]
Layers = Annotated[Optional[int], typer.Option("--layers", help="Linear layers in total (model default: 5).")]
Rank = Annotated[Optional[int], typer.Option("--rank", help="CoordX feature expansion R.")]
Options = Annotated[Optional[list[str]], typer.Option("--option", "-o", help="Any model option as KEY=VALUE (repeatable), e.g. -o fusion=sum.")]
Steps = Annotated[Optional[int], typer.Option("--steps", "-n", help="Maximum training steps (default: 2000).")]
TimeBudget = Annotated[Optional[float], typer.Option("--time-budget", "-t", help="Stop after this many seconds of training.")]
TargetPSNR = Annotated[Optional[float], typer.Option("--target-psnr", help="Stop once the training PSNR reaches this (dB).")]
LR = Annotated[Optional[float], typer.Option("--lr", help="Adam learning rate (model default).")]
GridBatch = Annotated[Optional[int], typer.Option("--grid-batch", help="Split models: points per step in the sampled sub-grid.")]
BatchPoints = Annotated[Optional[int], typer.Option("--batch-points", help="Unsplit models: random points per step.")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed (model init and sampling).")]
Device = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or mps.")]
Out = Annotated[Optional[Path], typer.Option("--out", help="Run folder (must be new or empty) (default: runs/<kind>/<model>/<time>/).")]
Resume = Annotated[Optional[Path], typer.Option("--resume", help="Continue the run in this folder (--steps is the new total).")]
CheckpointEvery = Annotated[int, typer.Option("--checkpoint-every", help="Steps between checkpoints (0: end and Ctrl-C only).")]
Backend = Annotated[Optional[str], typer.Option("--backend", help="Grid models: torch, or tcnn (tinycudann on CUDA; falls back to torch with a warning).")]
Progress = Annotated[Optional[bool], typer.Option("--progress/--no-progress", help="Progress bar (default: when stdout is a terminal).")]


def run_fit(
    kind: str,
    source: Any,
    *,
    model: str | None,
    preset: str | None,
    split: str | None,
    width: int | None,
    layers: int | None,
    rank: int | None,
    options: list[str] | None,
    steps: int | None,
    time_budget: float | None,
    target_psnr: float | None,
    lr: float | None,
    grid_batch: int | None,
    batch_points: int | None,
    seed: int,
    device: str,
    out: Path | None,
    resume: Path | None,
    checkpoint_every: int,
    progress: bool | None,
    signal_options: dict[str, Any] | None = None,
    backend: str | None = None,
) -> coordfit.FitResult:
    """Build the configs from CLI flags, call :func:`coordfit.fit` (or resume), print a summary."""
    try:
        if resume is not None:
            if source is not None or out is not None:
                raise CoordfitError("--resume takes the signal and folder from the run; drop PATH and --out")
            result = coordfit.resume(resume, steps=steps, time_budget=time_budget, target_psnr=target_psnr,
                                     model=model, progress=progress)
        else:
            model_options: dict[str, Any] = {}
            for key, value in (("split", split), ("width", width), ("layers", layers), ("rank", rank),
                               ("backend", backend)):
                if value is not None:
                    model_options[key] = value
            model_options.update(parse_options(options))
            train_options: dict[str, Any] = {"seed": seed, "device": device, "checkpoint_every": checkpoint_every}
            for key, value in (("steps", steps), ("time_budget", time_budget), ("target_psnr", target_psnr),
                               ("lr", lr), ("grid_batch", grid_batch), ("batch_points", batch_points)):
                if value is not None:
                    train_options[key] = value
            result = coordfit.fit(source, model, kind=kind, preset=preset, train=train_options, out=out,
                                  progress=progress, signal_options=signal_options, **model_options)
    except TrainingInterrupted as exc:
        err_console.print(f"{exc}; continue with: coordfit {kind} --resume {exc.run_dir}", markup=False)
        raise typer.Exit(130) from None
    print_summary(result)
    return result


def print_summary(result: coordfit.FitResult) -> None:
    m = result.metrics
    table = Table(show_header=False, box=None)
    shown = [k for k in ("model", "split", "params", "psnr", "ssim", "iou", "chamfer_l1", "steps",
                         "train_seconds", "stopped_by") if k in m]
    for key in shown:
        v = m[key]
        table.add_row(key, f"{v:,.4g}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v))
    console.print(table)
    if result.run_dir is not None:
        console.print(f"run folder: {result.run_dir}")
        for p in result.outputs:
            console.print(f"  wrote {p}")
