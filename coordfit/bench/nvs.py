"""``coordfit nvs bench``: how much the efficient pieces save, measured in one process.

Three tables, timed with coordfit's one timing protocol (:mod:`coordfit.bench.timing`:
one warm-up call, then the median of ``repeats`` calls, synchronising the device around
each, the repeats of the variants compared in a row interleaved):

* ``inference``: render ``targets`` views from V input views, lvsm (2 x depth layers)
  vs efficient-lvsm (depth + depth layers) at the same width: equal layer count, as in
  the papers' 24 vs 12 + 12 comparison.
* ``add_one_view``: V views are known, one more arrives, re-render the targets:
  efficient-lvsm with its KV cache (``add_views`` + ``render``) vs recomputing
  efficient-lvsm from scratch vs recomputing lvsm.
* ``attention``: one attention call (2 heads of 64 channels, tokens on one square grid)
  with full attention (SDPA, and the explicit softmax matrix for reference) vs QuadTree
  A and B; time and peak memory above what the inputs already hold
  (:class:`coordfit.bench.timing.PeakMemory`: ``max_memory_allocated`` on CUDA, the
  resident-set high-water mark on Linux CPUs), on the CPU in a fresh process per row so
  earlier rows' freed memory cannot hide in the allocator.
"""

from __future__ import annotations

import gc
import math
import multiprocessing as mp
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from .config import BenchConfig as BenchConfig
from .timing import PeakMemory, machine_info, time_call, time_interleaved
from ..core.io import write_json
from ..nvs.attention import full_attention, quadtree_attention
from ..nvs.layers import NVSConfig
from ..nvs.procedural import ProceduralConfig, make_scene
from ..nvs.registry import create_model

__all__ = ["BenchConfig", "run_bench", "format_tables"]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _views(n: int, size: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    s = make_scene(0, ProceduralConfig(size=size, views=n))
    return tuple(t[None].to(device) for t in (s.images, s.c2w, s.fxfycxcy))


@torch.no_grad()
def _model_tables(cfg: BenchConfig, device: torch.device, log: Callable[[str], None]) -> tuple[list, list]:
    base = dict(width=cfg.width, head_dim=cfg.head_dim, patch=cfg.patch)
    torch.manual_seed(0)
    eff = create_model("efficient-lvsm", NVSConfig(**base, depth=cfg.depth)).to(device).eval()
    lvsm = create_model("lvsm", NVSConfig(**base, depth=2 * cfg.depth)).to(device).eval()
    most = max(cfg.views) + 1
    imgs, c2w, k = _views(most + cfg.targets, cfg.size, device)
    tc, tk = c2w[:, most:], k[:, most:]
    inference, add_one = [], []
    for v in cfg.views:
        stats = time_interleaved({
            "lvsm": lambda v=v: lvsm(imgs[:, :v], c2w[:, :v], k[:, :v], tc, tk),
            "efficient": lambda v=v: eff(imgs[:, :v], c2w[:, :v], k[:, :v], tc, tk),
        }, device, warmup=1, repeats=cfg.repeats)
        ms_l, ms_e = _ms(stats["lvsm"].median), _ms(stats["efficient"].median)
        inference.append({"views": v, "lvsm_ms": ms_l, "efficient_lvsm_ms": ms_e, "speedup": round(ms_l / ms_e, 2)})
        log(f"inference  {v:>3} views: lvsm {ms_l:9.1f} ms  efficient {ms_e:8.1f} ms  x{ms_l / ms_e:.2f}")

        cache = eff.add_views(None, imgs[:, :v], c2w[:, :v], k[:, :v])
        new = (imgs[:, v : v + 1], c2w[:, v : v + 1], k[:, v : v + 1])
        stats = time_interleaved({
            "cache": lambda cache=cache, new=new: eff.render(eff.add_views(cache, *new), tc, tk),
            "efficient": lambda v=v: eff(imgs[:, : v + 1], c2w[:, : v + 1], k[:, : v + 1], tc, tk),
            "lvsm": lambda v=v: lvsm(imgs[:, : v + 1], c2w[:, : v + 1], k[:, : v + 1], tc, tk),
        }, device, warmup=1, repeats=cfg.repeats)
        ms_c, ms_r, ms_lv = (_ms(stats[name].median) for name in ("cache", "efficient", "lvsm"))
        add_one.append({"views": v, "kv_cache_ms": ms_c, "efficient_recompute_ms": ms_r,
                        "lvsm_recompute_ms": ms_lv, "speedup_vs_recompute": round(ms_r / ms_c, 2),
                        "speedup_vs_lvsm": round(ms_lv / ms_c, 2)})
        log(f"add 1 view {v:>3} -> {v + 1:>3}: cache {ms_c:8.1f} ms  recompute {ms_r:8.1f} ms  "
            f"lvsm {ms_lv:9.1f} ms  x{ms_r / ms_c:.2f} / x{ms_lv / ms_c:.2f}")
    return inference, add_one


def _attention_row(kind: str, n: int, cfg: BenchConfig, device_name: str, threads: int) -> dict[str, Any]:
    """One attention measurement (run in a fresh process on CPU so peak memory is its own)."""
    torch.set_num_threads(threads)
    device = torch.device(device_name)
    side = int(math.isqrt(n))
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, side * side, cfg.head_dim, generator=g).to(device) for _ in range(3))
    halvings = (side & -side).bit_length() - 1  # times the side halves evenly
    levels = min(cfg.quadtree_levels, halvings + 1)
    topk = cfg.quadtree_topk[: levels - 1]

    def call() -> torch.Tensor:
        with torch.no_grad():
            if kind == "full":
                return full_attention(q, k, v)
            if kind == "full-matrix":
                return (q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5).softmax(-1) @ v
            return quadtree_attention(q, k, v, (side, side), levels, topk, variant=kind[-1])

    gc.collect()  # earlier rows' garbage (without --isolate) must not count
    with PeakMemory(device) as peak:
        call()
    ms = _ms(time_call(call, device, warmup=1, repeats=cfg.repeats).median)
    peak_mib = round(peak.bytes / 2**20, 1) if peak.bytes is not None else None
    return {"tokens": side * side, "kind": kind, "ms": ms, "peak_mib": peak_mib,
            "levels": levels if "quadtree" in kind else 1, "topk": topk if "quadtree" in kind else None}


def _attention_table(cfg: BenchConfig, device: torch.device, log: Callable[[str], None]) -> list[dict[str, Any]]:
    rows = []
    kinds = ["full", "full-matrix", "quadtree-a", "quadtree-b"]
    threads = torch.get_num_threads()
    ctx = mp.get_context("spawn")
    for n in cfg.tokens:
        for kind in kinds:
            if device.type == "cpu" and cfg.isolate:
                with ctx.Pool(1) as pool:
                    row = pool.apply(_attention_row, (kind, n, cfg, "cpu", threads))
            else:
                row = _attention_row(kind, n, cfg, str(device), threads)
            rows.append(row)
            log(f"attention {row['tokens']:>6} tokens {kind:<12} {row['ms']:9.1f} ms  peak {row['peak_mib']} MiB")
    return rows


def run_bench(
    cfg: BenchConfig, device: torch.device, out: str | Path | None = None, log: Callable[[str], None] = print,
    progress: bool | None = False,
) -> dict[str, Any]:
    """Run all three tables; write them to ``out`` (JSON) if given and return them. ``log``
    gets a line per row as it is measured; ``progress`` shows the rows done against all of
    them (:class:`coordfit.core.progress.Progress`; None: a bar on a terminal, a line every
    few seconds elsewhere)."""
    from ..core.progress import Progress

    total = 2 * len(cfg.views) + 4 * len(cfg.tokens)  # model rows (inference, add one view), attention rows
    log(f"timing {total} rows on {device}: lvsm vs efficient-lvsm at {', '.join(map(str, cfg.views))} input views, "
        f"attention at {', '.join(map(str, cfg.tokens))} tokens" + (" (a fresh process per attention row)"
                                                                   if device.type == "cpu" and cfg.isolate else ""))
    t0 = time.perf_counter()
    with Progress("bench", steps=total, enabled=progress, unit="row") as bar:
        done = 0

        def row(text: str) -> None:
            nonlocal done
            done += 1
            log(text)
            bar.update(done, time.perf_counter() - t0)

        inference, add_one = _model_tables(cfg, device, row)
        attention = _attention_table(cfg, device, row)
    result = {
        "machine": machine_info(device),
        "config": asdict(cfg),
        "seconds": round(time.perf_counter() - t0, 1),
        "inference": inference,
        "add_one_view": add_one,
        "attention": attention,
    }
    if out is not None:
        write_json(out, result)
    return result


def format_tables(result: dict[str, Any]) -> str:
    """The three tables as Markdown."""
    lines = ["| input views | lvsm ms | efficient-lvsm ms | speed-up |", "|---:|---:|---:|---:|"]
    lines += [f"| {r['views']} | {r['lvsm_ms']} | {r['efficient_lvsm_ms']} | {r['speedup']}x |"
              for r in result["inference"]]
    lines += ["", "| views before | KV cache ms | efficient recompute ms | lvsm recompute ms | vs recompute | vs lvsm |",
              "|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['views']} | {r['kv_cache_ms']} | {r['efficient_recompute_ms']} | {r['lvsm_recompute_ms']} | "
              f"{r['speedup_vs_recompute']}x | {r['speedup_vs_lvsm']}x |" for r in result["add_one_view"]]
    lines += ["", "| tokens | attention | ms | peak MiB |", "|---:|---|---:|---:|"]
    lines += [f"| {r['tokens']} | {r['kind']} | {r['ms']} | {'n/a' if r['peak_mib'] is None else r['peak_mib']} |"
              for r in result["attention"]]
    return "\n".join(lines)
