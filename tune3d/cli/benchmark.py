"""CLI: ``tune3d datasets`` (benchmark datasets and their layouts) and ``tune3d benchmark`` (suites)."""

from __future__ import annotations

import json

import typer


def datasets_cmd(
    as_json: bool = typer.Option(False, "--json", help="One JSON object per dataset."),
) -> None:
    """List the benchmark datasets with their tasks, classes and expected folder layout."""
    from tune3d.data.benchmarks import DATASETS

    for name, d in DATASETS.items():
        if as_json:
            row = {
                "name": name,
                "tasks": list(d.all_tasks),
                "num_classes": d.num_classes,
                "splits": list(d.splits),
                "max_depth": d.max_depth if "depth" in d.all_tasks else None,
                "layout": d.layout,
            }
            typer.echo(json.dumps(row))
            continue
        what = f"{d.num_classes} classes" if d.num_classes else f"depth <= {d.max_depth:g} m"
        typer.echo(f"{name:12s} {'/'.join(d.all_tasks):13s} {what}\n    layout: {d.layout}")


def register(app: typer.Typer) -> None:
    """Register this area's commands on the root app."""
    app.command("datasets")(datasets_cmd)
