"""Shared pieces of the CLI: error handling and small option parsers."""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from coordfit.errors import CoordfitError
from coordfit.io import os_error_message

F = TypeVar("F", bound=Callable[..., Any])

console = Console(stderr=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` on one stderr line and exit with ``code``."""
    message = " ".join(str(message).split())
    err_console.print(f"error: {message}", markup=False)
    raise typer.Exit(code)


def handle_errors(func: F) -> F:
    """One stderr line and exit code 2 for bad input: a :class:`CoordfitError`, a number
    option given as NaN or infinity, a failing file system (a full disk, no permission)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            for name, value in kwargs.items():
                if isinstance(value, float) and not math.isfinite(value):
                    raise CoordfitError(f"--{name.replace('_', '-')} must be a finite number, got {value}")
            return func(*args, **kwargs)
        except CoordfitError as exc:
            fail(str(exc))
        except OSError as exc:
            fail(os_error_message(exc, f"use {exc.filename}" if exc.filename else "finish"))
        except KeyboardInterrupt:
            err_console.print("interrupted", markup=False)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def parse_options(items: list[str] | None) -> dict[str, Any]:
    """Parse ``-o key=value`` pairs; values are read as JSON when they parse, else as text."""
    import json

    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise CoordfitError(f"option '{item}' must look like key=value")
        key, value = item.split("=", 1)
        key = key.strip().replace("-", "_")
        if not key:
            raise CoordfitError(f"option '{item}' has an empty key")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def is_tty() -> bool:
    return sys.stdout.isatty()
