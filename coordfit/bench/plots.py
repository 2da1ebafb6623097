"""The report's figures (matplotlib, Agg backend): quality vs training time, speedup bars,
and a thumbnail grid of reconstructions with their quality."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.io import atomic_write
from .tables import PAPER_SPEEDUP, curves_name, find_fit, kind_metrics, thumbnails_name

__all__ = ["write_plots"]

_MAX_PANELS = 6  # signals shown per kind in the curve and thumbnail figures


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    atomic_write(path, lambda p: fig.savefig(p, dpi=100, bbox_inches="tight"))
    _plt().close(fig)
    return path


def _curves(results: dict[str, Any], kind: str, signals: list[str], path: Path) -> Path:
    plt = _plt()
    shown = signals[:_MAX_PANELS]
    cols = min(3, len(shown))
    rows = -(-len(shown) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False, layout="constrained")
    target = results["suite"]["kinds"][kind]["target"]
    for ax, signal in zip(axes.flat, shown):
        for model in results["models"]:
            item = results["fits"].get(f"{signal}__{model}__equal_time")
            if not item or "error" in item or not item["curve"]:
                continue
            t = [c[1] for c in item["curve"]]
            q = [c[2] for c in item["curve"]]
            ax.plot(t, q, label=model, lw=1.4)
        ax.axhline(target, color="gray", ls=":", lw=1)
        ax.set_title(signal, fontsize=9)
        ax.set_xlabel("training seconds")
        q, unit, _ = kind_metrics(kind)
        ax.set_ylabel(f"training-batch {q}" + (f" ({unit})" if unit else ""))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"{kind}: quality vs training time (equal_time protocol)")
    return _save(fig, path)


def _speedups(results: dict[str, Any], kind: str, path: Path) -> Path:
    import numpy as np

    plt = _plt()
    s = results["summary"][kind]
    ci, cj = s["columns"].index("train speedup"), s["columns"].index("inference speedup")
    models = [r[0] for r in s["rows"]]
    train = [r[ci] or 0.0 for r in s["rows"]]
    infer = [r[cj] or 0.0 for r in s["rows"]]
    x = np.arange(len(models))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(models) + 2), 3.6))
    b1 = ax.bar(x - 0.2, train, 0.4, label="training (samples/s)")
    b2 = ax.bar(x + 0.2, infer, 0.4, label="inference (full grid)")
    ax.bar_label(b1, fmt="%.2f", fontsize=7)
    ax.bar_label(b2, fmt="%.2f", fontsize=7)
    ax.axhline(1.0, color="black", lw=0.8)
    ax.axhline(PAPER_SPEEDUP, color="tab:red", ls="--", lw=1, label=f"CoordX paper: up to {PAPER_SPEEDUP}x")
    ax.set_xticks(x, models, rotation=20, fontsize=8)
    ax.set_ylabel("speedup vs SIREN (x)")
    if max(train + infer + [1.0]) > 20:
        ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.set_title(f"{kind}: speedup relative to SIREN (measured side by side)")
    return _save(fig, path)


def _thumbnails(results: dict[str, Any], kind: str, signals: list[str], out: Path, path: Path) -> Path:
    import imageio.v3 as iio

    plt = _plt()
    shown = signals[:_MAX_PANELS]
    cols = ["target"] + results["models"]
    fig, axes = plt.subplots(len(shown), len(cols), figsize=(1.7 * len(cols), 1.9 * len(shown)), squeeze=False,
                             layout="constrained")
    q = kind_metrics(kind)[0]
    ks = results["suite"]["kinds"][kind]
    # equal time, the protocol the headline compares models at; reports made before it was
    # thumbnailed have only the equal_steps pictures (<signal>__<model>.png)
    timed = all((out / "thumbs" / f"{s}__{m}__equal_time.png").is_file() for s in shown for m in results["models"]
                if find_fit(results, s, m, "equal_time") is not None)
    protocol = "equal_time" if timed else "equal_steps"
    for r, signal in enumerate(shown):
        for c, model in enumerate(cols):
            ax = axes[r, c]
            ax.axis("off")
            tail = "__equal_time" if protocol == "equal_time" and model != "target" else ""
            thumb = out / "thumbs" / f"{signal}__{model}{tail}.png"
            if thumb.is_file():
                img = iio.imread(thumb)
                ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255)
            item = results["fits"].get(f"{signal}__{model}__{protocol}")
            value = item["metrics"].get(q) if item and "error" not in item else None
            label = model if value is None else f"{model}\n{q} {value:.2f}"
            ax.set_title(f"{signal}\ntarget" if model == "target" else label, fontsize=7)
    budget = f"{ks['seconds']:g} s of training each" if protocol == "equal_time" else f"{ks['steps']} steps each"
    fig.suptitle(f"{kind}: reconstructions after the {protocol} protocol ({budget})", fontsize=9)
    return _save(fig, path)


def write_plots(results: dict[str, Any], out: Path) -> list[Path]:
    """Write the PNG figures of every signal kind into ``out``; returns their paths."""
    paths = []
    for kind, s in results["summary"].items():
        paths.append(_curves(results, kind, s["signals"], out / curves_name(kind)))
        paths.append(_speedups(results, kind, out / f"speedup_{kind}.png"))
        paths.append(_thumbnails(results, kind, s["signals"], out, out / thumbnails_name(kind)))
    return paths
