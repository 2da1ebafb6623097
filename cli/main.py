"""Entry point of the ``coordfit`` console script: the app (:mod:`coordfit_cli.app`) with
every command module registered on it.

Nothing heavy is imported until a command runs: ``coordfit --help``, ``coordfit image
--help`` and ``coordfit --version`` do not load torch.
"""

from __future__ import annotations

import signal
import warnings
from typing import Any

from .app import _OneLineErrors as _OneLineErrors  # noqa: F401  (the group class, for tests)
from .app import app as app


def _register() -> None:
    # Each module adds its commands to `app`; the import order is the --help order.
    from . import image as _image  # noqa: F401  (image, render)
    from . import video as _video  # noqa: F401
    from . import shape as _shape  # noqa: F401  (shape)
    from . import catalog as _catalog  # noqa: F401  (models, presets)
    from . import report as _report  # noqa: F401  (report, report merge)
    from . import views as _views  # noqa: F401  (views)
    from . import runs as _runs  # noqa: F401  (runs)
    from .nvs import nvs_app; app.add_typer(nvs_app, name="nvs", help="Novel-view synthesis: LVSM, Efficient-LVSM, QuadTree attention.")  # noqa: E702,E501


_register()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    # Warnings as one line each, like errors; and SIGTERM (a scheduler's or `kill`'s stop)
    # handled as Ctrl-C, so a fit saves its checkpoint and can be resumed.
    warnings.formatwarning = lambda message, category, *args, **kwargs: f"warning: {message}\n"
    signal.signal(signal.SIGTERM, _interrupt)
    app()


if __name__ == "__main__":
    main()
