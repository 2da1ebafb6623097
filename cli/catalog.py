"""`coordfit models` and `coordfit presets`: what the registry holds."""

from __future__ import annotations

import dataclasses

import typer
from rich.table import Table

from coordfit.models import list_models, model_entry
from coordfit.presets import PRESETS

from ._common import console
from .main import app


@app.command("models")
def models_cmd(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also list each model's options and defaults."),
) -> None:
    """List the registered models with a one-line description."""
    table = Table(title="coordfit models", show_lines=verbose)
    table.add_column("model", style="bold")
    table.add_column("lr")
    table.add_column("split")
    table.add_column("description")
    if verbose:
        table.add_column("options (defaults)")
    for name in list_models():
        e = model_entry(name)
        row = [name, f"{e.lr:g}", "yes" if e.splittable else "no", e.description]
        if verbose:
            row.append(", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(e.config_cls)))
        table.add_row(*row)
    console.print(table)


@app.command("presets")
def presets_cmd() -> None:
    """List named presets (use them with --preset)."""
    table = Table(title="coordfit presets")
    for col in ("preset", "signal", "model", "description"):
        table.add_column(col)
    for p in PRESETS.values():
        table.add_row(p.name, p.kind, p.model, p.description)
    console.print(table)
