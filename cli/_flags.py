"""Command-line flags made from typed configs, once, for every command.

:func:`config_flags` turns the fields of a :class:`~coordfit.core.registry.Config` into
flags: ``--name`` from the field's name, the type from its annotation, the help from its
comment (:func:`~coordfit.core.registry.field_docs`), and the default the help states
from what the command will really use (the field's default, or the value the caller
resolved: a preset's, the device's). Every flag defaults to None, "not given", so a
command can tell a flag given from one left alone (``--config`` and ``--resume`` apply
only the flags given). The fitting commands (``_fit.py``: :class:`TrainConfig` and the
signal options), ``nvs train`` (:class:`NVSTrainConfig`) and ``nvs bench``
(:class:`BenchConfig`) are made this way.

Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from coordfit.core.defaults import DEFAULTS
from coordfit.core.errors import CoordfitError
from coordfit.core.registry import field_docs

__all__ = ["PROGRESS", "RESUME", "option", "config_flags", "make_command", "given", "format_default", "per_device", "check_resume_flags"]

_DEVICE_NAMES = {"cpu": "a CPU", "cuda": "CUDA", "mps": "MPS"}
_VALUES = {"auto", "none", "cpu", "cuda", "mps", "torch", "tcnn", "default", "fp32"}  # values a help may start with


def option(*names: str, help: str, tp: Any = Optional[str], hidden: bool = False) -> Any:  # noqa: A002
    """A flag declared by hand (one that no config field holds), defaulting to None."""
    return Annotated[tp, typer.Option(*names, help=help, show_default=False, hidden=hidden)]


PROGRESS = option("--progress/--no-progress", tp=Optional[bool], help="Progress: a bar on a terminal, a line every "
                  "few seconds elsewhere (default: on).")
RESUME = option("--resume", tp=Optional[Path], help="Continue the run in this folder. Flags that would change the run "
                "are refused.")


def format_default(value: Any) -> str | None:
    """How a default reads in a help: ``on``/``off``, ``4,096``, ``0.001``, ``2, 4, 8``; None: not stated."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ", ".join(str(format_default(v)) for v in value) or None
    return str(value)


def per_device(values: Mapping[str, Any], none: str = "torch's own") -> str:
    """``4,096 on a CPU, 262,144 on CUDA, 65,536 on MPS``, or one value when every device has it."""
    devices: dict[str, list[str]] = {}  # shown value -> the devices that have it, in table order
    for device, v in values.items():
        devices.setdefault(format_default(v) or none, []).append(_DEVICE_NAMES.get(device, device))
    if len(devices) == 1:
        return next(iter(devices))
    return ", ".join(f"{v} on {' and '.join(names)}" for v, names in devices.items())


def device_values(resolve: Callable[[str], Any], name: str) -> dict[str, Any]:
    """``name`` of ``resolve(device)`` for every device coordfit has defaults for."""
    return {device: getattr(resolve(device), name) for device in DEFAULTS}


def _help(text: str, default: str | None, values: Iterable[Any] = ()) -> str:
    """``text`` as a sentence with the default stated; a first word that is a value or code
    (``auto ...``, ``quick ...``, ``torch.compile ...``) keeps its case."""
    text = " ".join(text.split()).rstrip(".")
    first = text.split(" ", 1)[0].rstrip(",;:")
    if first.replace("-", "").isalpha() and first.islower() and first not in {*_VALUES, *map(str, values)}:
        text = text[:1].upper() + text[1:]
    if default is None or "(default" in text:
        return text + "."
    return f"{text} (default: {default})."


def _flag_type(tp: Any) -> tuple[Any, str] | None:
    """The flag's Python type and what kind of flag it is; None for a field no flag can hold (a mapping)."""
    union = typing.get_origin(tp) in (typing.Union, types.UnionType)
    inner = [a for a in typing.get_args(tp) if a is not type(None)] if union else [tp]
    base = inner[0] if len(inner) == 1 else str
    origin = typing.get_origin(base)
    if base is bool:
        return bool, "bool"
    if base in (int, float, str):
        return base, "value"
    if origin is typing.Literal or origin is tuple:
        return str, "value"  # a choice, or WxH: read by the config
    if origin is list:
        return list[str], "list"  # repeatable; each value may hold several, joined by commas
    return None


def config_flags(cls: type, names: Iterable[str] | None = None, *, shown: Mapping[str, Any] | None = None,
                 short: Mapping[str, str] | None = None, aliases: Mapping[str, tuple[str, ...]] | None = None,
                 helps: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One flag per field of dataclass ``cls`` (``names``: these, in this order; default: every
    field a flag can hold), as ``{field name: annotation}`` for :func:`make_command`.

    ``shown``: the default a help states, where it is not the field's own (a value, or text
    such as ``"4,096 on a CPU, ..."``); ``short``: a short name (``{"steps": "-n"}``);
    ``aliases``: old spellings, accepted but not listed (:func:`make_command` folds them
    in); ``helps``: a help text instead of the field's comment.
    """
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out: dict[str, Any] = {}
    for name in names if names is not None else fields:
        kind = _flag_type(hints[name])
        if kind is None:
            if names is not None:
                raise TypeError(f"{cls.__name__}.{name} cannot be a flag")
            continue
        tp, how = kind
        flag = "--" + name.replace("_", "-")
        f = fields[name]
        value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        off = how == "bool" and value is False  # --flag turns it on; --no-flag, not listed, keeps working
        decls = [f"{flag}/--no-{flag[2:]}" if how == "bool" and not off else flag,
                 *([short[name]] if short and name in short else [])]
        if shown and name in shown:
            default = shown[name] if isinstance(shown[name], str) else format_default(shown[name])
        else:
            default = format_default(value)
        text = (helps or {}).get(name) or docs.get(name) or name.replace("_", " ")
        choices = typing.get_args(hints[name]) if typing.get_origin(hints[name]) is typing.Literal else ()
        out[name] = option(*decls, tp=Optional[tp], help=_help(text, default, choices))
        if off:
            out[f"{name}__no"] = option(f"--no-{flag[2:]}", tp=Optional[bool], help=f"{flag} off.", hidden=True)
        for i, alias in enumerate((aliases or {}).get(name, ())):
            out[f"{name}__{i}"] = option(alias, tp=Optional[tp], help=f"Old name of {flag}.", hidden=True)
    return out


def _fold(kw: dict[str, Any]) -> dict[str, Any]:
    """Old spellings (``target__0`` for ``--target-psnr``) and unlisted negations
    (``compile__no`` for ``--no-compile``) folded into their flag."""
    out = {k: v for k, v in kw.items() if "__" not in k}
    for key, value in kw.items():
        if "__" in key and value is not None:
            name, how = key.split("__")
            if out.get(name) is None:
                out[name] = (not value) if how == "no" else value
    return out


def make_command(func: Callable[..., Any], flags: Mapping[str, Any], run: Callable[[dict[str, Any]], Any],
                 leading: Iterable[inspect.Parameter] = ()) -> Callable[..., None]:
    """A Typer command with ``func``'s name and docstring whose parameters are ``leading``
    (arguments) and ``flags`` (name -> annotation); it calls ``run(values)`` with the
    values by name, old spellings folded in."""
    params = [*leading, *(inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=a)
                          for n, a in flags.items())]

    @functools.wraps(func)
    def command(**kw: Any) -> None:
        run(_fold(kw))

    command.__signature__ = inspect.Signature(params, return_annotation=None)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command


def given(kw: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """The flags among ``names`` that were given (not None), list flags split at commas."""
    out = {}
    for name in names:
        value = kw.get(name)
        if value is None or value == []:
            continue
        if isinstance(value, list):
            value = [part for item in value for part in str(item).replace(",", " ").split()]
        out[name] = value
    return out


def check_resume_flags(kw: Mapping[str, Any], allowed: Iterable[str], ignore: Iterable[str] = ()) -> None:
    """Refuse, in one line, flags given with ``--resume`` that would change the run it continues."""
    allowed = list(allowed)
    fixed = [k for k, v in kw.items() if k not in {*allowed, *ignore, "resume"} and v not in (None, [])]
    if fixed:
        flags = ", ".join("-o" if k == "option" else "--" + k.replace("_", "-") for k in fixed)
        raise CoordfitError(f"--resume continues the run as it was set up; it cannot change {flags} "
                            f"(only {', '.join('--' + f.replace('_', '-') for f in allowed)}): "
                            "drop them, or start a new run")
