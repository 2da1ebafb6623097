"""`coordfit views`: fit a scene to a few posed photos, optionally with a learned prior."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table

from coordfit.errors import CoordfitError, TrainingInterrupted

from . import _fit as F
from ._common import console, err_console, handle_errors, parse_options
from .main import app

if TYPE_CHECKING:
    import coordfit


@app.command("views")
@handle_errors
def views_cmd(
    scene: Annotated[Optional[str], typer.Argument(help="Scene JSON (coordfit nvs format), a NeRF/instant-ngp transforms.json, or procedural:<seed>[,views=N][,size=PX] (default: procedural:1000000000).", show_default=False)] = None,
    inputs: Annotated[Optional[str], typer.Option("--inputs", "-i", help="Views to fit, e.g. 0,2,4 (default: every view not held out).")] = None,
    holdout: Annotated[Optional[str], typer.Option("--holdout", help="Views never trained on, scored at the end, e.g. 1,3,5.")] = None,
    prior: Annotated[str, typer.Option("--prior", help="default (Efficient-LVSM shipped for this), shipped (the coordfit nvs one), a checkpoint or nvs run folder, or none.")] = "none",
    prior_weight: Annotated[Optional[float], typer.Option("--prior-weight", help="Weight of the pseudo-view loss once ramped up (input views weigh 1).")] = None,
    pseudo_views: Annotated[Optional[int], typer.Option("--pseudo-views", help="Pseudo views the prior renders.")] = None,
    compare: Annotated[bool, typer.Option("--compare/--no-compare", help="With a prior: also fit without it, for views.png and metrics.json.")] = True,
    view_option: Annotated[Optional[list[str]], typer.Option("--set", help="Any views option as KEY=VALUE (repeatable), e.g. --set samples_inner=48 --set box_scale=0.6.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Field from `coordfit models` (default: the preset's).")] = None,
    preset: Annotated[Optional[str], typer.Option("--preset", "-p", help="Named preset (default hashgrid-views when no --model).")] = None,
    option: F.Options = None,
    steps: Annotated[Optional[int], typer.Option("--steps", "-n", help="Maximum training steps (hashgrid-views: 500).")] = None,
    time_budget: F.TimeBudget = None,
    target: Annotated[Optional[float], typer.Option("--target", "--target-psnr", help="Stop once the input-view batch PSNR reaches this (dB).")] = None,
    lr: F.LR = None,
    batch_points: Annotated[Optional[int], typer.Option("--batch-points", help="Ray samples per step; rays = this / samples per ray (hashgrid-views: 8192).")] = None,
    seed: F.Seed = 0,
    device: F.Device = "auto",
    precision: F.Precision = "auto",
    threads: F.Threads = None,
    out: F.Out = None,
    resume: F.Resume = None,
    checkpoint_every: F.CheckpointEvery = 500,
    progress: F.Progress = None,
) -> None:
    """Fit a radiance field to posed views; writes views.png, orbit.mp4, metrics.json, model.safetensors."""
    from coordfit.viewfit import fit_views, resume_views

    try:
        if resume is not None:
            if scene is not None or out is not None:
                raise CoordfitError("--resume takes the scene and folder from the run; drop SCENE and --out")
            limits = {"steps": steps, "time_budget": time_budget, "target": target, "model": model}
            result = resume_views(resume, compare=compare, progress=progress, **{k: v for k, v in limits.items() if v is not None})
        else:
            signal_options = parse_options(view_option)
            for key, value in (("inputs", inputs), ("holdout", holdout), ("prior_weight", prior_weight),
                               ("pseudo_views", pseudo_views)):
                if value is not None:
                    signal_options[key] = value
            train = {"steps": steps, "time_budget": time_budget, "target": target, "lr": lr, "threads": threads,
                     "batch_points": batch_points, "grid_batch": batch_points}
            train = {"seed": seed, "device": device, "precision": precision, "checkpoint_every": checkpoint_every,
                     **{k: v for k, v in train.items() if v is not None}}
            result = fit_views(scene, model, preset=preset, prior=prior, compare=compare, train=train, out=out,
                               progress=progress, signal_options=signal_options, **parse_options(option))
    except TrainingInterrupted as exc:
        err_console.print(f"{exc}; continue with: coordfit views --resume {exc.run_dir}", markup=False)
        raise typer.Exit(130) from None
    F.print_summary(result)
    _print_heldout(result)


def _print_heldout(result: coordfit.FitResult) -> None:
    held = result.metrics.get("heldout")
    if not held:
        return
    table = Table(title=f"held-out views {result.metrics.get('holdout')}", box=None)
    for col in ("", "PSNR dB", "SSIM"):
        table.add_column(col)
    for name, scores in held.items():
        table.add_row(name.replace("_", " "), f"{scores['psnr']:.2f}", f"{scores['ssim']:.3f}")
    console.print(table)
