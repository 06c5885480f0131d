"""CLI commands for the probe area (work in progress)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Register this area's commands on the root app."""
