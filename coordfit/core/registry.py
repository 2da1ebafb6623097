"""One registry mechanism and one config contract for every named component.

Coordinate models, view-synthesis models, signal kinds and presets are each held by a
:class:`Registry`: names in registration order, a name registered twice warns (the
later one wins), an unknown name is refused with one :class:`CoordfitError` line that
lists the known names. Each kind registers through its own decorator or function on
:meth:`Registry.add` (``@register_model``, ``@register_signal``, ``register_preset``)
and offers ``list_*`` / ``create_*`` on top, as timm's ``list_models`` / ``create_model``.

A component configured by a dataclass subclasses :class:`Config` for it:
``from_dict`` refuses unknown keys and reads values by the field types (``Literal``
choices, ``bool`` from ``true``/``false``, ``int``, ``float``, ``str``, ``X | None``,
fixed tuples from ``320x136``, lists from ``2,4,8``),
and ``validate()`` checks the ``Literal`` choices, then the class's own rules; both
raise one line. :func:`field_docs` reads each field's one-line comment or docstring
from the source, so ``coordfit models -v`` shows what an option means.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import textwrap
import tokenize
import typing
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from .errors import CoordfitError

__all__ = ["Registry", "Component", "Config", "config_from_dict", "field_docs"]

T = TypeVar("T")
C = TypeVar("C", bound="Config")
D = TypeVar("D")


class Registry(Generic[T]):
    """Named entries of one kind (``what``: "model", "preset"...), in registration order.

    >>> KINDS = Registry("colour")
    >>> _ = KINDS.add("red", 1)
    >>> KINDS.names(), KINDS.get("red")
    (['red'], 1)
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` as ``name``; a second registration of a name warns and wins."""
        if name in self._entries:
            warnings.warn(f"{self.what} '{name}' registered twice; the later one wins", stacklevel=3)
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        """The entry named ``name``; one :class:`CoordfitError` line listing the known names otherwise."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise CoordfitError(f"unknown {self.what} '{name}' (choose from: {', '.join(self._entries)})") from None

    __getitem__ = get

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())

    def values(self) -> list[T]:
        return list(self._entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True)
class Component:
    """A registered component: its typed config and how to build it from that config."""

    what: ClassVar[str] = "component"  # what errors call it ("model", "view-synthesis model")
    name: str
    description: str  # one line, shown by the CLI listings
    config_cls: type[Config]  # the component's typed config
    build: Callable[..., Any]  # build(config, *args) -> the component

    def make_config(self, **options: Any) -> Any:
        """The config with ``options`` applied: unknown keys refused, values read by type, validated."""
        return self.config_cls.from_dict(options, owner=f"{self.what} '{self.name}'")

    def create(self, *args: Any, **options: Any) -> Any:
        """Build the component from :meth:`make_config` ``(**options)`` and ``args``."""
        return self.build(self.make_config(**options), *args)


class Config:
    """Base of coordfit's typed config dataclasses (subclasses are ``@dataclass``)."""

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any], owner: str | None = None) -> C:
        """Build from ``data``: see :func:`config_from_dict`."""
        return config_from_dict(cls, data, owner)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def validate(self) -> None:
        """Check every ``Literal`` field against its choices; subclasses extend this with
        their own rules (calling ``super().validate()`` first) and raise one line."""
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            choices = _literal_choices(hints[f.name])
            value = getattr(self, f.name)
            if choices is not None and value not in choices and not (value is None and _optional(hints[f.name])):
                raise CoordfitError(f"{_flag(f.name)} must be one of {list(choices)}, got {value!r}")

    def check_positive(self, *names: str) -> None:
        """One line unless each named field is > 0 (``None`` passes: it means "automatic")."""
        for name in names:
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise CoordfitError(f"{_flag(name)} must be positive, got {value}")


def config_from_dict(cls: type[D], data: Mapping[str, Any], owner: str | None = None) -> D:
    """Build dataclass ``cls`` from ``data`` (``-`` in keys read as ``_``): unknown keys
    refused, values read by the field types, then its ``validate()`` if it has one.
    ``owner`` names the component in errors (default: the class name)."""
    owner = owner or cls.__name__
    if not isinstance(data, Mapping):
        raise CoordfitError(f"{owner} options must be a mapping of names to values, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    clean = {}
    for key, value in data.items():
        key = str(key).replace("-", "_")
        if key not in names:
            raise CoordfitError(f"{owner} has no option '{key}' (options: {', '.join(names)})")
        clean[key] = _coerce(value, hints[key], key, owner)
    cfg = cls(**clean)
    validate = getattr(cfg, "validate", None)
    if validate is not None:
        validate()
    return cfg


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _optional(tp: Any) -> bool:
    return type(None) in typing.get_args(tp)


def _literal_choices(tp: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(tp) is typing.Literal:
        return typing.get_args(tp)
    inner = [a for a in typing.get_args(tp) if a is not type(None)]
    if _optional(tp) and len(inner) == 1:
        return _literal_choices(inner[0])
    return None


def _coerce(value: Any, tp: Any, key: str, owner: str) -> Any:
    """Read ``value`` (from JSON or a ``-o key=value`` string) as type ``tp``."""
    if value is None and _optional(tp):
        return None
    if _literal_choices(tp) is not None:
        return value  # checked by validate()
    inner = [a for a in typing.get_args(tp) if a is not type(None)]
    if _optional(tp) and len(inner) == 1:
        return _coerce(value, inner[0], key, owner)
    if typing.get_origin(tp) is tuple:
        return _coerce_tuple(value, typing.get_args(tp), key, owner)
    if typing.get_origin(tp) is list and isinstance(value, str | list | tuple):  # [2, 4], "2,4" or ["2", "4,8"]
        parts = [value] if isinstance(value, str) else value
        items = [p for part in parts for p in (part.replace(",", " ").split() if isinstance(part, str) else [part])]
        (arg,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, arg, key, owner) for v in items]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise CoordfitError(f"{owner} option {key}={value!r} must be true or false")
    if tp in (int, float, str):
        try:
            if isinstance(value, bool) or (tp is int and isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return tp(value)
        except (TypeError, ValueError):
            raise CoordfitError(f"{owner} option {key}={value!r} must be {tp.__name__}") from None
    return value


def _coerce_tuple(value: Any, args: tuple[Any, ...], key: str, owner: str) -> tuple[Any, ...]:
    """A fixed-size tuple (``tuple[int, int]``) from a list, a tuple or text like ``320x136``."""
    parts = value.lower().replace(",", "x").split("x") if isinstance(value, str) else value
    if isinstance(parts, list | tuple) and len(parts) == len(args):
        try:
            return tuple(_coerce(v, a, key, owner) for v, a in zip(parts, args))
        except CoordfitError:
            pass
    what = "whole numbers" if all(a is int for a in args) else "numbers"
    raise CoordfitError(f"--{_flag(key)} ({owner} option {key}) must be {len(args)} {what} joined by x, "
                        f"e.g. {'x'.join(['320', '136', '3'][:len(args)])}, got {value!r}")


def field_docs(cls: type) -> dict[str, str]:
    """Each dataclass field's one-line help: its trailing ``# comment`` or the string
    literal right after it (nerfstudio's field docstrings), inherited fields included.
    Empty strings where the source cannot be read (a frozen install)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        comments = {t.start[0]: t.string.lstrip("#").strip()
                    for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type == tokenize.COMMENT}
        body = ast.parse(source).body[0].body  # type: ignore[attr-defined]
        for stmt, nxt in zip(body, [*body[1:], None]):
            if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
                continue
            text = comments.get(stmt.end_lineno or stmt.lineno, "")
            if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str):
                text = " ".join(nxt.value.value.split())
            docs[stmt.target.id] = text
    return {f.name: docs.get(f.name, "") for f in dataclasses.fields(cls)}
