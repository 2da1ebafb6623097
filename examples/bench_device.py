"""What the device defaults rest on: batch size, precision and torch.compile, measured per model.

Three measurements on one device, one process (docs/performance.md quotes them):

* **batch**: full-signal PSNR after ``--seconds`` of training at several points per step
  (``full`` = the whole grid), on an image and on a clip, for each model; the rule "the
  whole grid up to a cap" and the cap come from here;
* **precision**: PSNR after ``--steps`` equal steps and steps/s for fp32, tf32 (CUDA) and
  bf16 autocast, whole image per step; plus the PSNR of the fp32-trained weights
  evaluated under TF32 (does evaluating in TF32 cost anything?);
* **compile**: steps/s eager vs ``torch.compile`` and the seconds the first compiled
  step takes;
* **threads** (CPU): steps/s of each model with 1, 2, ... torch threads, interleaved.

    python examples/bench_device.py --device cuda --out device.json
    python examples/bench_device.py --device cpu --parts threads,batch --models coordx,hashgrid,siren \
        --image-batches 4096,16384,65536 --seconds 20
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch

import coordfit
from coordfit.bench import machine_info
from coordfit.core.device import device_settings, resolve_device, synchronize
from coordfit.signals import VideoSignal, load_signal
from coordfit.engine.train import TrainConfig, Trainer


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--image", default=None, help="image (default: skimage:astronaut, 512x512)")
    p.add_argument("--models", default="siren,pe-mlp,coordx,hashgrid", help="comma-separated models")
    p.add_argument("--parts", default="batch,precision,compile", help="which measurements")
    p.add_argument("--seconds", type=float, default=5.0, help="training seconds of each batch-size fit")
    p.add_argument("--image-batches", default="16384,65536,full", help="points per step tried on the image")
    p.add_argument("--video-batches", default="65536,262144,1048576", help="points per step tried on the clip")
    p.add_argument("--video-size", default="320x136x50", help="WxHxT of the procedural clip")
    p.add_argument("--steps", type=int, default=300, help="steps of each precision fit")
    p.add_argument("--out", type=_new_file, default=None, help="also write the figures as JSON (must not exist)")
    return p.parse_args()


def _new_file(text: str) -> Path:
    if Path(text).exists():
        raise argparse.ArgumentTypeError(f"{text} exists; coordfit never overwrites results")
    return Path(text)


def _clip(spec: str) -> VideoSignal:
    w, h, t = (int(v) for v in spec.lower().split("x"))
    tt = torch.linspace(0, 1, t)[:, None, None]
    y, x = torch.linspace(0, 1, h)[None, :, None], torch.linspace(0, 1, w)[None, None, :]
    waves = [0.5 + 0.4 * torch.sin(6.28 * (f * x + g * y + 2 * tt)) * torch.cos(3.14 * k * (x - y))
             for f, g, k in ((3, 2, 5), (5, 1, 7), (2, 4, 3))]
    return VideoSignal(torch.stack(waves, dim=-1), copy=False)


def _fit(signal: Any, model: str, device: torch.device, **train: Any) -> tuple[Trainer, float]:
    """Train a fresh ``model``; returns the trainer and the wall seconds of ``run``."""
    torch.manual_seed(0)
    net = coordfit.create_model(model, signal.info)
    t = Trainer(net, signal, TrainConfig(checkpoint_every=0, device=str(device), **train))
    synchronize(device)
    t0 = time.perf_counter()
    t.run(progress=False)
    synchronize(device)
    return t, time.perf_counter() - t0


def batch_sizes(signal: Any, what: str, models: list[str], batches: list[str], device: torch.device,
                seconds: float) -> list[dict[str, Any]]:
    rows = []
    for model in models:
        for b in batches:
            n = 1 << 40 if b == "full" else int(b)
            t, _ = _fit(signal, model, device, time_budget=seconds, grid_batch=n, batch_points=n)
            with device_settings(device, "fp32", None):
                psnr = signal.evaluate(t.model)["psnr"]
            rows.append({"signal": what, "model": model, "batch": b, "points": min(n, math.prod(signal.shape)),
                         "steps": t.step, "seconds": t.seconds, "psnr": psnr})
            print(f"  batch  {what:6s} {model:9s} {b:>8s}  {t.step:6d} steps in {t.seconds:5.1f} s  "
                  f"psnr {psnr:6.2f}", flush=True)
    return rows


def precisions(signal: Any, models: list[str], device: torch.device, steps: int) -> list[dict[str, Any]]:
    rows = []
    names = ["fp32", "tf32", "bf16"] if device.type == "cuda" else ["fp32", "bf16"]
    for model in models:
        for precision in names:
            t, wall = _fit(signal, model, device, steps=steps, grid_batch=1 << 40, batch_points=1 << 40,
                           precision=precision)
            with device_settings(device, "fp32", None):
                psnr = signal.evaluate(t.model)["psnr"]
            row = {"model": model, "precision": precision, "steps": steps, "steps_per_s": steps / wall, "psnr": psnr}
            if precision == "fp32" and device.type == "cuda":
                with device_settings(device, "tf32", None):
                    row["psnr_evaluated_in_tf32"] = signal.evaluate(t.model)["psnr"]
            rows.append(row)
            print(f"  prec   {model:9s} {precision:5s} {row['steps_per_s']:8.1f} steps/s  psnr {psnr:6.2f}"
                  + (f"  (tf32 eval {row['psnr_evaluated_in_tf32']:.2f})" if "psnr_evaluated_in_tf32" in row else ""),
                  flush=True)
    return rows


def compiled(signal: Any, models: list[str], device: torch.device) -> list[dict[str, Any]]:
    rows = []
    for model in models:
        rates, first = {}, {}
        for compile_model in (False, True):
            torch.manual_seed(0)
            net = coordfit.create_model(model, signal.info)
            t = Trainer(net, signal, TrainConfig(steps=1, checkpoint_every=0, device=str(device), compile=compile_model))
            synchronize(device)
            t0 = time.perf_counter()
            t.run(progress=False)  # the first step (compiles)
            synchronize(device)
            first[compile_model] = time.perf_counter() - t0
            t.config.steps = 3
            t.run(progress=False)  # a recompile with dynamic shapes, if any, happens here
            runs = []
            for _ in range(3):
                t.config.steps = t.step + 50
                synchronize(device)
                t0 = time.perf_counter()
                t.run(progress=False)
                synchronize(device)
                runs.append(50 / (time.perf_counter() - t0))
            rates[compile_model] = statistics.median(runs)
        row = {"model": model, "eager_steps_per_s": rates[False], "compiled_steps_per_s": rates[True],
               "speedup": rates[True] / rates[False], "first_step_s": first[True]}
        rows.append(row)
        print(f"  compile {model:9s} eager {rates[False]:8.1f}  compiled {rates[True]:8.1f} steps/s  "
              f"x{row['speedup']:.2f}  first step {first[True]:.1f} s", flush=True)
    return rows


def threads(signal: Any, models: list[str], seconds: float) -> list[dict[str, Any]]:
    """Steps/s per torch thread count; counts interleaved so that load drift hits all alike."""
    counts = list(range(1, (os.cpu_count() or 1) + 1))
    trainers = {}
    for model in models:
        for n in counts:
            torch.manual_seed(0)
            net = coordfit.create_model(model, signal.info)
            trainers[model, n] = Trainer(net, signal, TrainConfig(steps=1, threads=n, checkpoint_every=0, device="cpu"))
            trainers[model, n].run(progress=False)  # warm-up
    rates: dict[tuple[str, int], list[float]] = {k: [] for k in trainers}
    for _ in range(3):
        for (model, n), t in trainers.items():
            t.config.time_budget, t.config.steps = seconds / 3, None
            start, t0 = t.step, time.perf_counter()
            t.run(progress=False)
            rates[model, n].append((t.step - start) / (time.perf_counter() - t0))
    rows = [{"model": m, "threads": n, "steps_per_s": statistics.median(r)} for (m, n), r in rates.items()]
    for row in rows:
        print(f"  threads {row['model']:9s} {row['threads']:2d}  {row['steps_per_s']:7.2f} steps/s", flush=True)
    return rows


def main() -> None:
    a = _args()
    device = resolve_device(a.device)
    torch.set_num_threads(a.threads)
    models, parts = [m for m in a.models.split(",") if m], set(a.parts.split(","))
    image = load_signal("image", a.image).to(device)
    result: dict[str, Any] = {"machine": machine_info(device), "torch": torch.__version__, "load": os.getloadavg()}
    print(f"{device}, torch {torch.__version__}, image {image.shape}", flush=True)
    if "batch" in parts:
        clip = _clip(a.video_size).to(device)
        result["batch"] = (batch_sizes(image, "image", models, a.image_batches.split(","), device, a.seconds)
                           + batch_sizes(clip, "video", models, a.video_batches.split(","), device, a.seconds))
        del clip
    if "precision" in parts:
        result["precision"] = precisions(image, models, device, a.steps)
    if "compile" in parts:
        result["compile"] = compiled(image, models, device)
    if "threads" in parts and device.type == "cpu":
        result["threads"] = threads(image, models, a.seconds)
    if a.out is not None:
        a.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
