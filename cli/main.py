"""Entry point of the ``coordfit`` console script."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="coordfit",
    help="Fit implicit neural representations (CoordX, SIREN, PE-MLP, hash grids) "
    "to images, videos and shapes, and measure how fast.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _register() -> None:
    # Each module adds its commands to `app`; the import order is the --help order.
    from . import image as _image  # noqa: F401  (image, render)
    from . import video as _video  # noqa: F401
    from . import shape as _shape  # noqa: F401  (shape)
    from . import catalog as _catalog  # noqa: F401  (models, presets)
    from . import report as _report  # noqa: F401  (report, report merge)
    from .nvs import nvs_app; app.add_typer(nvs_app, name="nvs", help="Novel-view synthesis: LVSM, Efficient-LVSM, QuadTree attention.")  # noqa: E702,E501


_register()


def main() -> None:
    app()


if __name__ == "__main__":
    # Running this file directly would build a second `app` that the command modules do
    # not register on; go through the package module instead.
    from coordfit_cli.main import main as _main

    _main()
