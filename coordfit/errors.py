"""The one exception type that means "the user gave bad input"."""

from __future__ import annotations


class CoordfitError(ValueError):
    """Bad input or an impossible request.

    The CLI prints ``error: <message>`` on one line to stderr and exits with code 2;
    library callers can catch it like any ``ValueError``.
    """
