"""Turn a folder of measurements into ``results.json``, ``report.md``, ``report.html`` and
plots; merge the folders of several shards into one report.

Every number in the tables comes from ``results.json``: the headline rows are computed
once (:func:`.tables.summarize`) and the Markdown and HTML only format them.
"""

from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .._version import __version__
from ..core.errors import CoordfitError
from ..core.io import atomic_write, ensure_empty_dir, write_json
from .records import read_item, read_suite_file
from .suite import Suite
from .tables import curves_name, machine_lines, md_table, signal_table, summarize, thumbnails_name

__all__ = ["collect_results", "render_markdown", "write_report", "merge_reports"]


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
            "equal_steps": "the same optimiser steps for every model; the MLPs at about SIREN's parameter count, "
                           "the grid models at their own defaults, as each table states",
            "equal_time": "the same models, the same seconds of training by the trainer's own clock",
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


def render_markdown(results: dict[str, Any]) -> str:
    suite = results["suite"]
    out = [f"# coordfit speedup report: suite `{suite['name']}`", "",
           f"coordfit {results['coordfit_version']}, written {results['created']}.", ""]
    out += ["Measured on:", ""] + [f"- {line}" for line in machine_lines(results)] + [""]
    out += ["Protocols: **equal_steps** (" + results["protocols"]["equal_steps"] + ") and **equal_time** ("
            + results["protocols"]["equal_time"] + "). Timing: " + results["protocols"]["timing"]
            + ". Speedups are relative to SIREN (training: samples per second; inference: the full grid), "
            "geometric means over the signals; the paper's figure is its best case, quoted beside ours. "
            "See docs/benchmarks.md.", ""]
    for kind, s in results["summary"].items():
        out += [f"## {kind} ({len(s['signals'])} signal{'s' if len(s['signals']) != 1 else ''})", "",
                md_table(s["columns"], s["rows"]), "", *(x for note in s.get("notes", []) for x in (note, "")),
                f"![quality vs time]({curves_name(kind)})", "", f"![speedups](speedup_{kind}.png)", "",
                f"![reconstructions after equal time]({thumbnails_name(kind)})", ""]
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
