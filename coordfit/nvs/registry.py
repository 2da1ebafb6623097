"""The view-synthesis model registry, and saving/loading models with their config."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from ..core.checkpoint import load_weights, open_checkpoint, save_weights, weights_metadata
from ..core.defaults import asset_path
from ..core.errors import CoordfitError
from ..core.io import read_json, write_json
from ..core.registry import Component, Registry
from .efficient_lvsm import EfficientLVSM
from .layers import NVSConfig
from .lvsm import LVSM

__all__ = ["MODELS", "register_model", "list_models", "create_model", "save_model", "load_model", "SHIPPED_CHECKPOINT"]

SHIPPED_CHECKPOINT = asset_path("nvs", "efficient-lvsm-32px.safetensors")
"""The small Efficient-LVSM trained by ``coordfit nvs train`` on procedural 32 px scenes."""


@dataclass(frozen=True)
class NVSModelEntry(Component):
    """A view-synthesis model: built as ``cls(NVSConfig)``."""

    what: ClassVar[str] = "view-synthesis model"


MODELS: Registry[NVSModelEntry] = Registry("view-synthesis model")


def register_model(name: str, *, description: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator, as the coordinate models' ``register_model``; the class takes an ``NVSConfig``."""

    def deco(cls: type[nn.Module]) -> type[nn.Module]:
        MODELS.add(name, NVSModelEntry(name, description, NVSConfig, cls))
        return cls

    return deco


register_model("lvsm", description="LVSM decoder-only: full self-attention over input and target tokens")(LVSM)
register_model("efficient-lvsm", description="Efficient-LVSM: input self-attention once (KV cache), targets cross-attend")(
    EfficientLVSM)


def list_models() -> list[str]:
    """Registered view-synthesis model names, in registration order."""
    return MODELS.names()


def create_model(name: str, cfg: NVSConfig | dict[str, Any] | None = None) -> nn.Module:
    """Build a registered model from a config (dataclass, or dict of its fields: unknown keys refused)."""
    entry = MODELS.get(name)
    if isinstance(cfg, NVSConfig):
        return entry.build(cfg)  # the model validates it
    return entry.create(**(cfg or {}))


def _config_path(weights: Path) -> Path:
    """``<stem>.json`` beside the weights, else ``config.json`` in the same folder."""
    own = weights.with_suffix(".json")
    return own if own.is_file() else weights.parent / "config.json"


def save_model(weights: str | Path, model: nn.Module, extra: dict | None = None) -> Path:
    """Write ``weights`` (safetensors) and ``<stem>.json`` with the model name and config."""
    weights = Path(weights)
    save_weights(weights, model, model.name)
    write_json(weights.with_suffix(".json"), {"model": model.name, "config": model.cfg.to_dict(), **(extra or {})})
    return weights


def load_model(path: str | Path | None = None) -> tuple[nn.Module, dict]:
    """Load a model saved by :func:`save_model` or a training run folder.

    ``path`` is a ``.safetensors`` file, a run folder (its ``model.safetensors``), or
    ``None`` for the shipped checkpoint. Returns ``(model in eval mode, its JSON info)``.
    """
    path = SHIPPED_CHECKPOINT if path is None else Path(path)
    if path.is_dir():
        path = open_checkpoint(path).path("model.safetensors")  # verified against checkpoint.json
    if not path.is_file():
        raise CoordfitError(f"checkpoint {path} does not exist")
    meta = weights_metadata(path)
    info_path = _config_path(path)
    if not info_path.is_file():
        raise CoordfitError(f"checkpoint {path} has no {path.stem}.json or config.json beside it")
    info = read_json(info_path)
    if not isinstance(info, dict) or not isinstance(info.get("config", {}), dict):
        raise CoordfitError(f"{info_path} is not a model description (an object with 'model' and a 'config' object)")
    name = info.get("model", meta.get("model"))
    if name not in MODELS:
        raise CoordfitError(f"{info_path} names model {name!r}, not a view-synthesis model")
    model = create_model(name, info.get("config", {}))
    load_weights(path, model, name)
    return model.eval(), info
