"""`coordfit runs`: the run folders under a root, side by side, newest first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ._common import console, err_console, handle_errors
from .app import app


@app.command("runs")
@handle_errors
def runs_cmd(
    root: Annotated[Path, typer.Argument(help="A folder of runs (searched at any depth) or one run folder "
                                         "(default: runs).", show_default=False)] = Path("runs"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON (every field, full paths) instead of a table.")] = False,
) -> None:
    """List fitted runs: input, model, params, steps, seconds, quality, when (newest first)."""
    from coordfit.runs.listing import list_runs

    rows, skipped = list_runs(root)
    for folder, why in skipped:
        err_console.print(f"note: skipped {folder}: {why}", markup=False)
    if as_json:
        print(json.dumps({"runs": [r.to_dict() for r in rows],
                          "skipped": [{"path": str(f), "reason": why} for f, why in skipped]}, indent=2))
        return
    if not rows:
        err_console.print(f"no fit runs under {root}", markup=False)
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name, justify in (("folder", "left"), ("input", "left"), ("kind", "left"), ("model", "left"),
                          ("params", "right"), ("steps", "right"), ("seconds", "right"), ("quality", "right"),
                          ("stopped by", "left"), ("when", "left")):
        table.add_column(name, justify=justify, no_wrap=name != "folder", overflow="fold", min_width=24 if name == "folder" else None)  # type: ignore[arg-type]
    for r in rows:
        model = f"{r.model} {r.split}" if r.split else r.model
        quality = "-" if r.quality is None else f"{r.quality_name} {r.quality:.4g} {r.quality_unit}".rstrip()
        table.add_row(
            escape(_short(r.path, root)), escape(r.input), r.kind, escape(model),
            "-" if r.params is None else f"{r.params:,}", "-" if r.steps is None else f"{r.steps:,}",
            "-" if r.seconds is None else f"{r.seconds:.1f}", quality, r.state, r.when.replace("T", " ")[:16],
        )
    # Off a terminal (a file, a pipe) rows are never folded to 80 columns: one run, one line.
    (console if console.is_terminal else Console(width=1000)).print(table)


def _short(path: str, root: Path) -> str:
    """``path`` relative to ``root`` where it lies inside, else as recorded."""
    try:
        return str(Path(path).relative_to(root)) or "."
    except ValueError:
        return path
