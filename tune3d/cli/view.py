"""CLI: ``tune3d view`` (a local web viewer for a run folder)."""

from __future__ import annotations

from pathlib import Path

import typer


def view_cmd(
    run_dir: Path = typer.Argument(..., help="A `tune3d reconstruct` or `tune3d lift` output folder."),
    port: int = typer.Option(
        8080, "--port", "-p", min=0, max=65535, help="Port (the next free one if taken)."
    ),
    max_points: int = typer.Option(
        300_000, "--max-points", min=0, help="Points per layer at most (random subset; 0 = all)."
    ),
) -> None:
    """Serve a web viewer of a run folder on 127.0.0.1 (point clouds, cameras, lifted feature Gaussians,
    depth/confidence images) until Ctrl-C."""
    import time

    from tune3d.viz.viewer import load_run, serve, url

    run = load_run(run_dir, max_points=max_points)
    server = serve(run, port=port)
    try:
        typer.echo(f"tune3d view: {run.path}: {run.summary()}")
        typer.echo(f"open {url(server)} (Ctrl-C to stop)")
        while True:
            time.sleep(3600)
    finally:
        server.stop()


def register(app: typer.Typer) -> None:
    """Register this area's commands on the root app."""
    app.command("view")(view_cmd)
