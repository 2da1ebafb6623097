"""Checkpoints: safetensors for tensors, JSON for everything else, written atomically.

A run folder holds ``model.safetensors`` (weights, with the model name in the
safetensors metadata) and, while training can continue, ``optimizer.safetensors`` and
``train_state.json``. Nothing is pickled, so loading never executes code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from .errors import CoordfitError
from .io import atomic_write, read_json, write_json

__all__ = [
    "save_weights",
    "load_weights",
    "weights_metadata",
    "save_optimizer",
    "load_optimizer",
    "save_train_state",
    "load_train_state",
]


def save_weights(path: str | Path, module: torch.nn.Module, model_name: str) -> Path:
    """Write ``module``'s state dict to ``path`` with ``model_name`` in the metadata."""
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    meta = {"model": model_name, "format": "coordfit-weights-v1"}
    return atomic_write(path, lambda p: save_file(state, str(p), metadata=meta))


def weights_metadata(path: str | Path) -> dict[str, str]:
    path = Path(path)
    if not path.is_file():
        raise CoordfitError(f"{path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise CoordfitError(f"{path} is not a safetensors checkpoint ({exc})") from None


def load_weights(path: str | Path, module: torch.nn.Module, model_name: str) -> None:
    """Load weights saved by :func:`save_weights` into ``module``.

    Refuses, with a one-line :class:`CoordfitError`, weights saved by another model or
    whose tensor names or shapes do not fit ``module``.
    """
    meta = weights_metadata(path)
    saved = meta.get("model")
    if saved is not None and saved != model_name:
        raise CoordfitError(f"{path} holds weights of model '{saved}', not '{model_name}'")
    state = load_file(str(path))
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if missing or extra:
        raise CoordfitError(
            f"{path} does not fit model '{model_name}' "
            f"(missing {missing[:3]}, unexpected {extra[:3]})"
        )
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise CoordfitError(
                f"{path} does not fit model '{model_name}': {key} has shape "
                f"{tuple(value.shape)}, the model expects {tuple(own[key].shape)}"
            )
    module.load_state_dict(state)


def save_optimizer(path: str | Path, optimizer: torch.optim.Optimizer) -> Path:
    """Flatten an optimizer's state into safetensors; hyper-parameters go in metadata."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, pstate in sd["state"].items():
        for name, value in pstate.items():
            key = f"{pid}.{name}"
            if torch.is_tensor(value):
                tensors[key] = value.detach().contiguous().cpu()
            else:
                scalars[key] = value
    meta = {"param_groups": json.dumps(sd["param_groups"]), "scalars": json.dumps(scalars)}
    if not tensors:  # safetensors needs at least one tensor
        tensors["__empty__"] = torch.zeros(1)
    return atomic_write(path, lambda p: save_file(tensors, str(p), metadata=meta))


def load_optimizer(path: str | Path, optimizer: torch.optim.Optimizer) -> None:
    meta = weights_metadata(path)
    tensors = load_file(str(path))
    tensors.pop("__empty__", None)
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    for key, value in json.loads(meta.get("scalars", "{}")).items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    groups = json.loads(meta["param_groups"])
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError) as exc:
        raise CoordfitError(f"{path} does not fit this optimizer ({exc})") from None


def save_train_state(path: str | Path, state: dict[str, Any]) -> Path:
    return write_json(path, state)


def load_train_state(path: str | Path) -> dict[str, Any]:
    return read_json(path)
