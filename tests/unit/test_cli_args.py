"""``tune3d.cli._args.config_options``: a command's options made from its config dataclass's fields."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from tune3d.cli._args import _bounds, config_options, config_values
from tune3d.config import option


@dataclasses.dataclass
class Cfg:
    steps: int = option(10, "Optimisation steps.", min=1)
    lam: float = option(0.5, flag="--lambda")
    resolution: tuple[int, int] | None = option((4, 6), "HxW.")
    cache: str | None = option(None, path=True)
    fast: bool = False
    progress: bool = True
    name: str = "a"


def _app() -> tuple[typer.Typer, dict]:
    seen: dict[str, Any] = {}

    @config_options(Cfg, after="out", skip=("name",))
    def cmd(
        ctx: typer.Context,
        out: Path = typer.Option(..., "--out"),
        quiet: bool = typer.Option(False, "--quiet"),
        **fields: Any,
    ) -> None:
        seen.update(config_values(ctx, Cfg), out=out, quiet=quiet, fields=fields)

    app = typer.Typer()
    app.command()(cmd)
    app.command("other")(lambda: None)  # two commands: the first is then called by name
    return app, seen


def test_options_follow_the_fields():
    app, _ = _app()
    params = typer.main.get_command(app).commands["cmd"].params
    names = [(p.name, p.opts, p.secondary_opts) for p in params]
    assert names == [
        ("out", ["--out"], []),
        ("steps", ["--steps"], []),
        ("lam", ["--lambda"], []),
        ("resolution", ["--resolution"], []),
        ("cache", ["--cache"], []),
        ("fast", ["--fast"], []),
        ("progress", ["--progress"], ["--no-progress"]),  # on by default: it can be turned off
        ("quiet", ["--quiet"], []),
    ]
    steps = params[1]
    assert steps.default == 10 and steps.help == "Optimisation steps." and _bounds(steps) == (1, None)
    assert params[3].default == "4x6"


def test_values_come_back_as_field_values(tmp_path):
    app, seen = _app()
    argv = ["cmd", "--out", str(tmp_path), "--lambda", "2", "--resolution", "8x12", "--cache", "c", "--fast"]
    r = CliRunner().invoke(app, argv)
    assert r.exit_code == 0, r.output
    assert seen["fields"]["lam"] == 2.0
    fields = {k: seen[k] for k in ("steps", "lam", "resolution", "cache", "fast", "progress")}
    assert fields == dict(steps=10, lam=2.0, resolution=(8, 12), cache="c", fast=True, progress=True)
    assert "name" not in seen and seen["out"] == tmp_path
    assert Cfg(**fields, name="b").resolution == (8, 12)
    r = CliRunner().invoke(app, ["cmd", "--out", str(tmp_path), "--steps", "0"])
    assert r.exit_code == 2 and "--steps" in r.output  # the field's min bound


def test_distill_has_an_option_per_config_field():
    from tune3d.cli.fin3r import distill_cmd
    from tune3d.fin3r.config import DistillConfig

    app = typer.Typer()
    app.command()(distill_cmd)
    params = {p.name: p for p in typer.main.get_command(app).params}
    fields = {f.name for f in dataclasses.fields(DistillConfig)} - {"progress"}  # progress is --quiet
    assert fields <= set(params)
    assert params["lam"].opts == ["--lambda"] and params["grad_clip"].default == 1.0
    for f in dataclasses.fields(DistillConfig):
        if f.name in fields and f.name not in ("resolution", "teacher_cache"):
            assert params[f.name].default == f.default, f.name


def test_cli_start_up_imports_no_torch_peft_or_yaml():
    code = (
        "import sys, tune3d.cli, tune3d.fin3r, tune3d.fin3r.config; "
        "print(sorted(m for m in ('torch', 'peft', 'timm', 'yaml') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "[]"


def test_a_field_without_an_option_type_is_refused():
    @dataclasses.dataclass
    class Bad:
        sizes: tuple[int, int, int] = (1, 2, 3)

    with pytest.raises(TypeError, match="sizes: only tuple"):
        config_options(Bad, after="out")
