"""Readers of the Fin3R evaluation layouts, on fixtures written in the official layouts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fin3r_eval_fixtures import (
    write_moge_suite,
    write_nrgbd_scene,
    write_scannet1500,
    write_seven_scenes_flat,
)
from PIL import Image, PngImagePlugin

from tune3d.data.benchmarks.moge import (
    list_moge_instances,
    load_moge_instance,
    moge_dataset_folders,
    read_moge_depth,
)
from tune3d.data.benchmarks.pointmap_eval import load_eval_frame, nrgbd_sequences, seven_scenes_sequences
from tune3d.data.benchmarks.scannet1500 import read_scannet1500
from tune3d.errors import Tune3DError


def _png16(path, values, **text):
    info = PngImagePlugin.PngInfo()
    for k, v in text.items():
        info.add_text(k, v)
    Image.fromarray(np.asarray(values, dtype=np.uint16)).save(path, pnginfo=info)


def test_moge_depth_decoding_by_hand(tmp_path):
    # 0 = unknown, 1 = near, 65534 = far, 65535 = infinity; the middle code is the geometric mean.
    p = tmp_path / "depth.png"
    _png16(p, [[0, 1, 32768, 65534, 65535]], near="0.5", far="50.0")
    d = read_moge_depth(p)
    assert np.isnan(d[0, 0]) and np.isinf(d[0, 4])
    u = (32768 - 1) / 65533
    np.testing.assert_allclose(d[0, 1:4], [0.5, 0.5 ** (1 - u) * 50.0**u, 50.0], rtol=1e-6)


def test_moge_depth_legacy_unit_and_bad_encoding(tmp_path):
    p = tmp_path / "depth.png"
    _png16(p, [[1, 65534]], near="1", far="2", unit="0.001")
    np.testing.assert_allclose(read_moge_depth(p)[0], [0.001, 0.002], rtol=1e-6)
    q = tmp_path / "plain.png"
    _png16(q, [[1000, 2000]])  # a millimetre PNG is not MoGe's encoding
    with pytest.raises(Tune3DError, match="plain.png: not MoGe's depth encoding"):
        read_moge_depth(q)
    r = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(r)
    with pytest.raises(Tune3DError, match="16-bit"):
        read_moge_depth(r)


def test_moge_suite_layout(tmp_path):
    root = write_moge_suite(tmp_path / "moge")
    folders = moge_dataset_folders(root)
    assert list(folders) == ["ETH3D", "NYUv2"]
    assert list(moge_dataset_folders(root / "NYUv2")) == ["NYUv2"]
    insts = list_moge_instances(folders["NYUv2"])
    assert [i.name for i in insts] == ["scene/0000", "scene/0001"]
    s = load_moge_instance(insts[1])
    assert s["image"].shape == (24, 32, 3) and s["depth"].shape == (24, 32)
    assert not s["mask"][0, 0] and s["depth"][0, 0] == 0  # NaN (unknown) -> invalid
    v, u = 5, 7
    assert s["depth"][v, u] == pytest.approx(2.0 + 0.05 * u + 0.03 * v + 1, rel=1e-4)
    np.testing.assert_allclose(s["K"], [[0.8 * 32, 0, 16], [0, 0.8 * 32, 12], [0, 0, 1]])


def test_moge_bad_layouts(tmp_path):
    root = write_moge_suite(tmp_path / "moge", datasets=("KITTI",), n=1)
    (root / "KITTI" / "scene" / "0000" / "meta.json").write_text(json.dumps({"focal": 1}))
    with pytest.raises(Tune3DError, match="meta.json: no 'intrinsics'"):
        load_moge_instance(list_moge_instances(root / "KITTI")[0])
    (root / "KITTI" / ".index.txt").write_text("scene/0000\nscene/0009\n")
    with pytest.raises(Tune3DError, match="0009: instance folder not found"):
        list_moge_instances(root / "KITTI")
    with pytest.raises(Tune3DError, match="no dataset folder with .index.txt"):
        moge_dataset_folders(tmp_path)


def test_scannet1500_pairs(tmp_path):
    root = write_scannet1500(tmp_path / "sn")
    (pair,) = read_scannet1500(root)
    assert pair.name == "scene0707_00/15-30" and pair.image1.name == "30.jpg"
    # T_0to1 maps camera-0 points into camera 1: camera 1 sits at +0.3 x, so a point at camera 0's origin
    # is at -0.3 x in camera 1.
    np.testing.assert_allclose(pair.T_0to1[:3, 3], [-0.3, 0.0, -0.05])
    assert pair.K0[0, 0] == 50.0


def test_scannet1500_missing_frame_and_intrinsics(tmp_path):
    root = write_scannet1500(tmp_path / "sn")
    (root / "scannet_test_1500" / "scene0707_00" / "color" / "30.jpg").unlink()
    with pytest.raises(Tune3DError, match="30.jpg: file not found"):
        read_scannet1500(root)
    root2 = write_scannet1500(tmp_path / "sn2")
    np.savez(root2 / "intrinsics.npz", scene0001_00=np.eye(3))
    with pytest.raises(Tune3DError, match="no intrinsics for scene0707_00"):
        read_scannet1500(root2)


def test_seven_scenes_flat_folder_is_one_sequence(tmp_path):
    root = write_seven_scenes_flat(tmp_path / "redkitchen", n=6)
    (seq,) = seven_scenes_sequences(root, kf_every=2)
    assert seq.name == "redkitchen" and [f.name for f in seq.frames] == [
        "frame-000000",
        "frame-000002",
        "frame-000004",
    ]
    image, depth = load_eval_frame(seq.frames[1])
    assert image.shape == (48, 64, 3)
    assert (depth[0] == 0).all() and depth[5, 5] == pytest.approx(1.52)
    np.testing.assert_allclose(seq.frames[2].c2w[:3, 3], [0.08, 0, 0])


def test_seven_scenes_mono_samples_keyframes_jpg_and_invalid_depth(tmp_path):
    from PIL import Image

    from tune3d.data.benchmarks.pointmap_eval import seven_scenes_mono_samples

    root = write_seven_scenes_flat(tmp_path / "redkitchen", n=5)
    for i in range(5):  # the shared scene's naming: JPEG colour, here at twice the depth's size
        png = root / f"frame-{i:06d}.color.png"
        Image.open(png).resize((128, 96)).save(root / f"frame-{i:06d}.color.jpg")
        png.unlink()
    d = np.array(Image.open(root / "frame-000002.depth.png"))
    d[10:12, 20:30] = 0  # sensor "no reading"
    Image.fromarray(d).save(root / "frame-000002.depth.png")
    samples = list(seven_scenes_mono_samples(root, kf_every=2))
    assert len(samples) == 3  # frames 0, 2, 4
    s = samples[1]
    assert s["image"].shape == (48, 64, 3) and s["image"].dtype == np.uint8
    assert s["depth"][5, 5] == pytest.approx(1.52)
    assert not s["mask"][0].any() and not s["mask"][10:12, 20:30].any()  # 65535 row and 0 pixels
    assert s["mask"].sum() == 47 * 64 - 20 and (s["depth"][~s["mask"]] == 0).all()
    assert len(list(seven_scenes_mono_samples(root, kf_every=2, limit=2))) == 2


def test_seven_scenes_test_split_and_missing_sequence(tmp_path):
    scene = tmp_path / "chess"
    write_seven_scenes_flat(scene / "seq-03", n=2)
    (scene / "TestSplit.txt").write_text("sequence3\n")
    (seq,) = seven_scenes_sequences(tmp_path, kf_every=20)
    assert seq.name == "chess/seq-03" and len(seq.frames) == 1
    (scene / "TestSplit.txt").write_text("sequence3\nsequence4\n")
    with pytest.raises(Tune3DError, match="seq-04: sequence folder not found"):
        seven_scenes_sequences(tmp_path)


def test_nrgbd_opengl_poses_and_nan_frames(tmp_path):
    root = write_nrgbd_scene(tmp_path / "breakfast_room", n=3)
    (seq,) = nrgbd_sequences(tmp_path, kf_every=1)
    assert [f.name for f in seq.frames] == ["img0", "img2"]  # frame 1 has a NaN pose
    np.testing.assert_allclose(np.diag(seq.frames[1].c2w), [1, -1, -1, 1])  # OpenGL -> OpenCV axes
    _, depth = load_eval_frame(seq.frames[0])
    assert depth[0, 0] == pytest.approx(2.0)
    (root / "poses.txt").write_text("1 0 0 0\n")
    with pytest.raises(Tune3DError, match="4 rows per frame"):
        nrgbd_sequences(root)


def test_sintel_dpt_and_layout(tmp_path):
    from fin3r_eval_fixtures import write_sintel_dpt

    from tune3d.data.benchmarks.video_depth import read_sintel_dpt, video_depth_sequences

    d = np.arange(12, dtype=np.float32).reshape(3, 4) + 1
    write_sintel_dpt(tmp_path / "a.dpt", d)
    np.testing.assert_array_equal(read_sintel_dpt(tmp_path / "a.dpt"), d)
    (tmp_path / "b.dpt").write_bytes(b"\x00" * 20)
    with pytest.raises(Tune3DError, match="b.dpt: not a Sintel .dpt depth file"):
        read_sintel_dpt(tmp_path / "b.dpt")
    with pytest.raises(Tune3DError, match="alley_2: folder not found"):
        video_depth_sequences("sintel", tmp_path)


def test_bonn_layout_and_depth_scale(tmp_path):
    from fin3r_eval_fixtures import write_bonn

    from tune3d.data.benchmarks.video_depth import load_video_depth, video_depth_sequences

    root = write_bonn(tmp_path / "bonn")
    seqs = video_depth_sequences("bonn", root)
    assert [s.name for s in seqs] == ["balloon2", "crowd2", "crowd3", "person_tracking2", "synchronous"]
    assert load_video_depth(seqs[0], 2)[3, 5] == pytest.approx(1.0 + 0.1 + 0.03 + 0.2, abs=2e-4)
    next((root / "rgbd_bonn_crowd2" / "depth_110").iterdir()).unlink()
    with pytest.raises(Tune3DError, match="2 depth maps for 3 frames"):
        video_depth_sequences("bonn", root)


def test_scannet1500_superglue_pair_list(tmp_path):
    root = tmp_path / "sg"
    (root / "scene0711_00" / "color").mkdir(parents=True)
    for f in ("frame-001680.jpg", "frame-001995.jpg"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "scene0711_00" / "color" / f)
    T = np.eye(4)
    T[:3, 3] = [0.1, 0.2, 0.3]
    K = "1163.45 0 653.6 0 1164.8 481.6 0 0 1"
    line = f"scene0711_00/color/frame-001680.jpg scene0711_00/color/frame-001995.jpg 0 0 {K} {K} "
    (root / "scannet_test_pairs_with_gt.txt").write_text(line + " ".join(f"{x:g}" for x in T.ravel()) + "\n")
    (pair,) = read_scannet1500(root)
    np.testing.assert_allclose(pair.T_0to1, T)
    assert pair.K1[0, 0] == 1163.45 and pair.image1.name == "frame-001995.jpg"
    (root / "scannet_test_pairs_with_gt.txt").write_text(line + "1 2 3\n")
    with pytest.raises(Tune3DError, match="line 1 has 25 fields"):
        read_scannet1500(root)


def test_seven_scenes_mono_samples_on_the_shared_scene(seven_scenes):
    from PIL import Image

    from tune3d.data.benchmarks.pointmap_eval import seven_scenes_mono_samples

    a, b = seven_scenes_mono_samples(seven_scenes, kf_every=20, limit=2)
    raw = np.array(Image.open(seven_scenes / "frame-000020.depth.png"))
    assert b["image"].shape == (480, 640, 3) and b["depth"].shape == (480, 640)
    np.testing.assert_array_equal(b["mask"], (raw > 0) & (raw < 65535) & (raw <= 10000))  # frame 20
    np.testing.assert_allclose(b["depth"][b["mask"]], raw[b["mask"]] / 1000.0, rtol=1e-6)
    assert 0.3 < np.median(a["depth"][a["mask"]]) < 5.0  # a kitchen, in metres
