"""`coordfit shape`: fit a 3D shape (occupancy or signed distance) and export a mesh."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from . import _fit as F
from ._common import handle_errors
from .main import app


# The built-in torus is the first-run shape: its mesh, lattice and metrics are sized so that
# `coordfit shape` with no flags finishes within a minute on a 2-core CPU (docs/shapes.md).
_FILE_DEFAULTS = {"resolution": 128, "label_resolution": 128, "eval_points": 100_000}
_FIRST_RUN_DEFAULTS = {"resolution": 96, "label_resolution": 64, "eval_points": 20_000}


@app.command("shape")
@handle_errors
@F.fitting_command("shape", F.ShapeTarget)
def shape_cmd(
    path: Annotated[Optional[str], typer.Argument(help="Mesh file (OBJ/PLY/STL/OFF/GLB) or primitive:torus|sphere|box|capsule (default: primitive:torus).", show_default=False)] = None,
    field: Annotated[str, typer.Option("--field", help="occupancy (BCE on logits) or sdf (L1 on a truncated signed distance).")] = "occupancy",
    resolution: Annotated[Optional[int], typer.Option("--resolution", help="Grid of mesh.ply and of the metrics (default: 128, the label lattice's; 96 with no PATH; finer later: coordfit render RUN --resolution 512).", show_default=False)] = None,
    label_resolution: Annotated[Optional[int], typer.Option("--label-resolution", help="Training lattice R^3 whose nodes are labelled exactly (default: 128; 64 with no PATH).", show_default=False)] = None,
    sdf_clamp: Annotated[float, typer.Option("--sdf-clamp", help="sdf field: truncation distance (the mesh spans [-0.95, 0.95]).")] = 0.1,
    eval_points: Annotated[Optional[int], typer.Option("--eval-points", help="Points for each IoU metric and samples for chamfer (default: 100,000; 20,000 with no PATH).", show_default=False)] = None,
) -> dict[str, Any]:
    """Fit a 3D shape; writes mesh.ply (input frame), metrics.json (IoU, chamfer), model.safetensors, log.csv.

    With no PATH it fits the built-in torus with a smaller mesh, lattice and metric sample
    (see the option defaults), for a first result within a minute on a CPU.
    """
    defaults = _FILE_DEFAULTS if path is not None else _FIRST_RUN_DEFAULTS
    given = {"resolution": resolution, "label_resolution": label_resolution, "eval_points": eval_points}
    sized = {k: defaults[k] if v is None else v for k, v in given.items()}
    return {"field": field, "sdf_clamp": sdf_clamp, **sized}
