"""Render benchmark: evaluate_grid's chunk size, and the surface-adaptive field against the full grid.

    python examples/bench_render.py --threads 1 --seconds 60 --out bench_render.json

Everything runs in one process, timed with the project's protocol
(:func:`coordfit.bench.timing.time_interleaved`: repeats interleaved, median):

1. ``evaluate_grid`` with chunks of 4,096 ... 262,144 output points, untrained models at
   the default width: CoordX ``xy+t`` on 12 frames of a 176x144 clip (the carphone's
   size), CoordX ``x+y+z`` and SIREN on 16 x-slabs of a 128^3 volume. The ratio to
   262,144 (the old default) is what :func:`coordfit.geometry.grid.eval_chunk` is chosen from.
2. A SIREN fitted to the watertight bunny for ``--seconds``: ``surface_volume`` (blocks
   near the level set) against ``field_volume`` (every node) at 128^3 and 256^3, the
   share of blocks evaluated, and whether marching cubes gives the same mesh.

Absolute times depend on the machine and on whatever else runs on it; the ratios are
measured side by side.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch

import coordfit
from coordfit.bench.timing import time_interleaved
from coordfit.geometry.grid import GridInfo, axis_coords, evaluate_grid
from coordfit.signals.isosurface import field_volume, marching_cubes, surface_volume
from coordfit.engine.train import TrainConfig

DATA = Path(os.environ.get("COORDFIT_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data")) / "meshes"
CHUNKS = (1 << 12, 1 << 13, 1 << 14, 1 << 16, 1 << 18)


def chunk_sizes(repeats: int) -> dict:
    clip = GridInfo(("t", "y", "x"), (120, 144, 176), 3, "xy+t")
    volume = GridInfo(("x", "y", "z"), (128, 128, 128), 1, "x+y+z")
    slabs = [axis_coords(128)[:16], axis_coords(128), axis_coords(128)]
    cases = {
        "coordx xy+t, 12 frames 176x144": (coordfit.create_model("coordx", clip),
                                           [axis_coords(12), axis_coords(144), axis_coords(176)]),
        "coordx x+y+z, 16x128x128": (coordfit.create_model("coordx", volume), slabs),
        "siren, 16x128x128": (coordfit.create_model("siren", volume), slabs),
    }
    out = {}
    for name, (model, coords) in cases.items():
        model.eval()
        stats = time_interleaved({str(c): (lambda c=c: evaluate_grid(model, coords, chunk=c)) for c in CHUNKS},
                                 repeats=repeats)
        base = stats[str(CHUNKS[-1])].median
        out[name] = {c: {"median_s": round(s.median, 3), "speedup_vs_262144": round(base / s.median, 2)}
                     for c, s in stats.items()}
        print(name, json.dumps(out[name]), flush=True)
    return out


def adaptive(seconds: float, repeats: int) -> dict:
    source = DATA / "quartet_bunny_watertight.obj"
    r = coordfit.fit(source, "siren", kind="shape", train=TrainConfig(time_budget=seconds), save=False, progress=False)
    signal, model = r.signal, r.model.eval()
    out: dict = {"fit": {k: r.metrics[k] for k in ("steps", "iou", "chamfer_l1")}}
    for res in (128, 256):
        blocks: list[int] = []
        fast = surface_volume(model, res, seeds=signal.surface.points, report=lambda p, d, t: blocks.append(d))
        full = field_volume(model, res)
        same = bool(np.array_equal(fast > 0, full > 0))
        a, b = marching_cubes(fast, "occupancy"), marching_cubes(full, "occupancy")
        same_mesh = a.faces.shape == b.faces.shape and bool(np.array_equal(a.faces, b.faces))
        stats = time_interleaved({
            "surface_volume": lambda: surface_volume(model, res, seeds=signal.surface.points),
            "field_volume": lambda: field_volume(model, res),
        }, repeats=repeats)
        n_blocks = len(range(0, res - 1, 8)) ** 3
        out[res] = {
            "surface_volume_s": round(stats["surface_volume"].median, 2),
            "field_volume_s": round(stats["field_volume"].median, 2),
            "speedup": round(stats["field_volume"].median / stats["surface_volume"].median, 2),
            "blocks_evaluated": f"{blocks[-1]} of {n_blocks}",
            "same_signs": same, "same_mesh": same_mesh, "faces": len(a.faces),
        }
        print(res, json.dumps(out[res]), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (coordfit's CPU setting is 1)")
    ap.add_argument("--seconds", type=float, default=60.0, help="training of the SIREN for part 2 (0: skip it)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results: dict = {"torch_threads": torch.get_num_threads(), "chunks": chunk_sizes(args.repeats)}
    if args.seconds > 0:
        if not DATA.is_dir():
            raise SystemExit(f"no meshes at {DATA} (set COORDFIT_DATA)")
        results["surface_volume"] = adaptive(args.seconds, max(1, args.repeats // 2))
    if args.out:
        coordfit.core.io.write_json(args.out, results)


if __name__ == "__main__":
    main()
