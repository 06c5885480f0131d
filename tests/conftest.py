"""Shared fixtures. Tests that need the shared 7-Scenes data skip with a reason when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SEVEN_SCENES = Path(os.environ.get("TUNE3D_7SCENES", REPO.parent / "shared" / "data" / "7scenes-redkitchen"))

# Two xdist workers on two cores: one intra-op thread each avoids oversubscription.
torch.set_num_threads(int(os.environ.get("TUNE3D_TEST_THREADS", "1")))


@pytest.fixture(scope="session")
def seven_scenes() -> Path:
    if not (SEVEN_SCENES / "camera-intrinsics.txt").is_file():
        pytest.skip(f"7-Scenes data not found at {SEVEN_SCENES} (set TUNE3D_7SCENES)")
    return SEVEN_SCENES


class CliResult:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run_cli_inprocess(*args: str) -> CliResult:
    """Run ``tune3d ARGS`` in this process, with the console script's exit-code and error handling.

    Saves the 5-15 s of torch/peft imports a subprocess pays; keep subprocesses for end-to-end runs.
    """
    import contextlib
    import io

    from tune3d.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture
def cli():
    """``cli(*args) -> CliResult`` running the CLI in-process."""
    return run_cli_inprocess
