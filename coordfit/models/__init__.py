"""Coordinate networks and their registry.

>>> from coordfit.models import create_model, list_models
>>> list_models()[:3]
['siren', 'pe-mlp', 'coordx']
"""

from __future__ import annotations

from .base import CoordNet as CoordNet
from .registry import ModelEntry as ModelEntry
from .registry import create_model as create_model
from .registry import create_saved_model as create_saved_model
from .registry import list_models as list_models
from .registry import make_config as make_config
from .registry import model_entry as model_entry
from .registry import register_model as register_model

# Importing a model module registers it.
from . import siren as _siren  # noqa: E402,F401
from . import pe_mlp as _pe_mlp  # noqa: E402,F401
from . import coordx as _coordx  # noqa: E402,F401
from . import hashgrid as _hashgrid  # noqa: E402,F401
from . import splitgrid as _splitgrid  # noqa: E402,F401

__all__ = ["CoordNet", "ModelEntry", "create_model", "create_saved_model", "list_models", "make_config", "model_entry", "register_model"]
