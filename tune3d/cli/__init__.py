"""The one ``tune3d`` command. Subcommands are thin: parse arguments, call a stage.

Each area registers its commands from ``tune3d/cli/<area>.py`` (``register(app)``); heavy imports
(torch, timm, ...) happen inside the command functions so ``tune3d --help`` stays fast.
User errors (:class:`tune3d.errors.Tune3DError`) print one line and exit with code 2.
"""

from __future__ import annotations

import sys

import typer

from tune3d import __version__
from tune3d.errors import Tune3DError

app = typer.Typer(
    name="tune3d",
    help="tune3d: make vision foundation models 3D-aware by fine-tuning them (FiT3D, Fin3R).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tune3d {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """tune3d: make vision foundation models 3D-aware by fine-tuning them (FiT3D, Fin3R)."""


def _register_all() -> None:
    from tune3d.cli import backbones, data, demo, fin3r, fit3d, probe, recon, splatting

    for module in (data, backbones, splatting, fit3d, probe, recon, fin3r, demo):
        module.register(app)
    __import__("tune3d.cli.benchmark", fromlist=["register"]).register(app)
    __import__("tune3d.cli.view", fromlist=["register"]).register(app)


_register_all()


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    try:
        app(args=argv, standalone_mode=True)
    except SystemExit as e:
        if _interrupted(e):  # typer turns Ctrl-C into a silent ``Exit(130)``
            print("tune3d: interrupted", file=sys.stderr)
        raise
    except Tune3DError as e:
        print(f"tune3d: error: {' '.join(str(e).split())}", file=sys.stderr)  # always one line
        sys.exit(2)
    except KeyboardInterrupt:
        print("tune3d: interrupted", file=sys.stderr)
        sys.exit(130)


def _interrupted(e: BaseException) -> bool:
    """True when ``e`` was caused (at any depth) by a KeyboardInterrupt."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, KeyboardInterrupt):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


if __name__ == "__main__":  # pragma: no cover
    main()
