"""Argument parsing shared by the CLI modules."""

from __future__ import annotations

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
