"""Scene container, frame ranges, resizing, native format round trips, point clouds."""

from __future__ import annotations

import json

import numpy as np
import pytest
from data_helpers import tiny_scene

from tune3d.data import load_scene, parse_frame_range, scene_point_cloud, write_scene
from tune3d.errors import Tune3DError


@pytest.fixture(scope="module")
def scene():
    return tiny_scene(views=4)


def test_parse_frame_range():
    assert parse_frame_range("0:10:3", 20) == [0, 3, 6, 9]
    assert parse_frame_range(":3", 5) == [0, 1, 2]
    assert parse_frame_range("-2:", 5) == [3, 4]
    assert parse_frame_range("1,3:5", 10) == [1, 3, 4]
    for bad in ("a:b", "0:5:0", "1:2:3:4", "7", "5:5"):
        with pytest.raises(Tune3DError):
            parse_frame_range(bad, 6)


def test_subset_reindexes_splits(scene):
    sub = scene.subset("1:4")
    assert len(sub) == 3 and sub[0].name == scene[1].name
    test = [scene[i].name for i in scene.splits["test"] if 1 <= i < 4]
    assert [sub[i].name for i in sub.splits["test"]] == test
    with pytest.raises(Tune3DError):
        scene.subset([10])


def test_resized_frame(scene):
    f = scene[0]
    r = f.resized(12, 8)
    assert r.image().shape == (12, 8, 3) and r.depth().shape == (12, 8) and r.semantics().shape == (12, 8)
    np.testing.assert_allclose(r.K[0], f.K[0] * 8 / f.width)
    np.testing.assert_allclose(r.K[1], f.K[1] * 12 / f.height)
    # nearest resampling keeps exact depth values and label ids
    assert set(np.unique(r.depth())) <= set(np.unique(f.depth()))
    assert set(np.unique(r.semantics())) <= set(np.unique(f.semantics()))
    assert f.resized(f.height, f.width) is f


def _same(a, b):
    assert len(a) == len(b) and a.splits == b.splits and a.class_names == b.class_names
    for fa, fb in zip(a.frames, b.frames):
        assert fa.name == fb.name
        assert np.array_equal(fa.c2w, fb.c2w) and fa.c2w.dtype == np.float64
        assert np.array_equal(fa.K, fb.K)
        assert np.array_equal(fa.image(), fb.image())
        assert np.array_equal(fa.depth().view(np.uint32), fb.depth().view(np.uint32))  # bitwise
        assert np.array_equal(fa.semantics(), fb.semantics()) and fb.semantics().dtype == np.int64
    assert np.array_equal(a.points, b.points) and np.array_equal(a.point_colors, b.point_colors)


def test_write_load_convert_is_exact(scene, tmp_path):
    write_scene(scene, tmp_path / "a")
    a = load_scene(tmp_path / "a")
    _same(scene, a)
    write_scene(a, tmp_path / "b")
    _same(scene, load_scene(tmp_path / "b"))
    with pytest.raises(Tune3DError, match="not empty"):
        write_scene(a, tmp_path / "b")
    write_scene(scene.subset([0, 1]), tmp_path / "b", overwrite=True)
    assert len(load_scene(tmp_path / "b")) == 2


def test_png16_depth_round_trip_exact(tmp_path):
    s = tiny_scene(views=2)
    for f in s.frames:  # make depth integer millimetres, as from a Kinect
        f.depth_source.array[:] = np.round(f.depth_source.array * 1000).astype(np.float32) * np.float32(0.001)
    s.depth_scale = 0.001
    write_scene(s, tmp_path / "s")
    meta = json.loads((tmp_path / "s" / "scene.json").read_text())
    assert meta["frames"][0]["depth"].endswith(".png") and meta["depth_scale"] == 0.001
    back = load_scene(tmp_path / "s")
    for fa, fb in zip(s.frames, back.frames):
        assert np.array_equal(fa.depth().view(np.uint32), fb.depth().view(np.uint32))


def test_partial_write_is_not_a_scene(scene, tmp_path, monkeypatch):
    import tune3d.data.native as native

    def boom(*a, **k):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(native, "write_json", boom)
    with pytest.raises(RuntimeError):
        write_scene(scene, tmp_path / "p")
    assert (tmp_path / "p" / "images").is_dir()
    with pytest.raises(Tune3DError, match="unknown scene layout"):
        load_scene(tmp_path / "p")


def test_scene_point_cloud_from_depth(scene):
    stored, _ = scene_point_cloud(scene)
    assert stored is scene.points
    pts, cols = scene_point_cloud(scene, use_stored=False, stride=1, max_points=10**6)
    assert pts.shape == cols.shape and pts.dtype == np.float32 and cols.dtype == np.uint8
    # back-projected points lie inside the room box (the synthetic world frame)
    lo, hi = scene.points.min(0) - 1e-3, scene.points.max(0) + 1e-3
    assert ((pts >= lo) & (pts <= hi)).all()


def test_subset_records_source_positions_through_nested_subsets():
    full = tiny_scene(views=10)
    assert full.source_indices is None
    sub = full.subset("2:10:2")  # 2 4 6 8
    assert sub.source_indices == [2, 4, 6, 8]
    assert sub.subset([3, 1]).source_indices == [8, 4]
    assert [f.name for f in sub.subset([3, 1])] == [full[8].name, full[4].name]
