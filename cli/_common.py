"""Shared pieces of the CLI: error handling and small option parsers."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from coordfit.core.errors import CoordfitError
from coordfit.core.io import os_error_message

F = TypeVar("F", bound=Callable[..., Any])

console = Console(stderr=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` on one stderr line and exit with ``code``."""
    message = " ".join(str(message).split())
    err_console.print(f"error: {message}", markup=False)
    raise typer.Exit(code)


def handle_errors(func: F) -> F:
    """One stderr line for what is not a bug: exit 2 for bad input (a :class:`CoordfitError`,
    a number option that is NaN, infinite or past 64 bits, a failing file system, a size
    that does not fit in memory), exit 130 for an interruption."""
    from coordfit.core.errors import TrainingInterrupted

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            for name, value in kwargs.items():
                _check_number(name, value)
            return func(*args, **kwargs)
        except CoordfitError as exc:
            fail(str(exc))
        except OSError as exc:
            fail(os_error_message(exc, f"use {exc.filename}" if exc.filename else "finish"))
        except (MemoryError, RuntimeError) as exc:
            if not _is_out_of_memory(exc):
                raise
            first = str(exc).splitlines()[0] if str(exc) else "MemoryError"
            fail(f"out of memory ({first[:160]}); ask for smaller sizes, batches or models")
        except TrainingInterrupted as exc:  # a fit inside a larger command (report)
            err_console.print(str(exc), markup=False)
            raise typer.Exit(130) from None
        except KeyboardInterrupt:
            err_console.print("interrupted", markup=False)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _check_number(name: str, value: Any) -> None:
    flag = "--" + name.replace("_", "-")
    if isinstance(value, float) and not math.isfinite(value):
        raise CoordfitError(f"{flag} must be a finite number, got {value}")
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        raise CoordfitError(f"{flag} is out of range (a 64-bit integer), got {value}")


def _is_out_of_memory(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, MemoryError) or "can't allocate memory" in text or "out of memory" in text.lower()


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
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value  # text, e.g. fusion=sum
        if not _finite_or_text(parsed):
            raise CoordfitError(f"option '{item}' must be a finite number")
        out[key] = parsed
    return out


def _finite_or_text(value: Any) -> bool:
    """False for NaN and infinities, also spelled as text ("nan", "inf", "1e999")."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return True
    return not isinstance(value, float) or math.isfinite(value)
