"""`coordfit models` and `coordfit presets`: what the registries hold."""

from __future__ import annotations

import dataclasses

import typer
from rich.markup import escape
from rich.table import Table

from coordfit.core.registry import field_docs

from ._common import console
from .app import app


@app.command("models")
def models_cmd(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also list each model's options, defaults and meaning."),
) -> None:
    """List the registered models with a one-line description."""
    from coordfit.models import list_models, model_entry

    table = Table(title="coordfit models", show_lines=verbose)
    table.add_column("model", style="bold")
    table.add_column("lr")
    table.add_column("split")
    table.add_column("description")
    for name in list_models():
        e = model_entry(name)
        table.add_row(name, f"{e.lr:g}", "yes" if e.splittable else "no", e.description)
    console.print(table)
    if verbose:
        for name in list_models():
            cls = model_entry(name).config_cls
            docs = field_docs(cls)
            options = Table(title=f"{name} options (-o KEY=VALUE)", title_justify="left", show_edge=False)
            for col in ("option", "default", "meaning"):
                options.add_column(col)
            for f in dataclasses.fields(cls):  # type: ignore[arg-type]
                options.add_row(f.name, escape(repr(_default(f))), escape(docs[f.name]))
            console.print(options)


def _default(f: dataclasses.Field) -> object:
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return f.default


@app.command("presets")
def presets_cmd() -> None:
    """List named presets (use them with --preset, or coordfit.fit(preset=...))."""
    from coordfit.engine.presets import get_preset, list_presets

    table = Table(title="coordfit presets")
    for col in ("preset", "signal", "model", "description"):
        table.add_column(col)
    for name in list_presets():
        p = get_preset(name)
        table.add_row(p.name, p.kind, p.model, escape(p.description))
    console.print(table)
