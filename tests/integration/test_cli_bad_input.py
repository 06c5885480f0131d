"""Issue 13: bad input and wrong defaults a new user meets, each checked where the user meets it (the CLI).

Every user error must end with one ``tune3d: error: ...`` line and exit code 2, never a traceback.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from conftest import run_cli_inprocess as cli

LIFT_TINY = [
    "--backbone", "dinov2_vits14_tiny", "--allow-random-init", "--latent-dim", "8",
    "--feature-resolution", "28x42", "--init-points", "300", "--max-gaussians", "400", "-q",
]  # fmt: skip


def one_error_line(r, needle: str) -> str:
    """The single ``tune3d: error:`` line of a failed run, checked to contain ``needle``."""
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert len(lines) == 1 and lines[0].startswith("tune3d: error:"), r.stderr
    assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    """Two tiny synthetic scenes in ``ROOT/data/scene_00{0,1}``."""
    from tune3d.data.synth import synth_dataset

    root = tmp_path_factory.mktemp("badinput")
    synth_dataset(root / "data", scenes=2, views=4, resolution=(24, 32), seed=0, num_points=300)
    return root


# 1. Lifted scenes work from any folder: absolute source paths, a content fingerprint, --scene-root.
def test_lifted_scene_relocates_with_scene_root(scenes, tmp_path, monkeypatch):
    shutil.copytree(scenes / "data", tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    r = cli("lift", "data/scene_000", *LIFT_TINY, "--iters", "2", "--out", "lifted/s0")
    assert r.returncode == 0, r.stderr
    rec = yaml.safe_load((tmp_path / "lifted" / "s0" / "config.yaml").read_text())["scene"]
    assert Path(rec["path"]).is_absolute() and Path(rec["path"]) == tmp_path / "data" / "scene_000"
    assert isinstance(rec["fingerprint"], str) and len(rec["fingerprint"]) == 16

    (tmp_path / "data").rename(tmp_path / "moved")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    ft = ["finetune", "--lifted", str(tmp_path / "lifted" / "s0"), "-b", "dinov2_vits14_tiny",
          "--allow-random-init", "--max-steps", "1", "--no-progress"]  # fmt: skip
    one_error_line(cli(*ft, "--out", "o1"), "pass --scene-root")
    # another scene under the same folder name is refused by its fingerprint
    (tmp_path / "other").mkdir()
    shutil.copytree(tmp_path / "moved" / "scene_001", tmp_path / "other" / "scene_000")
    one_error_line(cli(*ft, "--out", "o2", "--scene-root", "../other"), "not the scene that was lifted")
    r = cli(*ft, "--out", "o3", "--scene-root", "../moved")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "elsewhere" / "o3" / "backbone.safetensors").is_file()
