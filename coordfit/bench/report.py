"""Turn a folder of measurements into ``results.json``, ``report.md``, ``report.html`` and
plots; merge the folders of several shards into one report.

Every number in the tables comes from ``results.json``: the headline rows are computed
once (:func:`summarize`) and the Markdown and HTML only format them.
"""

from __future__ import annotations

import math
import shutil
import statistics
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .._version import __version__
from ..core.errors import CoordfitError
from ..core.io import atomic_write, ensure_empty_dir, write_json
from .records import read_item, read_suite_file
from .suite import PROTOCOLS, Suite

__all__ = ["collect_results", "summarize", "write_report", "merge_reports", "PAPER_SPEEDUP"]

PAPER_SPEEDUP = 2.92  # CoordX abstract: "up to 2.92x" faster than the baseline MLP
PAPER_MODEL = "coordx"  # the registered model the paper's figure is quoted beside (every variant of it)
BASELINE = "siren"


def kind_metrics(kind: str) -> tuple[str, str, str]:
    """``(quality, unit, second metric)`` of a signal kind, from its signal class (PSNR dB and
    SSIM for images and video, IoU and chamfer L1 for shapes)."""
    from ..signals import signal_class

    cls = signal_class(kind)
    second = next((m for m in cls.summary_metrics if m != cls.quality_name), cls.quality_name)
    return cls.quality_name, cls.quality_unit, second


def curves_name(kind: str) -> str:
    """File name of a kind's quality-vs-time plot, e.g. ``psnr_vs_time_image.png``."""
    return f"{kind_metrics(kind)[0]}_vs_time_{kind}.png"


# -- collecting ----------------------------------------------------------------------
def collect_results(out: str | Path) -> dict[str, Any]:
    """Read ``suite.json`` and ``items/*.json`` of a report folder into one results dict."""
    out = Path(out)
    meta = read_suite_file(out)
    suite = Suite.from_dict(meta["suite"])
    fits: dict[str, dict[str, Any]] = {}
    timings: dict[str, dict[str, Any]] = {}
    for path, item in _read_items(out, suite):
        if path.stem.endswith("__timing"):
            timings[item["signal"]] = item
        else:
            fits[path.stem] = item
    order = {s.id: j for j, s in enumerate(suite.signals)}
    signals = sorted({f["signal"] for f in fits.values()}, key=lambda s: order.get(s, len(order)))
    machines: list[dict[str, Any]] = []  # one entry per machine; the load averages seen on it
    for t in timings.values():
        m = {k: v for k, v in t["machine"].items() if k != "load_average"}
        same = next((x for x in machines if {k: v for k, v in x.items() if k != "load_averages"} == m), None)
        if same is None:
            same = {**m, "load_averages": []}
            machines.append(same)
        if "load_average" in t["machine"]:
            same["load_averages"].append(t["machine"]["load_average"])
    results = {
        "coordfit_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "suite": meta["suite"],
        "shards": meta.get("shards", [meta.get("shard", [1, 1])]),
        "machines": machines,
        "protocols": {
            "equal_steps": "every model at about SIREN's parameter count, the same optimiser steps",
            "equal_time": "the same models, the same seconds of training (the trainer's own clock)",
            "timing": "warm-up, synchronise on GPU, repeats interleaved across models, median [min-max]; "
                      "ratios only between models timed side by side in one process",
        },
        "signals": signals,
        "models": [m["label"] for m in meta["suite"]["models"]],
        "fits": fits,
        "timings": timings,
    }
    results["summary"] = summarize(results)
    return results


def _read_items(folder: Path, suite: Suite) -> list[tuple[Path, dict[str, Any]]]:
    """Every ``items/*.json`` of a report folder, checked (:func:`~.records.read_item`)."""
    items = []
    for path in sorted((folder / "items").glob("*.json")):
        item = read_item(path)
        if item["kind"] not in suite.kinds:
            raise CoordfitError(f"{path}: kind {item['kind']!r} is not one of the suite's ({', '.join(suite.kinds)})")
        items.append((path, item))
    return items


def _fit(results: dict[str, Any], signal: str, model: str, protocol: str) -> dict[str, Any] | None:
    item = results["fits"].get(f"{signal}__{model}__{protocol}")
    return None if item is None or "error" in item else item


def _geomean(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None and x > 0 and math.isfinite(x)]
    return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else None


def _mean(xs: list[Any]) -> float | None:
    xs = [x for x in xs if isinstance(x, int | float) and math.isfinite(x)]
    return statistics.fmean(xs) if xs else None


def _speedups(results: dict[str, Any], signal: str, model: str) -> tuple[float | None, float | None]:
    """(training, inference) speedup of ``model`` over SIREN on one signal, same process."""
    t = results["timings"].get(signal, {}).get("models", {})
    if model not in t or BASELINE not in t:
        return None, None
    train = t[model]["train_samples_per_s"] / t[BASELINE]["train_samples_per_s"]
    infer = t[BASELINE]["inference_seconds"]["median"] / t[model]["inference_seconds"]["median"]
    return train, infer


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """Headline rows per signal kind (qualities as means over signals, parameters as their
    median, speedups as geometric means)."""
    suite = results["suite"]
    by_kind: dict[str, list[str]] = {}
    for s in results["signals"]:
        kind = next(f["kind"] for f in results["fits"].values() if f["signal"] == s)
        by_kind.setdefault(kind, []).append(s)
    registered = {m["label"]: m["model"] for m in suite["models"]}  # report label -> registry name
    summary: dict[str, Any] = {}
    for kind, signals in by_kind.items():
        ks = suite["kinds"][kind]
        q1, unit, q2 = kind_metrics(kind)
        # parameters vary with the grid size (CoordX branches, hash tables): the median over the signals
        columns = ["model", "params (median)", f"{q1} @{ks['steps']} steps", f"{q1} @{ks['seconds']:g} s",
                   f"{q2} @{ks['seconds']:g} s", f"reached {ks['target']:g} {unit}".rstrip(),
                   "train speedup", "inference speedup", "paper (CoordX)"]
        rows = []
        for model in results["models"]:
            steps = [_fit(results, s, model, "equal_steps") for s in signals]
            times = [_fit(results, s, model, "equal_time") for s in signals]
            if not any(steps) and not any(times):
                continue
            params = [f["params"] for f in steps + times if f]
            reached = [f["time_to_target"] for f in times if f]
            sp = [_speedups(results, s, model) for s in signals]
            rows.append([
                model,
                int(statistics.median(params)) if params else None,
                _mean([f["metrics"].get(q1) for f in steps if f]),
                _mean([f["metrics"].get(q1) for f in times if f]),
                _mean([f["metrics"].get(q2) for f in times if f]),
                f"{sum(r['reached'] for r in reached)}/{len(reached)}",
                _geomean([a for a, _ in sp]),
                _geomean([b for _, b in sp]),
                f"up to {PAPER_SPEEDUP}x" if registered.get(model) == PAPER_MODEL else None,
            ])
        summary[kind] = {"signals": signals, "columns": columns, "rows": rows}
    return summary


# -- formatting ----------------------------------------------------------------------
def fmt(value: Any, column: str = "") -> str:
    """How a value appears in the Markdown and HTML tables."""
    if value is None:
        return "-"
    if isinstance(value, bool) or isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if "speedup" in column:
        return f"{value:.2f}x"
    if column.startswith(("ssim", "iou")):
        return f"{value:.4f}"
    if column.startswith("chamfer"):
        return f"{value:.5f}"
    return f"{value:.2f}"


def _md_table(columns: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(fmt(v, c) for v, c in zip(row, columns)) + " |" for row in rows]
    return "\n".join(lines)


def _ms(stat: dict[str, float]) -> str:
    return f"{stat['median'] * 1e3:.1f} [{stat['min'] * 1e3:.1f}-{stat['max'] * 1e3:.1f}]"


def _mb(b: int | None) -> str:
    return "-" if b is None else f"{b / 2**20:.1f}"


def signal_table(results: dict[str, Any], signal: str) -> tuple[list[str], list[list[str]]]:
    """Every measurement on one signal, formatted (for the detail sections)."""
    t = results["timings"].get(signal, {}).get("models", {})
    columns = ["model", "params", "FLOPs/sample", "quality @steps", "quality @time", "train samples/s",
               "train step ms", "inference ms", "train peak MB", "inference peak MB", "time to target s"]
    rows = []
    for model in results["models"]:
        a, b = _fit(results, signal, model, "equal_steps"), _fit(results, signal, model, "equal_time")
        err = results["fits"].get(f"{signal}__{model}__equal_steps", {}).get("error")
        if a is None and b is None:
            if err:
                rows.append([model, "failed: " + err] + ["-"] * (len(columns) - 2))
            continue
        q = kind_metrics(a["kind"] if a else b["kind"])[0]
        tm = t.get(model, {})
        tt = b["time_to_target"] if b else None
        rows.append([
            model, fmt(a["params"] if a else b["params"]),
            f"{tm['flops_per_sample']:,.0f}" if tm.get("flops_per_sample") is not None else "-",
            fmt(a["metrics"].get(q), q) if a else "-", fmt(b["metrics"].get(q), q) if b else "-",
            f"{tm['train_samples_per_s']:,.0f}" if tm else "-",
            _ms(tm["train_step_seconds"]) if tm else "-", _ms(tm["inference_seconds"]) if tm else "-",
            _mb(tm.get("train_peak_memory_bytes")) if tm else "-", _mb(tm.get("inference_peak_memory_bytes")) if tm else "-",
            (f"{tt['seconds']:.2f}" if tt["reached"] else "not reached") if tt else "-",
        ])
    return columns, rows


def _load_range(loads: list[list[float]]) -> str:
    ones = [x[0] for x in loads]
    if not ones:
        return "?"
    return f"{min(ones):.2f}" if min(ones) == max(ones) else f"{min(ones):.2f}-{max(ones):.2f}"


def _machine_lines(results: dict[str, Any]) -> list[str]:
    lines = []
    for m in results["machines"]:
        lines.append(f"{m['cpu']} ({m['cpu_cores']} cores, torch {m['torch']} with {m['torch_threads']} threads, "
                     f"device {m['device']}{', ' + m['gpu'] if 'gpu' in m else ''}; host {m['host']}, "
                     f"1-min load average {_load_range(m.get('load_averages', []))})")
    return lines


def render_markdown(results: dict[str, Any]) -> str:
    suite = results["suite"]
    out = [f"# coordfit speedup report: suite `{suite['name']}`", "",
           f"coordfit {results['coordfit_version']}, written {results['created']}.", ""]
    out += ["Measured on:", ""] + [f"- {line}" for line in _machine_lines(results)] + [""]
    out += ["Protocols: **equal_steps** (" + results["protocols"]["equal_steps"] + ") and **equal_time** ("
            + results["protocols"]["equal_time"] + "). Timing: " + results["protocols"]["timing"]
            + ". Speedups are relative to SIREN (training: samples per second; inference: the full grid), "
            "geometric means over the signals; the paper's figure is its best case, quoted beside ours. "
            "See docs/benchmarks.md.", ""]
    for kind, s in results["summary"].items():
        out += [f"## {kind} ({len(s['signals'])} signal{'s' if len(s['signals']) != 1 else ''})", "",
                _md_table(s["columns"], s["rows"]), "",
                f"![quality vs time]({curves_name(kind)})", "", f"![speedups](speedup_{kind}.png)", "",
                f"![reconstructions](thumbnails_{kind}.png)", ""]
    out += ["## Every signal", ""]
    for signal in results["signals"]:
        t = results["timings"].get(signal)
        shape = "x".join(map(str, t["shape"])) if t else "?"
        out += [f"### {signal} ({shape})", ""]
        cols, rows = signal_table(results, signal)
        out += ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in rows] + [""]
    return "\n".join(out)


def write_report(out: str | Path) -> Path:
    """(Re)write results.json, report.md, report.html and the plots of a report folder."""
    from .html import render_html
    from .plots import write_plots

    out = Path(out)
    results = collect_results(out)
    if not results["fits"]:
        raise CoordfitError(f"{out} holds no measurements yet")
    write_json(out / "results.json", results)
    plots = write_plots(results, out)
    md = render_markdown(results)
    atomic_write(out / "report.md", lambda p: p.write_text(md + "\n"))
    page = render_html(results, plots)
    atomic_write(out / "report.html", lambda p: p.write_text(page))
    return out / "report.md"


# -- merging -------------------------------------------------------------------------
def merge_reports(dirs: list[str | Path], out: str | Path) -> Path:
    """Combine the folders of several shards (same suite) into one report in ``out``."""
    if not dirs:
        raise CoordfitError("merge needs at least one report folder")
    metas = []
    for d in map(Path, dirs):
        if not (d / "suite.json").is_file():
            raise CoordfitError(f"{d} is not a report folder (no suite.json)")
        metas.append(read_suite_file(d))
        _read_items(d, Suite.from_dict(metas[-1]["suite"]))  # every measurement readable before anything is written
    suite = metas[0]["suite"]
    for d, m in zip(dirs, metas):
        if m["suite"] != suite:
            raise CoordfitError(f"{d} holds another suite than {dirs[0]}; only shards of one suite merge")
    out = ensure_empty_dir(out, resumable=False)  # merge has no --resume
    shards = [s for m in metas for s in m.get("shards", [m.get("shard", [1, 1])])]
    for sub in ("items", "thumbs"):
        (out / sub).mkdir()
        for d in map(Path, dirs):
            for f in sorted((d / sub).glob("*")) if (d / sub).is_dir() else []:
                if (out / sub / f.name).exists():
                    raise CoordfitError(f"{f.name} is in more than one folder; merge each shard once")
                shutil.copy2(f, out / sub / f.name)
    write_json(out / "suite.json", {"coordfit_version": __version__, "shards": sorted(shards),
                                    "merged_from": [str(Path(d).resolve()) for d in dirs], "suite": suite})
    return write_report(out)
