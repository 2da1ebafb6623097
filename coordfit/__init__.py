"""coordfit: fit implicit neural representations, fast, and prove how fast.

>>> import coordfit
>>> coordfit.list_models()[:3]
['siren', 'pe-mlp', 'coordx']

The public names load on first use (PEP 562), so ``import coordfit`` and the CLI's
``--help`` and ``--version`` do not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__ as __version__

if TYPE_CHECKING:
    from .api import FitResult as FitResult
    from .api import Run as Run
    from .api import fit as fit
    from .api import load as load
    from .api import render as render
    from .api import resume as resume
    from .core.errors import CoordfitError as CoordfitError
    from .geometry.grid import GridInfo as GridInfo
    from .models import create_model as create_model
    from .models import list_models as list_models
    from .signals import load_signal as load_signal
    from .engine.train import TrainConfig as TrainConfig
    from .viewfit import fit_views as fit_views

# public name -> the module that defines it
_LAZY = {
    "CoordfitError": "core.errors",
    "FitResult": "api",
    "GridInfo": "geometry.grid",
    "Run": "api",
    "TrainConfig": "engine.train",
    "create_model": "models",
    "fit": "api",
    "fit_views": "viewfit",
    "list_models": "models",
    "load": "api",
    "load_signal": "signals",
    "render": "api",
    "resume": "api",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'coordfit' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
