"""CoordX vs SIREN at equal parameter count on one 512 x 512 image, in one process.

Measures, with coordfit's one timing protocol (coordfit.bench.timing: warm-up,
synchronise on GPU, repeats interleaved across the models, median [min-max]):

* full-grid inference time of each model and the SIREN / CoordX ratio;
* PSNR and SSIM after equal wall-clock training: both models train in interleaved
  slices (SIREN 5 s, CoordX 5 s, SIREN 5 s, ...) until each has had ``--seconds`` of
  training by the trainer's own clock, so a change in machine load hits both alike.

    python examples/bench_image.py                       # astronaut, 60 s each, 1 thread
    python examples/bench_image.py --image skimage:camera --seconds 30 --out bench.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

import coordfit
from coordfit.bench import machine_info, time_interleaved, train_interleaved
from coordfit.core.device import resolve_device
from coordfit.geometry.grid import axis_coords, evaluate_grid
from coordfit.core.io import write_json
from coordfit.signals import load_signal
from coordfit.engine.train import TrainConfig, Trainer

MODELS = {"siren": {}, "coordx": {"split": "x+y"}}  # CoordX partial split: 199,171 vs 198,915 params at width 256


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--image", default="skimage:astronaut", help="image path or skimage:<name> (512 x 512 samples)")
    p.add_argument("--width", type=int, default=256, help="hidden width of both models")
    p.add_argument("--seconds", type=float, default=60.0, help="training seconds per model (equal wall-clock)")
    p.add_argument("--slice", type=float, default=5.0, help="seconds per interleaved training slice")
    p.add_argument("--repeats", type=int, default=3, help="timed inference repeats per model (after 1 warm-up)")
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
    signal = load_signal("image", a.image).to(device)
    trainers = {}
    for name, opts in MODELS.items():
        torch.manual_seed(0)
        net = coordfit.create_model(name, signal.info, width=a.width, **opts)
        trainers[name] = Trainer(net, signal, TrainConfig(steps=10**9, checkpoint_every=0, device=str(device)))
    print(f"{a.image} {signal.shape}, device {device}, {torch.get_num_threads()} thread(s)")
    for name, t in trainers.items():
        print(f"  {name:7s} {t.model.num_params():,} params, {t.model.flops_per_sample():,.0f} FLOPs/sample, "
              f"{t.budget:,} samples/step")

    # Equal wall-clock training, interleaved in slices.
    train_interleaved(trainers, [min(a.seconds, k * a.slice) for k in range(1, math.ceil(a.seconds / a.slice) + 1)])
    quality = {name: signal.evaluate(t.model) for name, t in trainers.items()}

    # Full-grid inference, repeats interleaved.
    coords = [axis_coords(n, device) for n in signal.shape]
    stats = time_interleaved({n: (lambda m=t.model: evaluate_grid(m, coords)) for n, t in trainers.items()},
                             device, warmup=1, repeats=a.repeats)
    ratio = stats["siren"].median / stats["coordx"].median

    print(f"\nafter {a.seconds:g} s of training each (interleaved {a.slice:g} s slices):")
    for name, t in trainers.items():
        q = quality[name]
        s = stats[name]
        print(f"  {name:7s} steps {t.step:5d}  PSNR {q['psnr']:6.2f} dB  SSIM {q['ssim']:.4f}  "
              f"inference {s.median:7.3f} s [{s.min:.3f}-{s.max:.3f}] over {s.repeats} repeats")
    print(f"inference speedup CoordX vs SIREN: {ratio:.2f}x (median / median)")
    print(f"PSNR difference CoordX - SIREN: {quality['coordx']['psnr'] - quality['siren']['psnr']:+.2f} dB")
    if a.out is not None:
        record = {
            "image": a.image, "shape": list(signal.shape), "width": a.width, "seconds": a.seconds, "slice": a.slice,
            "machine": machine_info(device),
            "models": {n: {"params": t.model.num_params(), "steps": t.step, "train_seconds": t.seconds,
                           **quality[n], "inference_seconds": stats[n].to_dict()} for n, t in trainers.items()},
            "inference_speedup": ratio,
        }
        write_json(a.out, record)
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
