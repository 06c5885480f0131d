"""Argument parsing shared by the CLI modules."""

from __future__ import annotations

import typer

from tune3d.errors import Tune3DError


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
