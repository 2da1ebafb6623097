"""The report's numbers as tables: the headline rows of each signal kind (:func:`summarize`),
every measurement of one signal (:func:`signal_table`), the machine lines, and how a value
is written (:func:`fmt`). ``report.md`` (:mod:`.report`), ``report.html`` (:mod:`.html`)
and the plots (:mod:`.plots`) format these; none computes a number of its own.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

__all__ = ["PAPER_SPEEDUP", "kind_metrics", "curves_name", "thumbnails_name", "find_fit", "summarize", "fmt",
           "md_table", "signal_table", "machine_lines"]

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


def thumbnails_name(kind: str) -> str:
    """File name of a kind's thumbnail grid (reconstructions after the equal_time protocol)."""
    return f"thumbnails_{kind}.png"


def find_fit(results: dict[str, Any], signal: str, model: str, protocol: str) -> dict[str, Any] | None:
    """The fit item of ``signal`` x ``model`` x ``protocol``; None when it is missing or failed."""
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
        columns = ["model", "params (median)", f"{q1} @{ks['steps']} steps", f"seconds for {ks['steps']} steps",
                   f"{q1} @{ks['seconds']:g} s", f"steps in {ks['seconds']:g} s", f"{q2} @{ks['seconds']:g} s",
                   f"reached {ks['target']:g} {unit}".rstrip(), "train speedup", "inference speedup", "paper (CoordX)"]
        rows = []
        for model in results["models"]:
            steps = [find_fit(results, s, model, "equal_steps") for s in signals]
            times = [find_fit(results, s, model, "equal_time") for s in signals]
            if not any(steps) and not any(times):
                continue
            params = [f["params"] for f in steps + times if f]
            reached = [f["time_to_target"] for f in times if f]
            sp = [_speedups(results, s, model) for s in signals]
            rows.append([
                model,
                int(statistics.median(params)) if params else None,
                _mean([f["metrics"].get(q1) for f in steps if f]),
                _mean([f["train_seconds"] for f in steps if f]),
                _mean([f["metrics"].get(q1) for f in times if f]),
                _mean([f["steps"] for f in times if f]),
                _mean([f["metrics"].get(q2) for f in times if f]),
                f"{sum(r['reached'] for r in reached)}/{len(reached)}",
                _geomean([a for a, _ in sp]),
                _geomean([b for _, b in sp]),
                f"up to {PAPER_SPEEDUP}x" if registered.get(model) == PAPER_MODEL else None,
            ])
        summary[kind] = {"signals": signals, "columns": columns, "rows": rows,
                         "notes": [_budget_note(ks, q1, unit), *_params_note(rows, registered)]}
    return summary


def _budget_note(ks: dict[str, Any], quality: str, unit: str) -> str:
    """What each protocol gave every model, said beside the table it fills."""
    return (f"Budgets: equal_steps gave every model {ks['steps']} optimiser steps (the seconds they took are in "
            f"the table); equal_time gave every model {ks['seconds']:g} s of training (the steps that bought are in "
            f"the table), so a model slow per step can lead at {ks['steps']} steps and trail at {ks['seconds']:g} s. "
            f"'reached' counts the signals whose training-batch {quality.upper()} reached {ks['target']:g} "
            f"{unit}".rstrip() + " within the equal_time budget.")


def _params_note(rows: list[list[Any]], registered: dict[str, str], within: float = 0.05) -> list[str]:
    """How each model's parameter count compares with SIREN's (the rows' medians)."""
    counts = {r[0]: r[1] for r in rows if r[1]}
    if BASELINE not in counts:
        return []
    base = counts[BASELINE]
    matched = [m for m, n in counts.items() if m != BASELINE and abs(n / base - 1) <= within]
    other = [m for m in counts if m != BASELINE and m not in matched]
    text = f"Parameters: SIREN has {base:,}"
    if matched:
        text += f"; {', '.join(matched)} within {within:.0%} of it (matched)"
    if other:
        grid = all(_is_grid(registered.get(m, m)) for m in other)
        why = "grid models run at their own defaults, not matched" if grid else "not matched"
        text += f"; {', '.join(f'{m} {counts[m] / base:.2g}x' for m in other)} of it ({why})"
    return [text + "."]


def _is_grid(model: str) -> bool:
    from ..core.errors import CoordfitError
    from ..models import model_entry

    try:
        return bool(model_entry(model).grid)
    except CoordfitError:
        return False


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
    if column.startswith("steps"):
        return f"{value:,.0f}"
    if column.startswith(("ssim", "iou")):
        return f"{value:.4f}"
    if column.startswith("chamfer"):
        return f"{value:.5f}"
    return f"{value:.2f}"


def md_table(columns: list[str], rows: list[list[Any]]) -> str:
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
        a, b = find_fit(results, signal, model, "equal_steps"), find_fit(results, signal, model, "equal_time")
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


def machine_lines(results: dict[str, Any]) -> list[str]:
    lines = []
    for m in results["machines"]:
        lines.append(f"{m['cpu']} ({m['cpu_cores']} cores, torch {m['torch']} with {m['torch_threads']} threads, "
                     f"device {m['device']}{', ' + m['gpu'] if 'gpu' in m else ''}; host {m['host']}, "
                     f"1-min load average {_load_range(m.get('load_averages', []))})")
    return lines
