"""``tune3d probe`` end to end: tiny synthetic scenes and random backbone, both tasks, the no-labels error."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tune3d", *args], capture_output=True, text=True, env=ENV)


def probe(task: str, *args: str) -> subprocess.CompletedProcess:
    """``tune3d probe`` of the random tiny DINOv2 on ``task``."""
    return run("probe", "--task", task, "--backbone", "dinov2_vits14_tiny", "--allow-random-init", *args)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Two labelled synthetic rooms (train, test) and one copy of the test room without labels."""
    from tune3d.data import Scene, in_memory_frame, write_scene
    from tune3d.data.synth import generate_scene

    root = tmp_path_factory.mktemp("probe_data")
    train = generate_scene(1, num_views=6, height=32, width=48, num_points=0)
    test = generate_scene(2, num_views=4, height=32, width=48, num_points=0)
    write_scene(train, root / "train")
    write_scene(test, root / "test")
    frames = [in_memory_frame(f.name, f.c2w, f.K, f.image(), f.depth(), None) for f in test]
    write_scene(Scene(name="nolabels", frames=frames), root / "nolabels")
    return root


def test_probe_semseg_original(scenes, tmp_path):
    out = tmp_path / "seg"
    data = ["--train", str(scenes / "train"), "--test", str(scenes / "test")]
    r = probe("semseg", "--mode", "original", *data, "--iters", "20", "--no-progress", "--out", str(out))
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "metrics.json").read_text())
    for k in ("mIoU", "mAcc", "aAcc"):
        assert 0.0 <= m[k] <= 1.0
    assert m["mode"] == "original" and m["task"] == "semseg"
    assert m["weights"] == "random-init"
    assert "mIoU" in r.stdout
    assert (out / "head.safetensors").is_file() and (out / "config.yaml").is_file()


def test_probe_depth_assembled_with_finetuned_file(scenes, tmp_path):
    """Mode ``assembled`` concatenates original and fine-tuned features: the probe sees twice the width."""
    import torch

    from tune3d.backbones import create_backbone, get_spec, save_backbone

    # a "fine-tuned" checkpoint: the tiny model with perturbed weights, in the tune3d export format
    bb = create_backbone("dinov2_vits14_tiny", allow_random_init=True, device="cpu", seed=3)
    with torch.no_grad():
        for p in bb.timm_model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    save_backbone(bb.timm_model, get_spec("dinov2_vits14_tiny"), tmp_path / "ft")

    out = tmp_path / "depth"
    r = probe("depth", "--mode", "assembled", "--finetuned", str(tmp_path / "ft" / "backbone.safetensors"),
              "--train", str(scenes), "--test", str(scenes / "test"), "--train-frames", "0:3",
              "--iters", "20", "--resolution", "28x42", "--no-progress", "--out", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "metrics.json").read_text())
    for k in ("rmse", "abs_rel", "delta1"):
        assert np.isfinite(m[k])
    assert 0.0 <= m["delta1"] <= 1.0
    assert m["mode"] == "assembled"
    cfg = (out / "config.yaml").read_text()
    assert "feature_width: 64" in cfg  # 2 x 32 channels of the tiny model
    # --train is the dataset folder (3 scenes x frames 0:3), --test one scene of 4 frames
    assert "num_train: 9" in cfg and "num_test: 4" in cfg


def test_probe_semseg_without_labels_is_one_line_error(scenes, tmp_path):
    data = ["--train", str(scenes / "nolabels"), "--test", str(scenes / "test")]
    r = probe("semseg", *data, "--out", str(tmp_path / "x"))
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tune3d: error:")
    assert "no semantic labels" in err[0] and "nolabels" in err[0]
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "x" / "metrics.json").exists()


def test_probe_finetuned_mode_needs_weights(scenes, tmp_path):
    data = ["--train", str(scenes / "train"), "--test", str(scenes / "test")]
    r = probe("depth", "--mode", "finetuned", *data, "--out", str(tmp_path / "y"))
    assert r.returncode == 2
    assert "--finetuned" in r.stderr and "Traceback" not in r.stderr
