"""Readers: 7-Scenes (shared data), nerfstudio axes, COLMAP text == binary, ScanNet++ DSLR, detection."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from data_helpers import tiny_scene, write_colmap_fixture, write_images, write_nerfstudio_fixture

from tune3d.data import detect_format, load_scene
from tune3d.errors import Tune3DError


@pytest.fixture(scope="module")
def scene():
    return tiny_scene(views=3)


def test_seven_scenes_info(seven_scenes):
    s = load_scene(seven_scenes)
    assert s.format == "7scenes" and len(s) == 1000
    f = s[0]
    assert (f.width, f.height) == (640, 480)
    assert f.K[0, 0] == f.K[1, 1] == 585.0 and (f.K[0, 2], f.K[1, 2]) == (320.0, 240.0)
    assert s.has_depth and not s.has_semantics
    d = f.depth()
    assert d.dtype == np.float32 and d.shape == (480, 640) and d.max() < 10 and (d == 0).any()
    assert f.c2w.dtype == np.float64 and np.allclose(f.c2w[3], [0, 0, 0, 1])
    assert f.image().shape == (480, 640, 3)


def test_nerfstudio_hand_made_axes(tmp_path):
    """A camera at (1, 2, 3) looking down world -x with OpenGL up = world +z."""
    (tmp_path / "images").mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(tmp_path / "images" / "a.png")
    # OpenGL camera: x right, y up, z back. Looking along world -x => camera z (back) = world +x.
    # right = world +y... check: right = forward x up = (-1,0,0) x (0,0,1) = (0,1,0).
    T = [[0, 0, 1, 1], [1, 0, 0, 2], [0, 1, 0, 3], [0, 0, 0, 1]]
    meta = {
        "camera_angle_x": 2 * math.atan(3 / 5),
        "frames": [{"file_path": "images/a", "transform_matrix": T}],
    }
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    s = load_scene(tmp_path)
    c2w = s[0].c2w
    np.testing.assert_allclose(c2w[:3, 3], [1, 2, 3])
    np.testing.assert_allclose(c2w[:3, 2], [-1, 0, 0])  # OpenCV z = forward
    np.testing.assert_allclose(c2w[:3, 1], [0, 0, -1])  # OpenCV y = down
    np.testing.assert_allclose(c2w[:3, 0], [0, 1, 0])
    np.testing.assert_allclose(s[0].K[0, 0], 5.0)  # 0.5 * w / tan(fov / 2)
    assert (s[0].width, s[0].height) == (6, 4)


def test_nerfstudio_matches_source(scene, tmp_path):
    write_nerfstudio_fixture(scene, tmp_path)
    s = load_scene(tmp_path)
    assert s.format == "nerfstudio" and len(s) == len(scene)
    for a, b in zip(scene.frames, s.frames):
        np.testing.assert_allclose(b.c2w, a.c2w, atol=1e-12)
        np.testing.assert_array_equal(b.K, a.K)
        np.testing.assert_array_equal(b.image(), a.image())
        np.testing.assert_allclose(b.depth(), a.depth(), atol=6e-4)  # millimetre PNG
        assert b.camera_model == "OPENCV" and b.distortion["k1"] == 0.01


@pytest.mark.parametrize(
    "model", ["PINHOLE", "SIMPLE_PINHOLE", "OPENCV", "SIMPLE_RADIAL", "RADIAL", "OPENCV_FISHEYE"]
)
def test_colmap_text_equals_binary(scene, tmp_path, model):
    write_colmap_fixture(scene, tmp_path / "bin", binary=True, model=model)
    write_colmap_fixture(scene, tmp_path / "txt", binary=False, model=model)
    a, b = load_scene(tmp_path / "bin"), load_scene(tmp_path / "txt")
    assert a.format == b.format == "colmap"
    for fa, fb, f0 in zip(a.frames, b.frames, scene.frames):
        assert fa.name == fb.name and fa.camera_model == fb.camera_model == model
        assert (
            np.array_equal(fa.c2w, fb.c2w) and np.array_equal(fa.K, fb.K) and fa.distortion == fb.distortion
        )
        np.testing.assert_allclose(fa.c2w, f0.c2w, atol=1e-9)
        assert np.array_equal(fa.image(), f0.image())
    assert np.array_equal(a.points, b.points) and np.array_equal(a.point_colors, b.point_colors)
    np.testing.assert_array_equal(a.points, scene.points[:50])


def test_scannetpp_dslr(scene, tmp_path):
    dslr = tmp_path / "0a1b2c" / "dslr"
    write_colmap_fixture(scene, dslr / "tmp", binary=False)
    shutil.move(dslr / "tmp" / "sparse" / "0", dslr / "colmap")
    shutil.move(dslr / "tmp" / "images", dslr / "undistorted_images")
    shutil.rmtree(dslr / "tmp")
    names = sorted(p.name for p in (dslr / "undistorted_images").iterdir())
    f0 = scene[0]
    ident = np.eye(4).tolist()  # ScanNet++ nerfstudio poses are in another frame: colmap wins
    meta = {
        "camera_model": "PINHOLE", "fl_x": f0.K[0, 0], "fl_y": f0.K[1, 1], "cx": f0.K[0, 2], "cy": f0.K[1, 2],
        "w": f0.width, "h": f0.height,
        "frames": [{"file_path": n, "transform_matrix": ident, "is_bad": False} for n in names[:2]],
        "test_frames": [{"file_path": names[2], "transform_matrix": ident, "is_bad": False}],
    }  # fmt: skip
    (dslr / "nerfstudio").mkdir()
    (dslr / "nerfstudio" / "transforms_undistorted.json").write_text(json.dumps(meta))
    s = load_scene(tmp_path / "0a1b2c")
    assert s.format == "scannetpp" and s.name == "0a1b2c" and len(s) == 3
    assert s.splits == {"train": [0, 1], "test": [2]}
    for a, b in zip(scene.frames, s.frames):
        np.testing.assert_allclose(b.c2w, a.c2w, atol=1e-9)
        assert np.array_equal(a.image(), b.image())
    assert s.points is not None


def test_unknown_layout_lists_formats(tmp_path):
    with pytest.raises(Tune3DError, match="transforms.json.*camera-intrinsics.txt|unknown scene layout"):
        detect_format(tmp_path)
    with pytest.raises(Tune3DError, match="no such"):
        load_scene(tmp_path / "missing")


def test_image_size_mismatch_is_reported(scene, tmp_path):
    write_images(scene, tmp_path / "images")
    write_nerfstudio_fixture(scene, tmp_path, with_depth=False)
    meta = json.loads((tmp_path / "transforms.json").read_text())
    meta["w"] = meta["w"] + 2
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    s = load_scene(tmp_path)
    with pytest.raises(Tune3DError, match=r"img_000.png: image is 32x24 but the camera says 34x24"):
        s[0].image()
