"""The model registry: one place the CLI, the benchmark and the tests enumerate models."""

from __future__ import annotations

import dataclasses
import typing
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import CoordfitError
from ..grid import GridInfo

__all__ = ["ModelEntry", "register_model", "list_models", "model_entry", "make_config", "create_model"]


@dataclass(frozen=True)
class ModelEntry:
    name: str
    description: str
    config_cls: type
    build: Callable[[Any, GridInfo], Any]
    lr: float  # default Adam learning rate
    adam: dict[str, Any] = field(default_factory=dict)  # extra Adam kwargs (betas, eps)
    splittable: bool = False  # takes a split spec (CoordX-style)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str,
    *,
    description: str,
    config: type,
    lr: float,
    adam: dict[str, Any] | None = None,
    splittable: bool = False,
) -> Callable[[type], type]:
    """Class decorator: ``@register_model("siren", description=..., config=SirenConfig, lr=1e-4)``.

    The class is built as ``cls(config_instance, grid_info)``.
    """

    def deco(cls: type) -> type:
        if name in _REGISTRY:
            warnings.warn(f"model '{name}' registered twice; the later one wins", stacklevel=2)
        _REGISTRY[name] = ModelEntry(name, description, config, cls, lr, dict(adam or {}), splittable)
        cls.registry_name = name
        return cls

    return deco


def list_models() -> list[str]:
    """Registered model names, in registration order."""
    return list(_REGISTRY)


def model_entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise CoordfitError(
            f"unknown model '{name}' (choose from: {', '.join(list_models())})"
        ) from None


def _coerce(value: Any, tp: Any, key: str, model: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if value is None and (tp is type(None) or type(None) in args):
        return None
    if origin is typing.Literal:
        if value not in args:
            raise CoordfitError(f"{model} option {key}={value!r} must be one of {list(args)}")
        return value
    if args and type(None) in args:  # Optional[X]
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key, model)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise CoordfitError(f"{model} option {key}={value!r} must be true or false")
    if tp in (int, float, str):
        try:
            if tp is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            return tp(value)
        except (TypeError, ValueError):
            raise CoordfitError(f"{model} option {key}={value!r} must be {tp.__name__}") from None
    return value


def make_config(name: str, **overrides: Any) -> Any:
    """Build and validate the config dataclass of model ``name`` with ``overrides``."""
    entry = model_entry(name)
    hints = typing.get_type_hints(entry.config_cls)
    fields = {f.name for f in dataclasses.fields(entry.config_cls)}
    clean = {}
    for key, value in overrides.items():
        key = key.replace("-", "_")
        if key not in fields:
            raise CoordfitError(
                f"model '{name}' has no option '{key}' (options: {', '.join(sorted(fields))})"
            )
        clean[key] = _coerce(value, hints[key], key, name)
    cfg = entry.config_cls(**clean)
    check = getattr(cfg, "validate", None)
    if check is not None:
        check()
    return cfg


def create_model(name: str, info: GridInfo, **overrides: Any) -> Any:
    """Build model ``name`` for a signal described by ``info`` (timm's ``create_model``)."""
    entry = model_entry(name)
    cfg = make_config(name, **overrides)
    return entry.build(cfg, info)
