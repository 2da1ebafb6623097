"""`coordfit shape`: fit a 3D shape (occupancy or signed distance) and export a mesh."""

from __future__ import annotations

from coordfit.signals.options import ShapeOptions

from ._common import handle_errors
from ._fit import fitting_command
from .app import app


@app.command("shape")
@handle_errors
@fitting_command("shape", ShapeOptions, flags=("field", "resolution", "label_resolution", "sdf_clamp", "eval_points"),
                 inputs=(".obj", ".ply", ".stl", ".off", ".glb"),
                 path_help="Mesh file (OBJ/PLY/STL/OFF/GLB) or primitive:torus|sphere|box|capsule "
                 "(default: primitive:torus); several meshes or a folder of them: each fitted alike into one folder.")
def shape_cmd() -> None:
    """Fit a 3D shape; writes mesh.ply (input frame), metrics.json (IoU, chamfer), model.safetensors, log.csv.

    With no PATH it fits the built-in torus with a smaller mesh, lattice and metric sample
    (see the option defaults), for a first result within a minute on a CPU.
    """
