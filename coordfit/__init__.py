"""coordfit: fit implicit neural representations, fast, and prove how fast.

>>> import coordfit
>>> coordfit.list_models()[:3]
['siren', 'pe-mlp', 'coordx']
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import CoordfitError as CoordfitError  # noqa: E402
from .grid import GridInfo as GridInfo  # noqa: E402
from .models import create_model as create_model  # noqa: E402
from .models import list_models as list_models  # noqa: E402
from .signals import load_signal as load_signal  # noqa: E402
from .train import TrainConfig as TrainConfig  # noqa: E402
from .api import FitResult as FitResult  # noqa: E402
from .api import Run as Run  # noqa: E402
from .api import fit as fit  # noqa: E402
from .api import load as load  # noqa: E402
from .api import render as render  # noqa: E402
from .api import resume as resume  # noqa: E402
from .viewfit import fit_views as fit_views  # noqa: E402

__all__ = [
    "CoordfitError",
    "FitResult",
    "GridInfo",
    "Run",
    "TrainConfig",
    "__version__",
    "create_model",
    "fit",
    "fit_views",
    "list_models",
    "load",
    "load_signal",
    "render",
    "resume",
]
