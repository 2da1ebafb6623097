"""A run's training curves: ``log.csv`` read back, and drawn as ``curves.png``.

``log.csv`` (written by :class:`coordfit.engine.train.Trainer`) has one row every
``log_every`` steps: ``step, seconds, loss, <quality>`` where ``<quality>`` is the
signal's quality name (``psnr`` for images and videos, ``iou`` for shapes) measured on
the training batch, and ``seconds`` counts training time only, across resumes.
:func:`write_curves` draws loss and quality against steps and against training seconds,
four panels, with matplotlib's Agg backend (no display needed), written atomically.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from ..core.errors import CoordfitError
from ..core.io import atomic_write

__all__ = ["read_log", "write_curves"]


def read_log(path: str | Path) -> dict[str, list[float]]:
    """The columns of a ``log.csv`` by name (``step``, ``seconds``, ``loss``, the quality).

    Rows a kill cut short or that do not parse are skipped; a missing or headerless
    file is one :class:`CoordfitError` line.
    """
    path = Path(path)
    try:
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
    except FileNotFoundError:
        raise CoordfitError(f"{path} does not exist") from None
    if not rows or "step" not in rows[0]:
        raise CoordfitError(f"{path} is not a coordfit log (no 'step' column)")
    names = rows[0]
    columns: dict[str, list[float]] = {name: [] for name in names}
    for row in rows[1:]:
        if len(row) != len(names):
            continue
        try:
            values = [float(v) for v in row]
        except ValueError:
            continue
        for name, value in zip(names, values):
            columns[name].append(value)
    return columns


def write_curves(log: str | Path, out: str | Path, *, quality_unit: str = "", title: str = "") -> Path | None:
    """Draw ``log`` (a run's log.csv) into ``out`` (PNG); None, writing nothing, when it has no rows.

    Four panels: training loss (log scale when it spans a decade) and training-batch
    quality, each against steps and against training seconds. The quality column is the
    log's fourth (its header names it); ``quality_unit`` (``dB``, or empty) labels it.
    """
    columns = read_log(log)
    names = list(columns)
    if len(names) < 4 or not columns["step"]:
        return None
    quality = names[3]
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 6.0), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2, sharex="col", squeeze=False)
    loss = columns["loss"]
    finite = [v for v in loss if math.isfinite(v) and v > 0]
    marker = "o" if len(loss) < 20 else None  # a short run's few rows stay visible
    label = f"training-batch {quality.upper()}" + (f" ({quality_unit})" if quality_unit else "")
    for col, (xname, xlabel) in enumerate((("step", "step"), ("seconds", "training seconds"))):
        x = columns[xname]
        top, bottom = axes[0][col], axes[1][col]
        top.plot(x, loss, color="tab:red", lw=1.3, marker=marker, ms=3)
        if finite and max(finite) > 10 * min(finite):
            top.set_yscale("log")
        top.set_ylabel("training loss")
        bottom.plot(x, columns[quality], color="tab:blue", lw=1.3, marker=marker, ms=3)
        bottom.set_ylabel(label)
        bottom.set_xlabel(xlabel)
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
    steps, seconds = columns["step"][-1], columns["seconds"][-1]
    last = f"{columns[quality][-1]:.4g} {quality_unit}".rstrip()
    summary = f"{int(steps):,} steps in {seconds:.1f} s of training, last {quality.upper()} {last}"
    fig.suptitle(f"{title}: {summary}" if title else summary, fontsize=10)
    return atomic_write(out, lambda p: fig.savefig(p, format="png", dpi=100))

