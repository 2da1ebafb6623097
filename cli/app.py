"""The ``coordfit`` Typer app, which every command module adds its commands to.

Every error reaches the user the same way: one ``error:`` line on stderr and exit code
2 -- bad input from the commands (``_common.handle_errors``) and usage errors that the
command-line parser finds itself (an unknown command or option, ``--steps abc``), which
Typer would otherwise print as a multi-line box. Bare ``coordfit`` prints the help.
:mod:`coordfit_cli.main` imports the command modules (registering them) and runs the app.
"""

from __future__ import annotations

import sys
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
    as markup and drops it, so ``[default: as saved]`` would vanish from ``--help``. A
    docstring's paragraphs are joined into one line each first, so that a sentence is
    wrapped at the terminal's width, never where the source broke its line."""
    from rich.markup import escape

    if getattr(command, "_brackets_shown", False):
        return
    command._brackets_shown = True
    if isinstance(command.help, str):  # a docstring's paragraphs, each one line: rich wraps them to the terminal
        command.help = "\n\n".join(" ".join(p.split()) for p in command.help.split("\n\n"))
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
