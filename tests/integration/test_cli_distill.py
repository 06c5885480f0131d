"""``tune3d distill`` end to end on a tiny synthetic room, and its one-line errors on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_helpers import one_error_line as _one_line_error

from tune3d.io import load_safetensors


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tune3d", *args], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory) -> Path:
    synth = pytest.importorskip("tune3d.data.synth")
    path = tmp_path_factory.mktemp("scene") / "room"
    scene = synth.generate_scene(0, num_views=8, height=48, width=64, num_points=0, test_every=4)
    synth.write_scene(scene, path)
    return path


def _base(scene_dir: Path, out: Path) -> list[str]:
    return [
        "distill",
        "--model",
        "dust3r_tiny",
        "--allow-random-init",
        "--mono",
        str(scene_dir),
        "--out",
        str(out),
        "--resolution",
        "48x64",
        "--batch-size",
        "2",
        "--quiet",
    ]


def test_distill_cli_writes_outputs(cli, scene_dir, tmp_path):
    out = tmp_path / "run"
    args = [
        *_base(scene_dir, out),
        *("--teacher", "sensor", "--replay", str(scene_dir), "--steps", "3", "--replay-ratio", "0.5"),
        *("--form", "renorm", "--diag-images", "2", "--eval-images", "2"),
    ]
    r = _run(*args)
    assert r.returncode == 0, r.stderr
    for f in (
        "adapter.safetensors",
        "config.yaml",
        "metrics.json",
        "metrics.jsonl",
        "diagnostics/feature_norms.json",
        "diagnostics/norms_all.png",
    ):
        assert (out / f).is_file(), f
    assert any((out / "tb").iterdir())
    m = json.loads((out / "metrics.json").read_text())
    assert m["steps"] == 3 and m["teacher"] == "sensor" and m["model"] == "dust3r_tiny"
    assert m["base_weights"] is None and m["form"] == "renorm" and m["trainable_params"] == 4 * 2 * 8 * 96 * 2
    assert m["mono_depth"]["held_out"] is True
    # a second call resumes the finished run: nothing to do, same adapter
    before = load_safetensors(out / "adapter.safetensors")
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    after = load_safetensors(out / "adapter.safetensors")
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


# The error cases run in-process (the `cli` fixture): same exit code and message handling as the console
# script, without paying a subprocess's torch/peft imports for each of them.


def test_unknown_teacher(cli, scene_dir, tmp_path):
    _one_line_error(
        cli(*_base(scene_dir, tmp_path / "o"), "--teacher", "oracle:x", "--replay-ratio", "0"),
        "unknown teacher",
    )


def test_missing_data(cli, scene_dir, tmp_path):
    _one_line_error(
        cli(*_base(tmp_path / "nowhere", tmp_path / "o"), "--teacher", "sensor", "--replay-ratio", "0"),
        "nowhere",
    )
    _one_line_error(cli(*_base(scene_dir, tmp_path / "o"), "--teacher", "sensor"), "--replay")


def test_sensor_teacher_needs_depth(cli, tmp_path):
    from PIL import Image

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.new("RGB", (64, 48), (10, 20, 30)).save(imgs / "a.png")
    _one_line_error(cli(*_base(imgs, tmp_path / "o"), "--teacher", "sensor", "--replay-ratio", "0"), "depth")


def test_model_without_encoder_pattern(cli, scene_dir, tmp_path, monkeypatch):
    from tune3d.recon import _registry as registry
    from tune3d.recon.croco.dust3r import TINY, DUSt3R

    class NoPattern(DUSt3R):
        encoder_qkv_pattern = ""

    entry = registry.ModelEntry("nopattern_tiny", "dust3r", lambda **kw: NoPattern(TINY), official=False)
    monkeypatch.setitem(registry._REGISTRY, "nopattern_tiny", entry)
    args = _base(scene_dir, tmp_path / "o")
    args[args.index("dust3r_tiny")] = "nopattern_tiny"
    _one_line_error(cli(*args, "--teacher", "sensor", "--replay-ratio", "0"), "encoder qkv pattern")
