"""``tune3d datasets``, ``data info --dataset`` and ``probe --dataset`` on tiny official-layout fixtures."""

from __future__ import annotations

import json

import numpy as np
import pytest
from benchmark_fixtures import write_mmseg_seg, write_nyu_depth

TINY = ("--backbone", "dinov2_vits14_tiny", "--allow-random-init", "--no-progress")


def test_datasets_lists_names_and_layouts(cli):
    r = cli("datasets", "--json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    names = [row["name"] for row in rows]
    for n in ("nyuv2-seg13", "nyuv2-seg40", "nyuv2-depth", "ade20k", "voc2012", "kitti-eigen", "scannet"):
        assert n in names
    assert all(row["layout"] for row in rows)


def test_data_info_dataset_json(cli, tmp_path):
    root = write_mmseg_seg(tmp_path / "nyu", 13, n_train=3, n_val=2)
    r = cli("data", "info", root, "--dataset", "nyuv2-seg13", "--split", "val", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["num_samples"] == 2 and info["task"] == "semseg" and info["num_classes"] == 13
    assert info["split"] == "val"
    (tmp_path / "empty").mkdir()
    bad = cli("data", "info", tmp_path / "empty", "--dataset", "nyuv2-depth", "--json")
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tune3d: error:") and "nyu_test.txt" in lines[0]


def test_probe_dataset_fast_semseg(cli, tmp_path):
    root = write_mmseg_seg(tmp_path / "nyu", 13, n_train=3, n_val=2, size=(28, 42))
    out = tmp_path / "seg"
    r = cli("probe", "--dataset", "nyuv2-seg13", "--root", root, "--task", "semseg", *TINY,
            "--mode", "original", "--protocol", "fast", "--iters", "10", "--out", out)  # fmt: skip
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "metrics.json").read_text())
    for k in ("miou", "macc", "aacc"):
        assert 0.0 <= m[k] <= 1.0
    assert len(m["per_class_iou"]) == 13 and "wall" in m["per_class_iou"]


def test_probe_dataset_fast_depth_uses_dataset_range(cli, tmp_path):
    root = write_nyu_depth(tmp_path / "nyud", n_train=2, n_test=2, size=(28, 42))
    out = tmp_path / "depth"
    r = cli("probe", "--dataset", "nyuv2-depth", "--root", root, "--split-test", "test", "--task", "depth",
            *TINY, "--mode", "duplicated", "--iters", "10", "--out", out)  # fmt: skip
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "metrics.json").read_text())
    for k in ("rmse", "abs_rel", "delta1"):
        assert np.isfinite(m[k])
    cfg = (out / "config.yaml").read_text()
    assert "dataset: nyuv2-depth" in cfg and "max_depth: 10.0" in cfg and "feature_width: 64" in cfg


@pytest.mark.parametrize(
    "args,msg",
    [
        (("--dataset", "nyuv2-seg13"), "--dataset needs --root"),
        (("--dataset", "nope", "--root", "."), "unknown dataset"),
        (("--protocol", "paper", "--train", ".", "--test", "."), "--protocol paper needs --dataset"),
        (("--dataset", "nyuv2-seg13", "--root", ".", "--amp", "fp8"), "--amp 'fp8'"),
    ],
)
def test_probe_dataset_bad_arguments(cli, tmp_path, args, msg):
    r = cli("probe", "--task", "semseg", *TINY, *args, "--out", tmp_path / "x")
    assert r.returncode == 2 and msg in r.stderr
    assert not (tmp_path / "x").exists()
