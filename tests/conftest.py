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
