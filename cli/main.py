"""Entry point of the ``coordfit`` console script.

Every error reaches the user the same way: one ``error:`` line on stderr and exit code
2 -- bad input from the commands (``_common.handle_errors``) and usage errors that the
command-line parser finds itself (an unknown command or option, ``--steps abc``), which
Typer would otherwise print as a multi-line box. Bare ``coordfit`` prints the help.

Nothing heavy is imported until a command runs: ``coordfit --help``, ``coordfit image
--help`` and ``coordfit --version`` do not load torch.
"""

from __future__ import annotations

import signal
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperGroup

from ._common import err_console

# Typer re-exports the parser's BadParameter; its module (Typer's bundled copy of Click,
# or Click itself in older Typer) holds the other parser errors.
_parser_errors = sys.modules[typer.BadParameter.__module__]
_ABORTS = (typer.Abort, getattr(_parser_errors, "Abort", typer.Abort))
# Click before 8.2 prints the help of a bare group and exits 0 by itself.
_NO_ARGS = getattr(_parser_errors, "NoArgsIsHelpError", ())


class _OneLineErrors(TyperGroup):
    """The top-level group: parser errors become one ``error:`` line (exit 2)."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        _show_brackets(self)
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _NO_ARGS:
            code = 0  # `coordfit` or `coordfit nvs` alone: the help is printed, nothing is wrong
        except _parser_errors.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else prog_name or self.name
            code = _error_line(f"{exc.format_message()} (see '{where} --help')", exc.exit_code)
        except _parser_errors.ClickException as exc:
            code = _error_line(exc.format_message(), exc.exit_code)
        except _ABORTS:
            code = _error_line("aborted", 1)
        sys.exit(code if isinstance(code, int) else 0)


def _show_brackets(command: Any) -> None:
    """Escape the help texts of ``command`` and its subcommands, once: rich reads ``[...]``
    as markup and drops it, so ``[default: as saved]`` would vanish from ``--help``."""
    from rich.markup import escape

    if getattr(command, "_brackets_shown", False):
        return
    command._brackets_shown = True
    for item in (command, *command.params):
        for attr in ("help", "short_help", "epilog"):
            text = getattr(item, attr, None)
            if isinstance(text, str) and "\\[" not in text:  # a text escaped by its author is left alone
                setattr(item, attr, escape(text))
    for sub in getattr(command, "commands", {}).values():
        _show_brackets(sub)


def _error_line(message: str, code: int) -> int:
    err_console.print("error: " + " ".join(message.split()), markup=False)
    return code


app = typer.Typer(
    name="coordfit",
    cls=_OneLineErrors,
    help="Fit implicit neural representations (CoordX, SIREN, PE-MLP, hash grids) "
    "to images, videos and shapes, and measure how fast.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from coordfit import __version__

        typer.echo(f"coordfit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", "-V", help="Print the version and exit.", is_eager=True,
                                 callback=_print_version),
) -> None:
    pass  # the app's help is Typer(help=...) above; this callback only adds --version


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
    # Running this file directly would build a second `app` that the command modules do
    # not register on; go through the package module instead.
    from coordfit_cli.main import main as _main

    _main()
