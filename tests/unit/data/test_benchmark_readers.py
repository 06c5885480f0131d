"""Benchmark readers on tiny fixtures in each official layout: counts, classes, ignore, crops, scaling."""

from __future__ import annotations

import numpy as np
import pytest
from benchmark_fixtures import write_kitti, write_mmseg_seg, write_nyu_depth, write_scannet, write_voc
from PIL import Image

from tune3d.data.benchmarks import DATASETS, eval_crop_mask, kb_crop_box, open_dataset
from tune3d.errors import Tune3DError


def test_registry_names_and_classes():
    assert list(DATASETS) == [
        "nyuv2-seg13", "nyuv2-seg40", "nyuv2-depth", "ade20k", "voc2012", "kitti-eigen", "scannet",
        "scannetpp",
    ]  # fmt: skip
    assert DATASETS["ade20k"].num_classes == 150 and DATASETS["voc2012"].num_classes == 21
    assert DATASETS["nyuv2-seg13"].num_classes == 13 and DATASETS["scannet"].num_classes == 40
    pal = DATASETS["voc2012"].palette
    assert pal.shape == (21, 3) and tuple(pal[1]) == (128, 0, 0) and tuple(pal[15]) == (192, 128, 128)


@pytest.mark.parametrize("name,num_raw", [("nyuv2-seg13", 13), ("nyuv2-seg40", 40)])
def test_nyu_seg_reduce_zero_label(tmp_path, name, num_raw):
    root = write_mmseg_seg(tmp_path, num_raw, n_train=3, n_val=2)
    ds = open_dataset(name, root, "train")
    assert len(ds) == 3 and ds.task == "semseg" and ds.num_classes == num_raw
    raw = np.array(Image.open(ds.samples[0].target)).astype(np.int64)
    img, lab = ds[0]
    assert img.shape == (32, 48, 3) and img.dtype == np.uint8 and lab.dtype == np.int64
    assert np.all(lab[raw == 0] == 255)  # 0 = unlabelled -> ignore
    assert np.array_equal(lab[raw > 0], raw[raw > 0] - 1)  # 1..K -> 0..K-1
    assert len(open_dataset(name, root, "val")) == 2


def test_nyu_seg13_rejects_out_of_range_label(tmp_path):
    root = write_mmseg_seg(tmp_path, 40, n_train=1, n_val=1, seed=3)  # labels up to 40 for a 13-class set
    ds = open_dataset("nyuv2-seg13", root, "val")
    with pytest.raises(Tune3DError, match=r"00000\.png: label value \d+ is outside the 13 classes"):
        ds[0]


def test_ade20k_parent_folder_and_label_shift(tmp_path):
    write_mmseg_seg(tmp_path / "ADEChallengeData2016", 150, n_train=2, n_val=3, prefix="ADE_")
    ds = open_dataset("ade20k", tmp_path, "val")
    assert len(ds) == 3 and ds.samples[0].name == "ADE_validation_00000"
    raw = np.array(Image.open(ds.samples[1].target)).astype(np.int64)
    _, lab = ds[1]
    assert set(np.unique(lab)) <= set(range(150)) | {255}
    assert np.array_equal(lab == 255, raw == 0) and np.array_equal(lab[raw > 0], raw[raw > 0] - 1)


def test_voc_palette_pngs_ignore_and_aug(tmp_path):
    root = write_voc(tmp_path, n_train=3, n_val=2, n_aug=2)
    val = open_dataset("voc2012", root, "val")
    assert len(val) == 2
    img, lab = val[0]
    assert Image.open(val.samples[0].target).mode == "P"
    assert img.shape[:2] == lab.shape == (40, 56)
    assert np.all(lab[0] == 255) and set(np.unique(lab[1:])) <= {0, 1, 5, 15, 20}
    train = open_dataset("voc2012", root, "train")
    assert len(train) == 5  # train.txt + aug.txt (SegmentationClassAug)
    assert train.samples[-1].target.parent.name == "SegmentationClassAug"
    assert train[4][1].shape == (40, 56)


def test_nyu_depth_split_file_scaling_and_eigen_mask(tmp_path):
    root = write_nyu_depth(tmp_path, n_train=1, n_test=2, size=(480, 640))
    ds = open_dataset("nyuv2-depth", root, "val")
    assert len(ds) == 2 and ds.task == "depth" and ds.max_depth == 10.0
    raw = np.array(Image.open(ds.samples[0].target))
    img, depth = ds[0]
    assert img.shape == (480, 640, 3) and depth.dtype == np.float32
    np.testing.assert_allclose(depth, raw.astype(np.float32) / 1000.0)
    m = ds.eval_mask(np.full((480, 640), 5.0, np.float32))
    assert m[45:471, 41:601].all() and m.sum() == (471 - 45) * (601 - 41)
    m2 = ds.eval_mask(np.full((480, 640), 10.0, np.float32))
    assert not m2.any()  # max depth is exclusive
    assert len(open_dataset("nyuv2-depth", root, "train")) == 1


def test_kitti_kb_crop_scale_garg_mask_and_none_lines(tmp_path):
    root = write_kitti(tmp_path, n_train=1, n_test=2)
    ds = open_dataset("kitti-eigen", root, "test")
    assert len(ds) == 2  # the 'None' ground-truth line is skipped
    raw = np.array(Image.open(ds.samples[0].target))
    img, depth = ds[0]
    assert img.shape == (352, 1216, 3) and depth.shape == (352, 1216)
    assert kb_crop_box(376, 1242) == (24, 13, 352, 1216)
    np.testing.assert_allclose(depth, raw[24:, 13 : 13 + 1216].astype(np.float32) / 256.0)
    g = eval_crop_mask((352, 1216), "garg")
    rows, cols = np.where(g)
    assert rows.min() == int(0.40810811 * 352) and rows.max() == int(0.99189189 * 352) - 1
    assert cols.min() == int(0.03594771 * 1216) and cols.max() == int(0.96405229 * 1216) - 1
    assert ds.max_depth == 80.0


def test_scannet_nyu40_mapping_and_depth(tmp_path):
    root = write_scannet(tmp_path)
    seg = open_dataset("scannet", root, "train", "semseg")
    assert len(seg) == 2 and seg.num_classes == 40 and seg.samples[1].name == "scene0000_00/20"
    raw = np.array(Image.open(seg.samples[0].target)).astype(np.int64)
    _, lab = seg[0]
    expect = {0: 255, 1: 0, 2: 4, 22: 21}  # ScanNet id -> nyu40 id - 1
    for k, v in expect.items():
        assert np.all(lab[raw == k] == v)
    dep = open_dataset("scannet", root, "val", "depth")
    img, d = dep[0]
    assert d.shape == (24, 32) and img.shape == (24, 32, 3)  # colour resized to the depth size
    np.testing.assert_allclose(np.unique(d), [0.0, 0.8, 2.5, 4.0], rtol=1e-6)


def test_scannet_unknown_label_id(tmp_path):
    root = write_scannet(tmp_path)
    p = root / "scans" / "scene0001_00" / "label-filt" / "0.png"
    Image.fromarray(np.full((36, 48), 7, np.uint16)).save(p)
    with pytest.raises(Tune3DError, match="label id 7 is not in the label mapping"):
        open_dataset("scannet", root, "val")[0]


def test_bad_layouts_name_the_expected_file(tmp_path):
    with pytest.raises(Tune3DError, match=r"annotations/validation: annotation folder not found"):
        open_dataset("nyuv2-seg13", tmp_path, "val")
    with pytest.raises(Tune3DError, match=r"kitti_eigen_test\.txt: split file not found"):
        open_dataset("kitti-eigen", tmp_path, "val")
    with pytest.raises(Tune3DError, match=r"unknown dataset"):
        open_dataset("cityscapes", tmp_path)
    with pytest.raises(Tune3DError, match=r"--task 'depth': ade20k provides semseg"):
        open_dataset("ade20k", tmp_path, "val", "depth")


def test_bad_files(tmp_path):
    root = write_nyu_depth(tmp_path / "nyu", n_train=1, n_test=1)
    (root / "nyu_test.txt").write_text("/bathroom/rgb_09999.jpg /bathroom/sync_depth_00000.png 518.8\n")
    with pytest.raises(Tune3DError, match=r"rgb_09999\.jpg: file not found \(listed in .*nyu_test\.txt\)"):
        open_dataset("nyuv2-depth", root, "val")
    # depth stored as 8-bit
    root = write_nyu_depth(tmp_path / "nyu8", n_train=1, n_test=1)
    Image.fromarray(np.full((48, 64), 3, np.uint8)).save(root / "bathroom" / "sync_depth_00000.png")
    with pytest.raises(Tune3DError, match=r"sync_depth_00000\.png: depth must be a 16-bit PNG"):
        open_dataset("nyuv2-depth", root, "val")[0]
    # label of the wrong size
    seg = write_mmseg_seg(tmp_path / "seg", 13, n_train=1, n_val=1)
    Image.fromarray(np.ones((10, 10), np.uint8)).save(seg / "annotations" / "validation" / "00000.png")
    with pytest.raises(
        Tune3DError, match=r"00000\.png: label map is 10x10 but the image 00000\.jpg is 48x32"
    ):
        open_dataset("nyuv2-seg13", seg, "val")[0]


def test_scannetpp_renders_labels_and_depth_from_the_mesh(tmp_path, monkeypatch):
    from benchmark_fixtures import write_scannetpp

    monkeypatch.setenv("TUNE3D_RENDER_CACHE", str(tmp_path / "cache"))
    root = write_scannetpp(tmp_path / "spp")
    seg = open_dataset("scannetpp", root, "train", "semseg")
    assert len(seg) == 2 and seg.num_classes == 5 and seg.class_names[2] == "door"
    img, lab = seg[0]
    assert img.shape == (24, 32, 3) and lab.shape == (24, 32)
    assert np.all(lab[:, :16] == 0)  # "wall" half (world y > 0) on the image's left
    assert np.all(lab[:, 16:] == 2)  # "doorframe" -> "door" through map_benchmark.csv
    rendered = seg.samples[0].target
    assert rendered.is_file() and str(rendered).startswith(str(tmp_path / "cache"))
    stamp = rendered.stat().st_mtime_ns
    seg[0]
    assert rendered.stat().st_mtime_ns == stamp  # cached, not rendered again
    dep = open_dataset("scannetpp", root, "val", "depth")
    _, d = dep[1]
    np.testing.assert_array_equal(d, np.full((24, 32), 2.0, np.float32))  # the x = 2 plane, z-depth
    assert dep.max_depth == 20.0


def test_scannetpp_fisheye_rays_invert_the_distortion():
    from tune3d.data.benchmarks.scannetpp import camera_rays

    K = np.array([[300.0, 0, 320], [0, 300.0, 240], [0, 0, 1]])
    dist = {"k1": 0.05, "k2": -0.01, "k3": 0.002, "k4": -0.0005}
    rays = camera_rays(K, 48, 64, "OPENCV_FISHEYE", dist)
    x, y = rays[:, 0], rays[:, 1]  # z = 1: undistorted normalised coordinates
    r = np.hypot(x, y)
    th = np.arctan(r)
    thd = th * (1 + dist["k1"] * th**2 + dist["k2"] * th**4 + dist["k3"] * th**6 + dist["k4"] * th**8)
    u = 300.0 * np.where(r > 0, thd / r, 1) * x + 320
    v = 300.0 * np.where(r > 0, thd / r, 1) * y + 240
    uu, vv = np.meshgrid(np.arange(64) + 0.5, np.arange(48) + 0.5)
    np.testing.assert_allclose(u, uu.ravel(), atol=1e-6)
    np.testing.assert_allclose(v, vv.ravel(), atol=1e-6)


def test_scannetpp_bad_segments(tmp_path, monkeypatch):
    from benchmark_fixtures import write_scannetpp

    monkeypatch.setenv("TUNE3D_RENDER_CACHE", str(tmp_path / "cache"))
    root = write_scannetpp(tmp_path / "spp", scenes=("badscene", "other"))
    (root / "data" / "badscene" / "scans" / "segments.json").write_text('{"segIndices": [0, 1]}')
    with pytest.raises(Tune3DError, match=r"segments\.json: 2 segIndices for a mesh of 16 vertices"):
        open_dataset("scannetpp", root, "train")[0]
