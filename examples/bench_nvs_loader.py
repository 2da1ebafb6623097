"""How ``coordfit nvs train`` should get its procedural batches: measured, not guessed.

Times blocks of training steps of the shipped Efficient-LVSM recipe (width 96, 3 + 3
layers, batch 8 of 32 px procedural scenes, one torch thread unless ``--torch-threads``
says otherwise), the batches drawn

* ``pre-rendered``: before the clock starts (the lean loop: the step alone);
* ``inline``: rendered in the training thread when the step asks (``--workers 0``);
* ``threads-N``: rendered ahead by N background threads, two batches in flight per
  thread (``--workers N``, what coordfit.nvs.data.batches does);
* ``processes-N``: rendered ahead by N ``torch.utils.data.DataLoader`` worker
  processes, two batches in flight per worker (the alternative, defined here).

Every variant runs in this one process with coordfit's timing protocol
(:mod:`coordfit.bench.timing`: a warm-up block, then the median of ``--repeats``
blocks, the variants' blocks interleaved so that load drifts hit all alike). A block
starts its batch pipeline afresh, so worker start-up is counted (amortised over
``--steps`` steps, as it is over a real run's).

Wall time on a shared machine says how the variants fare under *its* load: when other
jobs keep every core busy, no variant can run anything in parallel. So the table also
gives CPU time per step, which load moves less: of the training thread (what an idle
core beside it could not take off the critical path) and in all (this process and its
workers: what the variant costs when the cores are busy). Prints a Markdown table and
the machine; ``--json`` also writes the numbers.

    python examples/bench_nvs_loader.py --steps 12 --repeats 5
    python examples/bench_nvs_loader.py --steps 12 --repeats 5 --tiny
    python examples/bench_nvs_loader.py --steps 8 --repeats 5 --workers 1 --torch-threads 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader

from coordfit.bench.timing import machine_info, time_interleaved
from coordfit.nvs import NVSConfig, create_model
from coordfit.nvs.data import ViewSource, batches
from coordfit.engine.nvs_train import NVSTrainConfig, _loss


class _Steps(torch.utils.data.Dataset):
    def __init__(self, source: ViewSource, batch_size: int, steps: range) -> None:
        self.source, self.batch_size, self.steps = source, batch_size, steps

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, i: int) -> dict:
        return self.source.batch(self.steps[i], self.batch_size)


def _processes(source: ViewSource, batch_size: int, steps: range, workers: int) -> Iterator[dict]:
    """The alternative to threads: DataLoader worker processes, in order, two batches ahead each."""
    return iter(DataLoader(_Steps(source, batch_size, steps), batch_size=None, num_workers=workers, prefetch_factor=2))


def _cpu_seconds() -> float:
    """CPU seconds of this process (all threads) and of its reaped children (DataLoader
    workers are joined when their loader is exhausted)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=12, help="steps per timed block")
    parser.add_argument("--repeats", type=int, default=5, help="timed blocks per variant (median reported)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="thread and process counts to try")
    parser.add_argument("--torch-threads", type=int, nargs="+", default=[1],
                        help="torch intra-op thread counts to try (each variant runs under each)")
    parser.add_argument("--tiny", action="store_true", help="a width-32, 1-layer model: a step as cheap as on a GPU")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    model_config = dict(width=32, depth=1, head_dim=16) if args.tiny else dict(width=96, depth=3, head_dim=32)
    cfg = NVSTrainConfig(model_config=model_config, batch_size=8, size=32)
    source = ViewSource(None, cfg.size, cfg.input_views, cfg.target_views, seed=0)
    torch.manual_seed(0)
    model = create_model(cfg.model, NVSConfig(**model_config)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    blocks = iter(range(10**6))

    def train_on(stream: Iterator[dict]) -> None:
        for batch in stream:
            loss, _ = _loss(model, batch, cfg)  # (loss, MSE)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        float(loss.detach())  # the block ends when its last step has

    def steps() -> range:  # fresh batch indices for every block: nothing is cached
        start = next(blocks) * args.steps
        return range(start, start + args.steps)

    rendered = [source.batch(i, cfg.batch_size) for i in range(args.steps)]
    variants = {
        "pre-rendered": lambda: iter(rendered),
        "inline": lambda: batches(source, cfg.batch_size, steps(), workers=0),
    }
    for n in args.workers:
        variants[f"threads-{n}"] = lambda n=n: batches(source, cfg.batch_size, steps(), workers=n)
    for n in args.workers:
        variants[f"processes-{n}"] = lambda n=n: _processes(source, cfg.batch_size, steps(), n)
    if len(args.torch_threads) > 1:  # every variant under every torch thread count
        variants = {f"{name}, {t} torch thread{'s' * (t > 1)}": (stream, t)
                    for t in args.torch_threads for name, stream in variants.items()}
    else:
        variants = {name: (stream, args.torch_threads[0]) for name, stream in variants.items()}
    cpu = {name: [0.0, 0.0] for name in variants}  # training thread, all (process + reaped workers)

    def measured(name: str):  # noqa: ANN202
        stream, threads = variants[name]

        def block() -> None:
            torch.set_num_threads(threads)
            thread0, usage0 = time.thread_time(), _cpu_seconds()
            train_on(stream())
            cpu[name][0] += time.thread_time() - thread0
            cpu[name][1] += _cpu_seconds() - usage0
        return block

    load_before = os.getloadavg()
    stats = time_interleaved({name: measured(name) for name in variants}, "cpu", warmup=1, repeats=args.repeats)
    lean = next(iter(stats.values())).median  # pre-rendered, under the first thread count
    blocks = args.steps * (args.repeats + 1)  # the warm-up block's CPU time is counted too
    rows = {name: {"ms_per_step": round(1000 * s.median / args.steps, 1),
                   "min_ms": round(1000 * s.min / args.steps, 1), "max_ms": round(1000 * s.max / args.steps, 1),
                   "vs_lean": round(s.median / lean, 3),
                   "train_thread_cpu_ms": round(1000 * cpu[name][0] / blocks, 1),
                   "total_cpu_ms": round(1000 * cpu[name][1] / blocks, 1)} for name, s in stats.items()}
    print(f"| batches ({args.steps}-step blocks, median of {args.repeats}) | wall ms/step | min | max | "
          "x lean loop | CPU ms/step, training thread | CPU ms/step, all |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['ms_per_step']} | {r['min_ms']} | {r['max_ms']} | {r['vs_lean']} | "
              f"{r['train_thread_cpu_ms']} | {r['total_cpu_ms']} |")
    machine = machine_info("cpu")
    print(f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}; {machine['cpu']}, "
          f"{machine['cpu_cores']} cores, torch {machine['torch']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "load_before": load_before, "steps": args.steps,
                       "repeats": args.repeats, "tiny": args.tiny, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
