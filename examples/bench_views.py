"""Benchmark `coordfit views`: does the learned prior help a fit to a few posed views?

On held-out procedural scenes (seeds from 1,000,000,000: the priors never saw them), each
scene rendered with ``max(N) + holdout`` views: the first N are the inputs, the last
``holdout`` are judged. For every scene and N it scores, on the held-out views, the
nearest input view, the prior alone (its render at the held-out camera), the fit without
the prior and the fit with it (same model, seed and steps), PSNR and SSIM.

    python examples/bench_views.py --scenes 16 --inputs 2,3,4 --out docs/views_bench.json

Comparing fields at equal training time (each ``name[:key=value...]`` a model and options):

    python examples/bench_views.py --scenes 2 --inputs 2 --views 6 --no-compare --time-budget 30 --steps 100000 \
        --models hashgrid:levels=8,hashgrid,splitgrid,siren,pe-mlp,coordx --out docs/views_models.json

Results are written after every scene (atomically); running again with the same --out
skips what is done, so an interrupted run resumes. The table goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

import coordfit
from coordfit.core.io import read_json, write_json
from coordfit.nvs.data import HELD_OUT_SEED
from coordfit.engine.presets import list_presets
from coordfit.signals.views.signal import ViewsConfig, ViewsSignal

METHODS = ("nearest", "prior", "fit_no_prior", "fit")


def run_item(seed: int, n: int, views: int, model: str, args: argparse.Namespace, compare: bool) -> dict:
    options = {"inputs": list(range(n)), "holdout": list(range(views - args.holdout, views)), "prior": args.prior,
               "pseudo_views": args.pseudo_views, "prior_weight": args.prior_weight, "samples_front": args.samples[0],
               "samples_inner": args.samples[1], "samples_outer": args.samples[2], "distortion": args.distortion}
    t0 = time.perf_counter()
    signal = ViewsSignal.load(f"procedural:{seed},views={views},size={args.size}", **options)
    t1 = time.perf_counter()
    train = coordfit.TrainConfig(steps=args.steps, time_budget=args.time_budget, batch_points=args.batch_points,
                                 device=args.device, seed=0)
    name, *opts = model.split(":")
    field = {"preset": name} if name in list_presets() else {"model": name}
    result = coordfit.fit_views(signal, **field, compare=compare, train=train, save=False, progress=False,
                                **dict(_option(o) for o in opts))
    return {"seed": seed, "inputs": n, "model": model, "steps": result.metrics["steps"], "heldout": result.metrics["heldout"],
            "per_view": result.metrics["heldout_per_view"], "input_psnr": result.metrics["input_psnr"],
            "prior_seconds": round(t1 - t0, 2), "fit_seconds": round(time.perf_counter() - t1, 2),
            "train_seconds_with_prior": result.metrics["train_seconds"]}


def _views(settings: dict) -> int:
    return settings.get("views") or max(int(x) for x in settings["inputs"].split(",")) + settings["holdout"]


def _baseline(path: Path, settings: dict) -> dict:
    """``(seed, N, model) -> item`` of an earlier run whose fits without the prior match these settings."""
    data = read_json(path)
    old = data["settings"]
    same = ("holdout", "size", "steps", "time_budget", "batch_points", "samples", "device")
    differ = [k for k in same if old.get(k) != settings.get(k)] + (["views"] if _views(old) != _views(settings) else [])
    if differ:
        raise SystemExit(f"--baseline {path} differs in {', '.join(differ)}; its fits without the prior do not apply")
    return {(it["seed"], it["inputs"], it["model"]): it for it in data["items"] if "fit_no_prior" in it["heldout"]}


def _option(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _spread(xs: list[float]) -> str:
    return f"{statistics.mean(xs):.2f} ± {statistics.stdev(xs) if len(xs) > 1 else 0.0:.2f}"


def table(items: list[dict]) -> str:
    """Mean ± standard deviation over scenes of held-out PSNR (dB) / mean SSIM, per model and N."""
    shown = [m for m in METHODS if all(m in it["heldout"] for it in items)]
    names = {"nearest": "nearest", "prior": "prior alone", "fit_no_prior": "fit, no prior", "fit": "fit + prior"}
    gains = [("prior", "fit+prior − prior"), ("fit_no_prior", "fit+prior − fit")]
    gains = [(m, title) for m, title in gains if m in shown]
    head = ["model", "N", "scenes", *(names[m] for m in shown), *(t for _, t in gains), "steps", "s / scene"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for model, n in sorted({(it["model"], it["inputs"]) for it in items}, key=lambda k: (k[1], k[0])):
        rows = [it for it in items if it["inputs"] == n and it["model"] == model]
        cells = [f"{_spread([r['heldout'][m]['psnr'] for r in rows])} / "
                 f"{statistics.mean(r['heldout'][m]['ssim'] for r in rows):.3f}" for m in shown]
        cells += [_spread([r["heldout"]["fit"]["psnr"] - r["heldout"][m]["psnr"] for r in rows]) for m, _ in gains]
        secs = statistics.mean(r["fit_seconds"] + r["prior_seconds"] for r in rows)
        steps = statistics.mean(r["steps"] for r in rows)
        lines.append(f"| {model} | {n} | {len(rows)} | " + " | ".join(cells) + f" | {steps:.0f} | {secs:.0f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenes", type=int, default=16, help="held-out procedural scenes")
    p.add_argument("--first", type=int, default=0, help="first scene: seed 1,000,000,000 + first")
    p.add_argument("--inputs", default="2,3,4", help="input view counts N")
    p.add_argument("--holdout", type=int, default=2, help="held-out views per scene (the last ones)")
    p.add_argument("--views", type=int, default=None, help="views per scene (default: max N + holdout)")
    p.add_argument("--size", type=int, default=32, help="image size (px)")
    p.add_argument("--prior", default="default", help="default | shipped | a checkpoint")
    p.add_argument("--models", default="hashgrid-views",
                   help="fields, comma separated: a model or preset name [:key=value...]")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--time-budget", type=float, default=None, help="seconds of training per fit")
    p.add_argument("--no-compare", dest="compare", action="store_false", help="skip the fit without the prior")
    p.add_argument("--baseline", type=Path, default=None,
                   help="an earlier --out whose fit without the prior (same scenes, views, model, steps) is reused")
    p.add_argument("--batch-points", type=int, default=8192, help="ray samples per step")
    p.add_argument("--samples", default="2,16,6", help="samples per ray: front,inner,outer")
    p.add_argument("--pseudo-views", type=int, default=ViewsConfig.pseudo_views)
    p.add_argument("--prior-weight", type=float, default=1.0)
    p.add_argument("--distortion", type=float, default=0.0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("views_bench.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    args.samples = [int(x) for x in args.samples.split(",")]
    counts = [int(x) for x in args.inputs.split(",")]
    views = args.views or max(counts) + args.holdout
    if views < max(counts) + args.holdout:
        raise SystemExit(f"--views {views} leaves no room for {max(counts)} inputs and {args.holdout} held-out views")
    settings = {k: v for k, v in vars(args).items() if k not in ("scenes", "first", "out", "note", "baseline")}
    if args.baseline:
        settings["baseline"] = str(args.baseline)
    done = read_json(args.out) if args.out.is_file() else {"settings": settings, "items": []}
    if {k: v for k, v in done["settings"].items() if k != "note"} != settings:
        raise SystemExit(f"{args.out} holds results for other settings; choose another --out")
    have = {(it["seed"], it["inputs"], it["model"]) for it in done["items"]}
    baseline = _baseline(args.baseline, settings) if args.baseline else {}
    for i in range(args.first, args.first + args.scenes):
        for n in counts:
            for model in args.models.split(","):
                seed = HELD_OUT_SEED + i
                if (seed, n, model) in have:
                    continue
                reuse = baseline.get((seed, n, model))
                item = run_item(seed, n, views, model, args, compare=args.compare and reuse is None)
                if reuse is not None:  # the fit without the prior does not depend on the prior's settings
                    for key in ("heldout", "per_view"):
                        item[key] = {**item[key], "fit_no_prior": reuse[key]["fit_no_prior"]}
                    item["fit_no_prior_from"] = str(args.baseline)
                item["load"] = os.getloadavg()[0]
                done["items"].append(item)
                write_json(args.out, done)
                h = item["heldout"]
                print(f"scene {seed} N={n} {model}: " + "  ".join(f"{m} {v['psnr']:.2f}" for m, v in h.items())
                      + f"  ({item['fit_seconds']:.0f} s, load {item['load']:.1f})", flush=True)
    print(table(done["items"]))


if __name__ == "__main__":
    main()
