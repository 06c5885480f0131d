"""Corrupted inputs must raise Tune3DError (never another exception), naming the file."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from data_helpers import tiny_scene, write_colmap_fixture, write_nerfstudio_fixture
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tune3d.data import load_scene, write_scene
from tune3d.errors import Tune3DError

SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    root = tmp_path_factory.mktemp("tpl")
    s = tiny_scene(views=2, points=100)
    write_scene(s, root / "native")
    write_nerfstudio_fixture(s, root / "ns")
    write_colmap_fixture(s, root / "cbin", binary=True)
    write_colmap_fixture(s, root / "ctxt", binary=False)
    return root


def _load_everything(path: Path) -> None:
    s = load_scene(path)
    for f in s.frames:
        f.image(), f.depth(), f.semantics()


def _copy(templates: Path, name: str) -> Path:
    dst = Path(tempfile.mkdtemp()) / name
    shutil.copytree(templates / name, dst)
    return dst


CORRUPTIBLE = [
    ("native", "scene.json"),
    ("native", "depth/000000.npy"),
    ("native", "semantics/000001.png"),
    ("native", "images/000000.png"),
    ("native", "points.ply"),
    ("ns", "transforms.json"),
    ("ns", "depth/000.png"),
    ("cbin", "sparse/0/cameras.bin"),
    ("cbin", "sparse/0/images.bin"),
    ("cbin", "sparse/0/points3D.bin"),
    ("ctxt", "sparse/0/images.txt"),
    ("ctxt", "sparse/0/cameras.txt"),
]


@SETTINGS
@given(which=st.sampled_from(CORRUPTIBLE), frac=st.floats(0.0, 0.95))
def test_truncated_files(templates, which, frac):
    root = _copy(templates, which[0])
    f = root / which[1]
    data = f.read_bytes()
    f.write_bytes(data[: int(len(data) * frac)])
    try:
        _load_everything(root)
    except Tune3DError as e:
        assert str(e)
    # Some truncations still parse (e.g. a text file cut after a whole record): that is fine.
    shutil.rmtree(root.parent)


@SETTINGS
@given(
    pos=st.integers(0, 10_000),
    junk=st.binary(min_size=1, max_size=8),
    which=st.sampled_from(["native", "ns"]),
)
def test_garbled_json(templates, pos, junk, which):
    root = _copy(templates, which)
    f = root / ("scene.json" if which == "native" else "transforms.json")
    data = f.read_bytes()
    pos = pos % len(data)
    f.write_bytes(data[:pos] + junk + data[pos + len(junk) :])
    try:
        _load_everything(root)
    except Tune3DError:
        pass
    shutil.rmtree(root.parent)


@SETTINGS
@given(
    i=st.integers(0, 2),
    j=st.integers(0, 2),
    value=st.sampled_from([float("nan"), float("inf"), 3.0, -0.5, 0.0]),
)
def test_broken_pose_native(templates, i, j, value):
    root = _copy(templates, "native")
    meta = json.loads((root / "scene.json").read_text())
    meta["frames"][1]["c2w"][i][j] = value
    (root / "scene.json").write_text(json.dumps(meta))
    R = np.array(meta["frames"][1]["c2w"])[:3, :3]
    broken = not np.isfinite(R).all() or not np.allclose(R @ R.T, np.eye(3), atol=1e-3)
    if broken:
        with pytest.raises(Tune3DError, match="frame 1"):
            load_scene(root)
    shutil.rmtree(root.parent)


@SETTINGS
@given(value=st.sampled_from([float("nan"), float("inf"), -1.0]), y=st.integers(0, 23), x=st.integers(0, 31))
def test_bad_depth_values(templates, value, y, x):
    root = _copy(templates, "native")
    p = root / "depth" / "000000.npy"
    d = np.load(p)
    d[y, x] = value
    np.save(p, d)
    s = load_scene(root)
    with pytest.raises(Tune3DError, match="000000.npy: depth has"):
        s[0].depth()
    shutil.rmtree(root.parent)


@SETTINGS
@given(which=st.sampled_from(["ns", "ctxt"]), value=st.sampled_from(["nan", "inf", "2.5"]))
def test_broken_pose_nerfstudio_and_colmap(templates, which, value):
    root = _copy(templates, which)
    if which == "ns":
        meta = json.loads((root / "transforms.json").read_text())
        meta["frames"][0]["transform_matrix"][0][1] = float(value)
        (root / "transforms.json").write_text(json.dumps(meta))
        match = "transforms.json frame 0"
    else:
        f = root / "sparse" / "0" / "images.txt"
        lines = f.read_text().splitlines()
        tok = lines[1].split()
        tok[5] = value  # tx
        tok[1] = "0" if value == "2.5" else tok[1]
        lines[1] = " ".join(tok)
        f.write_text("\n".join(lines) + "\n")
        match = "images.txt"
    if value == "2.5" and which == "ctxt":
        load_scene(root)  # a translation of 2.5 with a valid quaternion is fine
    else:
        with pytest.raises(Tune3DError, match=match):
            load_scene(root)
    shutil.rmtree(root.parent)


def test_empty_and_missing(tmp_path, templates):
    root = _copy(templates, "native")
    meta = json.loads((root / "scene.json").read_text())
    meta["frames"] = []
    (root / "scene.json").write_text(json.dumps(meta))
    with pytest.raises(Tune3DError, match="no frames"):
        load_scene(root)
    root = _copy(templates, "native")
    (root / "images" / "000001.png").unlink()
    s = load_scene(root)
    with pytest.raises(Tune3DError, match="000001.png: file not found"):
        s[1].image()
    root = _copy(templates, "ns")
    meta = json.loads((root / "transforms.json").read_text())
    meta["frames"] = []
    (root / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(Tune3DError, match="no frames"):
        load_scene(root)
