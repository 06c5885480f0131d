"""``tune3d finetune`` end to end on tiny lifted scenes, then ``tune3d features`` on the exported weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
NAME = "dinov2_vits14_tiny"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tune3d", *args], capture_output=True, text=True, env=ENV, timeout=240
    )


@pytest.fixture(scope="module")
def lifted(tmp_path_factory):
    from tune3d.data import write_scene
    from tune3d.data.synth import generate_scene
    from tune3d.fit3d.lifted import write_random_lifted

    root = tmp_path_factory.mktemp("cli_ft")
    for i in range(2):
        write_scene(generate_scene(i, num_views=4, height=42, width=56, num_points=1000), root / f"scene{i}")
        write_random_lifted(
            root / f"scene{i}", root / "lifted" / f"s{i}", 32, backbone=NAME, seed=i, holdout_every=2
        )
    return root


def test_finetune_cli_writes_a_loadable_backbone(lifted):
    out = lifted / "out"
    r = run(
        "finetune",
        "--lifted",
        str(lifted / "lifted" / "s0"),
        "--val-lifted",
        str(lifted / "lifted" / "s1"),
        "-b",
        NAME,
        "--allow-random-init",
        "--out",
        str(out),
        "--epochs",
        "2",
        "--lr",
        "1e-3",
        "--checkpoint-every",
        "1",
        "--views",
        "all",
        "--no-progress",
    )
    assert r.returncode == 0, r.stderr
    assert "finetune: 4 steps" in r.stdout
    m = json.loads((out / "metrics.json").read_text())
    assert (
        m["steps"] == 4 and m["train_views"] == 4 and m["val_views"] == 4
    )  # views=all: 2 train + 2 held out
    assert m["val_loss_before"] is not None and m["val_loss_after"] is not None
    assert (out / "tb").is_dir() and (out / "checkpoints").is_dir() and (out / "config.yaml").is_file()

    feats = lifted / "feats"
    r = run(
        "features",
        str(lifted / "scene0"),
        "-b",
        NAME,
        "--weights",
        str(out / "backbone.safetensors"),
        "--out",
        str(feats),
    )
    assert r.returncode == 0, r.stderr


def test_finetune_cli_bad_inputs_exit_2(lifted, tmp_path):
    r = run(
        "finetune",
        "--lifted",
        str(tmp_path / "missing"),
        "-b",
        NAME,
        "--allow-random-init",
        "--out",
        str(tmp_path / "o"),
    )
    assert r.returncode == 2 and r.stderr.strip().startswith("tune3d: error:") and "not found" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr

    from tune3d.fit3d.lifted import write_random_lifted

    write_random_lifted(lifted / "scene0", tmp_path / "wide", 48, backbone="dinov2_vitb14_tiny")
    r = run(
        "finetune",
        "--lifted",
        str(tmp_path / "wide"),
        "-b",
        NAME,
        "--allow-random-init",
        "--out",
        str(tmp_path / "o2"),
    )
    assert r.returncode == 2 and "48-d but dinov2_vits14_tiny has width 32" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
