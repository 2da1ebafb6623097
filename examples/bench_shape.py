"""Shape benchmark: labelling speed, CoordX vs SIREN IoU at equal time, mesh-extraction speedup.

    OMP_NUM_THREADS=1 python examples/bench_shape.py --seconds 60 --out bench_shape.json

Everything runs in one process with ``torch.set_num_threads(1)``:

1. Labelling (the open Stanford bunny, ``stanford_bun_zipper.ply``): points/s of
   libigl's fast winding number on 1M uniform points, of the exact O(points x faces)
   sum (on a subset), and lattice nodes/s of the coarse-to-fine labelling at 128^3.
2. For ``quartet_bunny_watertight.obj`` and ``quartet_dragon.obj``: CoordX (x+y+z) and
   SIREN at (nearly) equal parameter count, each trained for the same wall-clock time
   on the same occupancy target; IoU on 100k uniform points and near the surface.
3. Mesh extraction through the split path vs point by point with the same CoordX
   weights: the ratio on identical x-slabs of the 256^3 grid (interleaved repeats,
   median), and the full 256^3 split extraction time.

Absolute times depend on the machine and on whatever else runs on it; the ratios are
measured side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import coordfit
from coordfit.geometry.grid import axis_coords, branch_points, evaluate_grid
from coordfit.signals import ShapeSignal
from coordfit.signals import mesh_labels as ml
from coordfit.signals.shape import field_volume

DATA = Path(os.environ.get("COORDFIT_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data")) / "meshes"


def labelling(seed: int = 0) -> dict:
    mesh = ml.normalise(ml.read_mesh(DATA / "stanford_bun_zipper.ply"), 0.05)[0]
    rng = np.random.default_rng(seed)
    pts = rng.uniform(-1, 1, (1_000_000, 3))
    t = time.perf_counter()
    fast = ml.winding_numbers(mesh, pts)
    t_fast = time.perf_counter() - t
    sub = pts[:200]
    t = time.perf_counter()
    exact = ml.winding_numbers_exact(mesh, sub)
    t_exact = time.perf_counter() - t
    t = time.perf_counter()
    ml.label_grid(mesh, 128)
    t_grid = time.perf_counter() - t
    return {
        "mesh": "stanford_bun_zipper.ply (open)",
        "faces": int(len(mesh.faces)),
        "fast_winding_points_per_s": round(len(pts) / t_fast),
        "fast_winding_seconds_1M": round(t_fast, 2),
        "exact_winding_points_per_s": round(len(sub) / t_exact),
        "fast_vs_exact_label_agreement": float(((fast[:200] > 0.5) == (exact > 0.5)).mean()),
        "lattice_128_seconds": round(t_grid, 2),
        "lattice_128_nodes_per_s": round(128**3 / t_grid),
    }


def fit_equal_time(name: str, seconds: float, label_resolution: int, mesh_resolution: int) -> dict:
    signal = ShapeSignal.load(DATA / name, label_resolution=label_resolution, resolution=mesh_resolution)
    out = {}
    for model in ("coordx", "siren"):
        cfg = coordfit.TrainConfig(steps=10**9, time_budget=seconds, grid_batch=1 << 14, batch_points=1 << 14, seed=0)
        r = coordfit.fit(signal, model, train=cfg, save=False, progress=False)
        out[model] = {k: r.metrics[k] for k in ("params", "split", "steps", "train_seconds", "iou", "iou_near_surface",
                                                "chamfer_l1", "chamfer_l2", "normal_consistency")}
        out[model]["_model"] = r.model
    return out


@torch.no_grad()
def extraction_speedup(model: torch.nn.Module, resolution: int = 256, slab: int = 8, repeats: int = 3) -> dict:
    ax = axis_coords(resolution)
    split_t, point_t = [], []
    for r in range(repeats):
        xs = ax[r * slab : (r + 1) * slab]
        t = time.perf_counter()
        a = evaluate_grid(model, [xs, ax, ax])
        split_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        pts = branch_points([xs, ax, ax])
        b = torch.cat([model(pts[s : s + (1 << 16)]) for s in range(0, len(pts), 1 << 16)])
        point_t.append(time.perf_counter() - t)
        assert torch.allclose(a.reshape(-1), b.reshape(-1), atol=1e-4, rtol=1e-3)
    t = time.perf_counter()
    field_volume(model, resolution)
    full = time.perf_counter() - t
    ratio = statistics.median(p / s for p, s in zip(point_t, split_t))
    return {
        "resolution": resolution,
        "slab_points": slab * resolution * resolution,
        "split_seconds_per_slab": [round(x, 3) for x in split_t],
        "pointwise_seconds_per_slab": [round(x, 3) for x in point_t],
        "speedup_split_vs_pointwise": round(ratio, 2),
        "split_full_grid_seconds": round(full, 2),
        "pointwise_full_grid_seconds_estimated": round(statistics.median(point_t) * resolution / slab, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="training wall-clock per model and mesh")
    ap.add_argument("--label-resolution", type=int, default=128)
    ap.add_argument("--mesh-resolution", type=int, default=128, help="marching cubes for the chamfer metrics")
    ap.add_argument("--meshes", nargs="+", default=["quartet_bunny_watertight.obj", "quartet_dragon.obj"])
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if not DATA.is_dir():
        raise SystemExit(f"no meshes at {DATA} (set COORDFIT_DATA)")
    results: dict = {"torch_threads": torch.get_num_threads(), "seconds_per_fit": args.seconds}
    results["labelling"] = labelling()
    print(json.dumps(results["labelling"], indent=2), flush=True)
    coordx_model = None
    for name in args.meshes:
        res = fit_equal_time(name, args.seconds, args.label_resolution, args.mesh_resolution)
        coordx_model = res["coordx"].pop("_model")
        res["siren"].pop("_model")
        results[name] = res
        print(name, json.dumps(res, indent=2), flush=True)
    results["extraction"] = extraction_speedup(coordx_model.eval())
    print(json.dumps(results["extraction"], indent=2), flush=True)
    if args.out:
        coordfit.core.io.write_json(args.out, results)


if __name__ == "__main__":
    main()
