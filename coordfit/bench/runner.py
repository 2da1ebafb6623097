"""Run a suite (or one shard of it) and save every measurement as it finishes.

Layout of a report folder::

    suite.json                       the suite definition (a --resume must match it)
    items/<signal>__<model>__<protocol>.json   one fit: metrics, curve, memory
    items/<signal>__timing.json      side-by-side timings of all models on that signal
    thumbs/<signal>__<model>.png     reconstruction thumbnails after equal steps (and __target.png);
                                     <signal>__<model>__equal_time.png after equal time
    runs/<signal>/<model>/<protocol>/  the fits' run folders (coordfit.load works on them)

Each item file is written atomically once its measurement is complete, so an
interrupted suite re-run with ``resume=True`` skips exactly what is done.
"""

from __future__ import annotations

import csv
import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._version import __version__
from ..api import fit, load
from ..core.device import device_settings, resolve_device
from ..core.errors import CoordfitError
from ..geometry.grid import axis_coords, evaluate_grid
from ..core.io import ensure_empty_dir, write_json
from ..models import create_model, model_entry
from ..core.progress import Progress
from ..engine.train import TrainConfig, Trainer
from .records import read_item, read_suite_file
from .config import ReportConfig
from .suite import (PROTOCOLS, ModelSpec, SignalSpec, Suite, build_suite, load_bench_signal, parse_shard,
                    resolve_model_options, shard_signals, with_budgets)
from .timing import PeakMemory, machine_info, time_interleaved

__all__ = ["run_report", "run_suite", "prepare_out", "item_path", "timing_path"]

_CURVE_POINTS = 200  # at most this many (seconds, quality) points kept per fit


def item_path(out: Path, signal: str, model: str, protocol: str) -> Path:
    return out / "items" / f"{signal}__{model}__{protocol}.json"


def timing_path(out: Path, signal: str) -> Path:
    return out / "items" / f"{signal}__timing.json"


def prepare_out(out: Path, suite: Suite, shard: tuple[int, int], resume: bool) -> None:
    """Create ``out`` (new or empty) or, with ``resume``, check it holds this suite and shard."""
    record = {"coordfit_version": __version__, "shard": list(shard), "suite": suite.to_dict()}
    if resume:
        if not (out / "suite.json").is_file():
            if out.exists() and any(out.iterdir()):
                raise CoordfitError(f"--resume {out}: not a report folder (no suite.json)")
            ensure_empty_dir(out)
        else:
            old = read_suite_file(out)
            if old.get("suite") != suite.to_dict() or old.get("shard") != list(shard):
                raise CoordfitError(f"--resume {out}: it holds another suite or shard; pass the same --suite/--data/--shard")
            return
    else:
        ensure_empty_dir(out)
    write_json(out / "suite.json", record)


def _read_curve(log: Path, quality: str) -> list[tuple[int, float, float]]:
    """``(step, seconds, quality)`` rows of a run's log.csv; ``quality`` names the signal's column."""
    with log.open() as f:
        rows = list(csv.DictReader(f))
    return [(int(r["step"]), float(r["seconds"]), float(r[quality])) for r in rows]


def _time_to_target(curve: list[tuple[int, float, float]], target: float) -> dict[str, Any]:
    for step, sec, q in curve:
        if q >= target:
            return {"target": target, "reached": True, "seconds": sec, "step": step}
    return {"target": target, "reached": False, "seconds": None, "step": None}


def _thin(curve: list[tuple[int, float, float]]) -> list[list[float]]:
    stride = max(1, math.ceil(len(curve) / _CURVE_POINTS))
    kept = curve[::stride]
    if curve and kept[-1] != curve[-1]:
        kept.append(curve[-1])
    return [[s, round(t, 4), round(q, 4)] for s, t, q in kept]


def _clean(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}


def _fit_item(spec: SignalSpec, signal: Any, mspec: ModelSpec, options: dict[str, Any], protocol: str,
              suite: Suite, out: Path, device: torch.device, threads: int | None) -> dict[str, Any]:
    ks = suite.settings(spec.kind)
    run_dir = out / "runs" / spec.id / mspec.label / protocol
    if run_dir.exists():  # a fit that was interrupted before its item was recorded: redo it
        shutil.rmtree(run_dir)
    train = TrainConfig(
        steps=ks.steps if protocol == "equal_steps" else 10**9,
        time_budget=None if protocol == "equal_steps" else ks.seconds,
        grid_batch=ks.grid_batch, batch_points=ks.batch_points, log_every=1, checkpoint_every=0,
        seed=suite.seed, device=str(device), threads=threads,
    )
    result = fit(signal, mspec.model, train=train, out=run_dir, progress=False, **options)
    if protocol == "equal_time":  # the report's thumbnails show the equal-time reconstructions
        _save_thumb(out / "thumbs" / f"{spec.id}__{mspec.label}__equal_time.png", _middle(result.model, spec.kind))
    curve = _read_curve(run_dir / "log.csv", signal.quality_name)
    m = result.metrics
    return {
        "signal": spec.id, "kind": spec.kind, "model": mspec.label, "registry_model": mspec.model,
        "protocol": protocol, "options": options, "params": int(m["params"]), "split": m.get("split"),
        "metrics": _clean({k: v for k, v in m.items() if k not in ("model", "split", "params")}),
        "steps": int(m["steps"]), "train_seconds": float(m["train_seconds"]),
        "quality": signal.quality_name, "time_to_target": _time_to_target(curve, ks.target),
        "curve": _thin(curve), "run_dir": str(run_dir.relative_to(out)),
    }


def _to_image01(grid: torch.Tensor, kind: str) -> np.ndarray:
    """A 2-D picture of a full-grid output ``[*shape, C]``: images as is, the middle slice
    of the leading axes otherwise; values mapped to [0, 1]."""
    x = grid.detach().float().cpu()
    while x.dim() > 3:
        x = x[x.shape[0] // 2]
    if x.shape[-1] not in (1, 3):
        x = x[..., :3] if x.shape[-1] > 3 else x[..., :1]
    if kind in ("image", "video"):
        x = (x.clamp(-1, 1) + 1) * 0.5
    else:
        lo, hi = float(x.min()), float(x.max())
        x = (x - lo) / (hi - lo) if hi > lo else torch.zeros_like(x)
    return x.numpy()


@torch.no_grad()
def _middle(model: torch.nn.Module, kind: str) -> np.ndarray:
    """:func:`_to_image01` of ``model``'s full-grid output, evaluating only the slice it shows
    (the middle of each leading axis)."""
    shape = model.info.shape
    coords = [axis_coords(n, next(model.parameters()).device) for n in shape]
    lead = len(shape) - 2
    for a in range(lead):
        coords[a] = coords[a][shape[a] // 2 :][:1]
    grid = evaluate_grid(model, coords)  # [1, ..., 1, H, W, C]
    return _to_image01(grid.reshape(grid.shape[lead:]), kind)


def _save_thumb(path: Path, img01: np.ndarray, size: int = 128) -> None:
    from skimage.transform import resize

    from ..signals.image import save_image

    h, w = img01.shape[:2]
    scale = min(1.0, size / max(h, w))
    if scale < 1.0:
        img01 = resize(img01, (max(1, round(h * scale)), max(1, round(w * scale)), img01.shape[2]), anti_aliasing=True)
    save_image(path, img01.astype(np.float32))


def _timing_item(spec: SignalSpec, signal: Any, fitted: dict[str, tuple[dict[str, Any], Path]], suite: Suite,
                 out: Path, device: torch.device) -> dict[str, Any]:
    """Side-by-side timings on one signal: training steps and full-grid inference, interleaved."""
    ks = suite.settings(spec.kind)
    coords = [axis_coords(n, device) for n in signal.info.shape]
    nets, trainers, record = {}, {}, {}
    for label, (item, run_dir) in fitted.items():
        net = load(out / run_dir, device=str(device)).model
        nets[label] = net
        torch.manual_seed(suite.seed)
        fresh = create_model(item["registry_model"], signal.info, **item["options"])
        cfg = TrainConfig(steps=10**9, grid_batch=ks.grid_batch, batch_points=ks.batch_points,
                          checkpoint_every=0, seed=suite.seed, device=str(device))
        trainers[label] = Trainer(fresh, signal, cfg)
        try:
            flops = float(net.flops_per_sample())
        except NotImplementedError:
            flops = None
        _, target = signal.sample(fresh.branches, trainers[label].budget, torch.Generator(device).manual_seed(0))
        samples = math.prod(target.shape[:-1])  # the whole grid when it fits the budget
        record[label] = {"params": net.num_params(), "flops_per_sample": flops, "samples_per_step": samples}
    infer = time_interleaved({k: (lambda n=n: evaluate_grid(n, coords)) for k, n in nets.items()},
                             device, suite.warmup, suite.repeats)
    step = time_interleaved({k: t.train_step for k, t in trainers.items()}, device, suite.warmup, suite.repeats)
    n_out = math.prod(signal.info.shape)
    method = "unavailable"
    for label, net in nets.items():
        with PeakMemory(device) as mem:
            trainers[label].train_step()
        r = record[label]
        r["train_peak_memory_bytes"] = mem.bytes
        with PeakMemory(device) as mem:
            grid = evaluate_grid(net, coords)
        method = mem.method
        _save_thumb(out / "thumbs" / f"{spec.id}__{label}.png", _to_image01(grid, spec.kind))
        r["inference_seconds"] = infer[label].to_dict()
        r["inference_samples_per_s"] = n_out / infer[label].median
        r["inference_peak_memory_bytes"] = mem.bytes
        r["train_step_seconds"] = step[label].to_dict()
        r["train_samples_per_s"] = r["samples_per_step"] / step[label].median
    values = getattr(signal, "values", getattr(signal, "labels", None))  # grid signals; shapes' lattice labels
    if isinstance(values, torch.Tensor):
        _save_thumb(out / "thumbs" / f"{spec.id}__target.png", _to_image01(values, spec.kind))
    return {"signal": spec.id, "kind": spec.kind, "shape": list(signal.info.shape), "outputs": n_out,
            "machine": machine_info(device), "memory_method": method,
            "models": record}


class _Units:
    """Counts the suite's units of work into a :class:`~coordfit.core.progress.Progress`."""

    def __init__(self, bar: Progress) -> None:
        self.bar, self.done, self.what, self.t0 = bar, 0, "", time.perf_counter()

    def describe(self, text: str) -> None:
        self.what = text
        self.bar.update(self.done, time.perf_counter() - self.t0, now=text)

    def advance(self) -> None:
        self.done += 1
        self.bar.update(self.done, time.perf_counter() - self.t0, now=self.what)


def run_report(cfg: ReportConfig, out: str | Path, resume: bool = False, progress: bool | None = None) -> Path:
    """Run the suite ``cfg`` names (its budgets overridden where ``cfg`` says), the shard it
    names, into ``out``, and write the report; returns the path of ``report.md``."""
    if resume and out is None:
        raise CoordfitError("--resume needs --out DIR (the folder of the interrupted run)")
    plan = with_budgets(build_suite(cfg.suite, cfg.data, cfg.device), cfg.steps, cfg.seconds, cfg.repeats)
    return run_suite(plan, out, parse_shard(cfg.shard), resume=resume, progress=progress, threads=cfg.threads)


def run_suite(suite: Suite, out: str | Path, shard: tuple[int, int] = (1, 1), resume: bool = False,
              progress: bool | None = None, threads: int | None = None) -> Path:
    """Measure every signal of shard ``I/N`` of ``suite`` into ``out``, then write the report.

    Returns the path of ``report.md``. ``resume`` continues an interrupted run in ``out``.
    """
    from .report import write_report

    out = Path(out)
    device = resolve_device(suite.device)
    for mspec in suite.models:  # a typo in the suite's model options stops here, not as a failed row per signal
        model_entry(mspec.model).make_config(**mspec.options)
    prepare_out(out, suite, shard, resume)
    signals = shard_signals(suite, shard)
    if not signals:
        raise CoordfitError(f"shard {shard[0]}/{shard[1]} holds no signals (the suite has {len(suite.signals)})")
    units = len(signals) * (len(suite.models) * len(PROTOCOLS) + 1)
    with device_settings(device, "fp32", threads), Progress("report", steps=units, enabled=progress, unit="item") as bar:
        counter = _Units(bar)
        for spec in signals:
            _run_signal(spec, suite, out, device, threads, counter)
    return write_report(out)


def _run_signal(spec: SignalSpec, suite: Suite, out: Path, device: torch.device, threads: int | None,
                bar: _Units) -> None:
    signal = None
    fitted: dict[str, tuple[dict[str, Any], Path]] = {}
    ks = suite.settings(spec.kind)
    for mspec in suite.models:
        for protocol in PROTOCOLS:
            path = item_path(out, spec.id, mspec.label, protocol)
            bar.describe(f"{spec.id} {mspec.label} {protocol}")
            if not path.is_file():
                if signal is None:
                    signal = load_bench_signal(spec)
                t0 = time.perf_counter()
                try:
                    options = resolve_model_options(mspec, signal.info, ks.width)
                    item = _fit_item(spec, signal, mspec, options, protocol, suite, out, device, threads)
                except CoordfitError as exc:  # a model that cannot take this signal: recorded, not fatal
                    item = {"signal": spec.id, "kind": spec.kind, "model": mspec.label, "protocol": protocol,
                            "error": str(exc)}
                item["wall_seconds"] = round(time.perf_counter() - t0, 3)
                write_json(path, item)
            item = read_item(path)
            if protocol == "equal_steps" and "error" not in item:
                fitted[mspec.label] = (item, Path(item["run_dir"]))
            bar.advance()
    tpath = timing_path(out, spec.id)
    bar.describe(f"{spec.id} side-by-side timing")
    if not tpath.is_file() and fitted:
        if signal is None:
            signal = load_bench_signal(spec)
        write_json(tpath, _timing_item(spec, signal.to(device), fitted, suite, out, device))
    bar.advance()
