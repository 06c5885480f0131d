"""``tune3d backbones`` and ``tune3d features`` end to end (tiny random-init model, 7-Scenes frames)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tune3d", *args], capture_output=True, text=True, env=ENV)


def test_backbones_json():
    r = run("backbones", "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["dinov2_vits14"]["timm_name"] == "vit_small_patch14_dinov2.lvd142m"
    assert rows["dinov2_vits14_reg"]["timm_name"] == "vit_small_patch14_reg4_dinov2.lvd142m"
    assert rows["clip_vitb16"]["patch_size"] == 16 and rows["dinov2_vitg14"]["width"] == 1536
    assert "dinov2_vits14_pretrain.pth" in rows["dinov2_vits14"]["weights_source"]
    assert "dinov2_vits14_tiny" not in rows  # test variants only with --tiny


def test_features_on_7scenes_with_cache(seven_scenes, tmp_path):
    from safetensors.torch import load_file

    out, cache = tmp_path / "out", tmp_path / "cache"
    args = [
        "features",
        str(seven_scenes),
        "-b",
        "dinov2_vits14_tiny",
        "--allow-random-init",
        "--frames",
        "0:30:10",
    ]
    r = run(*args, "--out", str(out), "--cache", str(cache), "--batch-size", "2")
    assert r.returncode == 0, r.stderr
    meta = json.loads((out / "meta.json").read_text())
    assert (
        meta["weights"] == "random-init"
        and meta["grid_size"] == [34, 46]
        and meta["input_size"] == [476, 644]
    )
    assert meta["patch_size"] == 14 and meta["frames"] == ["frame-000000", "frame-000010", "frame-000020"]
    feats = load_file(str(out / "features.safetensors"))
    assert set(feats) == set(meta["frames"]) and feats["frame-000010"].shape == (32, 34, 46)
    png = np.asarray(Image.open(out / "pca" / "frame-000010.png"))
    assert png.shape == (476, 644, 3) and png.std() > 10  # structured, not flat
    assert meta["cache"]["misses"] == 3

    r2 = run(*args, "--out", str(tmp_path / "out2"), "--cache", str(cache))
    assert r2.returncode == 0, r2.stderr
    meta2 = json.loads((tmp_path / "out2" / "meta.json").read_text())
    assert meta2["cache"]["hits"] == 3 and meta2["cache"]["misses"] == 0
    feats2 = load_file(str(tmp_path / "out2" / "features.safetensors"))
    assert all((feats[k] == feats2[k]).all() for k in feats)


def test_features_pad_mode_and_resolution(seven_scenes, tmp_path):
    r = run(
        "features", str(seven_scenes), "-b", "dinov2_vits14_reg_tiny", "--allow-random-init", "--frames", "5",
        "--resize", "pad", "--resolution", "240x320", "--out", str(tmp_path / "a"),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    meta = json.loads((tmp_path / "a" / "meta.json").read_text())
    assert (
        meta["image_size"] == [240, 320]
        and meta["input_size"] == [252, 322]
        and meta["grid_size"] == [18, 23]
    )


@pytest.mark.parametrize(
    "extra,message",
    [
        (["-b", "dinov9_vits14"], "unknown backbone 'dinov9_vits14'"),
        (["-b", "dinov2_vits14_tiny"], "--allow-random-init"),
    ],
)
def test_features_errors_are_one_line(cli, seven_scenes, tmp_path, extra, message):
    r = cli("features", str(seven_scenes), *extra, "--frames", "0", "--out", str(tmp_path / "o"))
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("tune3d: error:") and len(r.stderr.strip().splitlines()) == 1
