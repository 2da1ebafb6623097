"""The model registry: one place the CLI, the benchmark and the tests enumerate models.

Built on :class:`coordfit.core.registry.Registry`, as the view-synthesis models, the signal
kinds and the presets are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..geometry.grid import GridInfo
from ..core.registry import Component, Config, Registry

__all__ = ["ModelEntry", "MODELS", "register_model", "list_models", "model_entry", "make_config", "create_model", "create_saved_model", "saved_defaults"]


@dataclass(frozen=True)
class ModelEntry(Component):
    """A coordinate model: built as ``cls(config, grid_info)``, with its training defaults."""

    what: ClassVar[str] = "model"
    lr: float = 1e-4  # default Adam learning rate
    adam: dict[str, Any] = field(default_factory=dict)  # extra Adam kwargs (betas, eps)
    splittable: bool = False  # takes a split spec (CoordX-style)
    grid: bool = False  # a feature-grid model: its MLP is a small decoder with a width of its own


MODELS: Registry[ModelEntry] = Registry("model")


def register_model(
    name: str,
    *,
    description: str,
    config: type[Config],
    lr: float,
    adam: dict[str, Any] | None = None,
    splittable: bool = False,
    grid: bool = False,
) -> Callable[[type], type]:
    """Class decorator: ``@register_model("siren", description=..., config=SirenConfig, lr=1e-4)``.

    The class is built as ``cls(config_instance, grid_info)``.
    """

    def deco(cls: type) -> type:
        MODELS.add(name, ModelEntry(name, description, config, cls, lr, dict(adam or {}), splittable, grid))
        cls.registry_name = name  # type: ignore[attr-defined]
        return cls

    return deco


def list_models() -> list[str]:
    """Registered model names, in registration order."""
    return MODELS.names()


def model_entry(name: str) -> ModelEntry:
    return MODELS.get(name)


def make_config(name: str, **overrides: Any) -> Any:
    """Build and validate the config dataclass of model ``name`` with ``overrides``."""
    return MODELS.get(name).make_config(**overrides)


def create_model(name: str, info: GridInfo, **overrides: Any) -> Any:
    """Build model ``name`` for a signal described by ``info`` (timm's ``create_model``)."""
    return MODELS.get(name).create(info, **overrides)


def saved_defaults(name: str) -> dict[str, Any]:
    """The options model ``name`` was fitted with by runs saved before those options
    existed (its config class's ``saved_defaults``), not today's defaults."""
    return dict(getattr(MODELS.get(name).config_cls, "saved_defaults", {}))


def create_saved_model(name: str, info: GridInfo, saved: dict[str, Any]) -> Any:
    """Build model ``name`` from the config a run saved; a field the run's coordfit did not
    have yet takes :func:`saved_defaults`, so old runs load as they were trained."""
    return create_model(name, info, **{**saved_defaults(name), **saved})
