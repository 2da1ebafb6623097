"""The exceptions coordfit raises on purpose.

Light on imports (none), so the CLI can catch them without loading torch.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CoordfitError", "TrainingInterrupted"]


class CoordfitError(Exception):
    """Bad input or an impossible request.

    The CLI prints ``error: <message>`` on one line to stderr and exits with code 2.
    It is not a ``ValueError``: an ``except ValueError`` around library code catches
    bugs (a wrong shape, a bad cast) and never stands for bad input by accident.
    """


class TrainingInterrupted(Exception):
    """Ctrl-C (or SIGTERM) during training; a checkpoint was saved when the run has a folder."""

    def __init__(self, step: int, run_dir: Path | None) -> None:
        where = f"; checkpoint saved in {run_dir}" if run_dir else ""
        super().__init__(f"interrupted at step {step}{where}")
        self.step = step
        self.run_dir = run_dir
