"""RobustMVD ETH3D / Tanks and Temples readers on fixtures in rmvd's layout (sample-list pickle included)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from fin3r_eval_fixtures import write_robustmvd

from tune3d.data.benchmarks.robustmvd import load_mvd_depth, robustmvd_samples
from tune3d.errors import Tune3DError


@pytest.mark.parametrize("dataset", ["eth3d", "tanks_and_temples"])
def test_samples_and_depth(tmp_path, dataset):
    root = write_robustmvd(tmp_path / dataset, dataset, scenes=("a", "b"), n_keys=2, views=4, h=24, w=32)
    samples = robustmvd_samples(dataset, root)
    assert [s.name for s in samples] == ["a/key000000", "a/key000001", "b/key000000", "b/key000001"]
    s = samples[1]
    assert s.keyview_idx == 0 and len(s.images) == 4 and s.intrinsics.shape == (4, 3, 3)
    assert s.poses.shape == (4, 4, 4) and np.allclose(s.poses[0], np.eye(4))
    assert s.ordered_images[0] == s.images[0] and all(p.is_file() for p in s.images)
    key = "DSC_0201.JPG" if dataset == "eth3d" else "00000001.jpg"
    assert s.images[0].name == key and s.images[0].parent.parent.name in ("images", "a")
    d = load_mvd_depth(s)
    v, u = np.mgrid[0:24, 0:32]
    want = (3.0 + 0.05 * u + 0.03 * v).astype(np.float32)
    assert d.shape == (24, 32) and d.dtype == np.float32
    assert (d[:2] == 0).all()  # inf / nan ground truth -> invalid
    np.testing.assert_allclose(d[2:], want[2:], rtol=1e-6)
    assert len(robustmvd_samples(dataset, root, limit=3)) == 3


def test_ordered_images_put_the_key_view_first(tmp_path):
    from dataclasses import replace

    s = robustmvd_samples("eth3d", write_robustmvd(tmp_path / "e", "eth3d", n_keys=1))[0]
    moved = replace(s, keyview_idx=2)
    assert moved.ordered_images == (s.images[2], s.images[0], s.images[1], s.images[3])


def test_sample_list_in_sample_lists_folder(tmp_path):
    root = write_robustmvd(tmp_path / "t", "tanks_and_temples", n_keys=1)
    (root / "sample_lists").mkdir()
    shutil.move(root / "tanks_and_temples.robustmvd.mvd.pickle", root / "sample_lists")
    assert len(robustmvd_samples("tanks_and_temples", root)) == 1


def test_bad_inputs_are_one_line_errors(tmp_path):
    root = write_robustmvd(tmp_path / "e", "eth3d", n_keys=1)
    with pytest.raises(
        Tune3DError, match=r"tanks_and_temples\.robustmvd\.mvd\.pickle: RobustMVD sample list"
    ):
        robustmvd_samples("tanks_and_temples", root)
    # a T&T list under ETH3D's name: the records name the wrong rmvd classes
    t = write_robustmvd(tmp_path / "t", "tanks_and_temples", n_keys=1)
    shutil.copy(t / "tanks_and_temples.robustmvd.mvd.pickle", t / "eth3d.robustmvd.mvd.pickle")
    with pytest.raises(Tune3DError, match=r"sample 0: not a rmvd\.data\.eth3d\.ETH3DSample record"):
        robustmvd_samples("eth3d", t)
    # a frame named by the list is missing
    (root / "courtyard" / "images" / "dslr_images" / "DSC_0202.JPG").unlink()
    with pytest.raises(Tune3DError, match=r"DSC_0202\.JPG: file not found \(named by eth3d"):
        robustmvd_samples("eth3d", root)


def test_wrong_depth_encodings(tmp_path):
    e = write_robustmvd(tmp_path / "e", "eth3d", n_keys=1)
    s = robustmvd_samples("eth3d", e)[0]
    s.depth.write_bytes(np.zeros(10, "<f4").tobytes())
    with pytest.raises(Tune3DError, match=r"DSC_0200\.JPG: raw float32 depth of 40 bytes, expected 3072"):
        load_mvd_depth(s)
    t = write_robustmvd(tmp_path / "t", "tanks_and_temples", n_keys=1)
    s = robustmvd_samples("tanks_and_temples", t)[0]
    np.savez(s.depth, depth=np.ones((24, 32), np.float32))
    with pytest.raises(Tune3DError, match=r"000001\.npz: no 'arr_0' depth array"):
        load_mvd_depth(s)
    s.depth.write_bytes(b"not a zip")
    with pytest.raises(Tune3DError, match=r"000001\.npz: unreadable \.npz depth"):
        load_mvd_depth(s)
