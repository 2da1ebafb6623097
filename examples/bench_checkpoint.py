"""What a checkpoint costs: one unit (coordfit.core.checkpoint.write_checkpoint: staged, hashed,
committed by one rename, every file flushed to disk) against three files written one after
another as before, side by side in one process, median of 30 saves, one thread.

    python examples/bench_checkpoint.py
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch

from coordfit.core.checkpoint import encode_rng, save_optimizer, save_train_state, save_weights, write_checkpoint
from coordfit.geometry.grid import GridInfo
from coordfit.models import create_model


def bench(name: str, model: torch.nn.Module, repeats: int = 30) -> None:
    opt = torch.optim.Adam(model.parameters())
    model(torch.rand(64, model.info.in_features)).sum().backward()
    opt.step()  # Adam state exists, as in a real checkpoint
    state = {"step": 1, "seconds": 0.0, "rng": encode_rng(torch.Generator().manual_seed(0))}

    def files(folder: Path) -> None:
        save_weights(folder / "model.safetensors", model, name)
        save_optimizer(folder / "optimizer.safetensors", opt)
        save_train_state(folder / "train_state.json", state)

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        ways = {"three files": lambda: files(run), "one unit": lambda: write_checkpoint(run, 1, files)}
        times: dict[str, list[float]] = {k: [] for k in ways}
        for _ in range(repeats):
            for key, save in ways.items():
                t0 = time.perf_counter()
                save()
                times[key].append(time.perf_counter() - t0)
        mb = sum(p.stat().st_size for p in run.iterdir() if p.suffix == ".safetensors") / 1e6
    a, b = (statistics.median(times[k]) * 1e3 for k in ways)
    print(f"{name:<10} {mb:6.2f} MB   three files {a:6.1f} ms   one unit {b:6.1f} ms   ratio {b / a:.2f}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    info = GridInfo(("y", "x"), (512, 512), 3, "x+y")
    bench("coordx", create_model("coordx", info))
    bench("siren-512", create_model("siren", info, width=512))
