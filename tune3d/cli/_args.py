"""Argument parsing shared by the CLI modules."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import typer

from tune3d.errors import Tune3DError

T = TypeVar("T")


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
