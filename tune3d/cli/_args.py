"""Argument parsing shared by the CLI modules."""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import typer

from tune3d.errors import Tune3DError

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def parse_hw(text: str | None, option: str = "--resolution") -> tuple[int, int] | None:
    """``"HxW"`` -> ``(H, W)``; ``None``/empty passes through. Bad text is a one-line user error."""
    if not text:
        return None
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise Tune3DError(f"{option} {text!r}: expected HxW, e.g. 480x640") from None
    if h <= 0 or w <= 0:
        raise Tune3DError(f"{option} {text!r}: sizes must be positive")
    return h, w


def given_on_command_line(ctx: typer.Context) -> set[str]:
    """Names of the parameters the user typed (or set through the environment), not left at default.
    With ``--config`` these win over the file; the others yield to it."""
    typed = ("COMMANDLINE", "ENVIRONMENT")  # by name: typer may bring its own copy of click's enum
    return {name for name in ctx.params if getattr(ctx.get_parameter_source(name), "name", None) in typed}


def _bounds(param: object) -> tuple[float | None, float | None]:
    """An option's ``min``/``max``: this typer keeps them on the option, click on its range type."""
    kind = getattr(param, "type", None)
    pick = [getattr(param, k, None) for k in ("min", "max")]
    return tuple(v if v is not None else getattr(kind, k, None) for v, k in zip(pick, ("min", "max")))


def resolve_command_config(
    ctx: typer.Context, cls: type[T], path: Path | None, values: dict, given: Iterable[str], **kw: Any
) -> T:
    """:func:`tune3d.config.resolve_config` for a command, then the options' ``min``/``max`` bounds applied
    to the result: a value from the ``--config`` file never passed through the option, so check it here."""
    from tune3d.config import resolve_config

    cfg = resolve_config(cls, path, values, given, **kw)
    for param in ctx.command.params:
        low, high = _bounds(param)
        value = getattr(cfg, param.name or "", None)
        if (low is None and high is None) or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        if (low is not None and value < low) or (high is not None and value > high):
            bound = f">= {low}" if low is not None and value < low else f"<= {high}"
            where = f"{path}: config key {param.name!r}" if path is not None else param.opts[0]
            raise Tune3DError(f"{where} = {value}: must be {bound}")
    return cfg


def _flag(field: dataclasses.Field) -> str:
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def _unwrap(hint: Any) -> tuple[Any, bool]:
    """``X | None`` -> ``(X, True)``; any other annotation -> ``(it, False)``."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0], True
    return hint, False


def _field_option(field: dataclasses.Field, hint: Any) -> inspect.Parameter:
    """The typer option of one config field. ``tuple[int, int]`` fields are typed as ``HxW`` text and
    ``path`` fields as paths; :func:`config_values` converts both back."""
    meta = field.metadata
    base, optional = _unwrap(hint)
    default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
    flag = _flag(field)
    if typing.get_origin(base) is tuple:
        if typing.get_args(base) != (int, int):
            raise TypeError(f"{field.name}: only tuple[int, int] (HxW) fields become options, not {base}")
        base, default = str, None if default is None else "x".join(str(v) for v in default)
    elif meta.get("path"):
        base, default = Path, None if default is None else Path(default)
    if base is bool and default is True and "/" not in flag:
        flag = f"{flag}/--no-{flag[2:]}"  # a flag that is on by default needs a way to turn it off
    bounds = {"min": meta["min"]} if meta.get("min") is not None else {}
    opt = typer.Option(default, flag, help=meta.get("help"), **bounds)
    annotation = base | None if optional else base
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    return inspect.Parameter(field.name, kind, default=opt, annotation=annotation)


def config_options(cls: type, *, after: str, skip: Iterable[str] = ()) -> Callable[[F], F]:
    """Give a typer command one option per field of dataclass ``cls`` (except ``skip``), in field order
    after its parameter ``after``; the command takes them as ``**fields``. Each is ``--field-name`` unless
    the field's metadata names a ``flag``, with the field's default and the ``help`` and ``min`` of
    :func:`tune3d.config.option`, so a new config field is a new option. :func:`config_values` reads them."""
    hints, skip = typing.get_type_hints(cls), set(skip)
    derived = [_field_option(f, hints[f.name]) for f in dataclasses.fields(cls) if f.name not in skip]

    def wrap(fn: F) -> F:
        params = inspect.signature(fn, eval_str=True).parameters.values()
        own = [p for p in params if p.kind is not p.VAR_KEYWORD]
        clash = {p.name for p in own} & {p.name for p in derived}
        if clash:
            raise TypeError(f"{fn.__name__}: parameters {sorted(clash)} are also {cls.__name__} fields")
        at = [p.name for p in own].index(after) + 1
        fn.__signature__ = inspect.Signature(own[:at] + derived + own[at:])  # type: ignore[attr-defined]
        return fn

    return wrap


def config_values(ctx: typer.Context, cls: type) -> dict[str, Any]:
    """The values of the options :func:`config_options` made, by field name: ``HxW`` text parsed into
    ``(H, W)``, paths turned back into text. Skipped fields (no option) are left out."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if field.name not in ctx.params:
            continue
        value = ctx.params[field.name]
        if typing.get_origin(_unwrap(hints[field.name])[0]) is tuple:
            value = parse_hw(value, _flag(field))
        elif isinstance(value, Path):
            value = str(value)
        values[field.name] = value
    return values
