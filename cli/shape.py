"""`coordfit shape`: fit a 3D shape (occupancy or signed distance) and export a mesh."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from . import _fit as F
from ._common import handle_errors
from .main import app


@app.command("shape")
@handle_errors
def shape_cmd(
    path: Annotated[Optional[str], typer.Argument(help="Mesh file (OBJ/PLY/STL/OFF/GLB) or primitive:torus|sphere|box|capsule (default: primitive:torus).", show_default=False)] = None,
    field: Annotated[str, typer.Option("--field", help="occupancy (BCE on logits) or sdf (L1 on a truncated signed distance).")] = "occupancy",
    resolution: Annotated[int, typer.Option("--resolution", help="Marching-cubes grid of mesh.ply (and of the chamfer metrics).")] = 256,
    label_resolution: Annotated[int, typer.Option("--label-resolution", help="Training lattice R^3 whose nodes are labelled exactly.")] = 128,
    sdf_clamp: Annotated[float, typer.Option("--sdf-clamp", help="sdf field: truncation distance (the mesh spans [-0.95, 0.95]).")] = 0.1,
    eval_points: Annotated[int, typer.Option("--eval-points", help="Points for each IoU metric and samples for chamfer.")] = 100_000,
    model: F.Model = None,
    preset: F.Preset = None,
    split: F.Split = None,
    width: F.Width = None,
    layers: F.Layers = None,
    rank: F.Rank = None,
    option: F.Options = None,
    steps: F.Steps = None,
    time_budget: F.TimeBudget = None,
    target_psnr: Annotated[Optional[float], typer.Option("--target-psnr", help="Shapes: stop once the training-batch IoU (0-1) reaches this.")] = None,
    lr: F.LR = None,
    grid_batch: F.GridBatch = None,
    batch_points: F.BatchPoints = None,
    seed: F.Seed = 0,
    device: F.Device = "auto",
    out: F.Out = None,
    resume: F.Resume = None,
    checkpoint_every: F.CheckpointEvery = 500,
    backend: F.Backend = None,
    progress: F.Progress = None,
) -> None:
    """Fit a 3D shape; writes mesh.ply (input frame), metrics.json (IoU, chamfer), model.safetensors, log.csv."""
    F.run_fit(
        "shape", path, model=model, preset=preset, split=split, width=width, layers=layers, rank=rank,
        options=option, steps=steps, time_budget=time_budget, target_psnr=target_psnr, lr=lr,
        grid_batch=grid_batch, batch_points=batch_points, seed=seed, device=device, out=out,
        resume=resume, checkpoint_every=checkpoint_every, progress=progress, backend=backend,
        signal_options={"field": field, "resolution": resolution, "label_resolution": label_resolution,
                        "sdf_clamp": sdf_clamp, "eval_points": eval_points},
    )
