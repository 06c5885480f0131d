"""Fin3R Tables 3 and 6: RealEstate10K / DTU / ETH3D readers on official-layout fixtures, and the metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fin3r_eval_fixtures import (
    PLANE_Z_MM,
    re10k_c2w,
    write_dtu_scan,
    write_eth3d_scene,
    write_re10k,
)

from tune3d.data.benchmarks.pi3_pointmaps import (
    dtu_sequences,
    eth3d_sequences,
    load_pi3_frame,
    read_mvsnet_cam,
)
from tune3d.data.benchmarks.re10k import re10k_sequences
from tune3d.errors import Tune3DError
from tune3d.fin3r.evaluation.multi_view_pose import multi_view_pose_metrics, sequence_errors
from tune3d.geometry.cameras import depth_to_pointmap


# --- RealEstate10K -----------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["pi3", "frames"])
def test_re10k_reader_layouts(tmp_path, layout):
    root = write_re10k(tmp_path / "re10k", layout=layout)
    seqs = re10k_sequences(root)
    assert [s.name for s in seqs] == ["0a1b2c3d4e5f6789", "1122334455667788"]
    for k, s in enumerate(seqs):
        assert len(s.images) == 10 and all(p.is_file() for p in s.images)
        ids = [int(p.stem) for p in s.images] if layout == "pi3" else None
        if ids is not None:
            np.testing.assert_allclose(s.c2w, re10k_c2w(12, k)[ids], atol=1e-6)
        assert len({p.name for p in s.images}) == 10  # sampled without replacement
    again = re10k_sequences(root)
    assert [p.name for p in again[0].images] == [p.name for p in seqs[0].images]  # seeded


def test_re10k_sequence_list_and_seq_id_map(tmp_path):
    root = write_re10k(tmp_path / "re10k")
    (root / "re10k_test_1719.txt").write_text("1122334455667788.txt\n")  # with or without .txt
    (root / "Re10K_relpose_seq-id-map_seed42.json").write_text(json.dumps({"1122334455667788": [7, 2, 5]}))
    (s,) = re10k_sequences(root)
    assert s.name == "1122334455667788" and [p.name for p in s.images] == ["0007.png", "0002.png", "0005.png"]
    np.testing.assert_allclose(s.c2w, re10k_c2w(12, 1)[[7, 2, 5]], atol=1e-6)


def test_re10k_bad_inputs_one_line(tmp_path):
    root = write_re10k(tmp_path / "a")
    (root / "test").mkdir()
    (root / "test" / "000000.torch").write_bytes(b"\x80\x04not read")
    with pytest.raises(Tune3DError, match=r"000000\.torch: pixelSplat \.torch chunks are pickles") as e:
        re10k_sequences(root)
    assert "\n" not in str(e.value)
    root = write_re10k(tmp_path / "b")
    cam = root / "metadata" / "test" / "0a1b2c3d4e5f6789.txt"
    cam.write_text(cam.read_text().replace(" 0 0 ", " 0 ", 1))
    with pytest.raises(Tune3DError, match="0a1b2c3d4e5f6789.txt: line 2"):
        re10k_sequences(root)
    root = write_re10k(tmp_path / "c")
    (root / "1122334455667788" / "images" / "0003.png").unlink()
    (root / "Re10K_relpose_seq-id-map_seed42.json").write_text(json.dumps({"1122334455667788": [3, 4]}))
    with pytest.raises(Tune3DError, match=r"0003.png: frame 3 .* not found"):
        re10k_sequences(root)
    with pytest.raises(Tune3DError, match="no camera files"):
        re10k_sequences(tmp_path / "b" / "0a1b2c3d4e5f6789")


# --- multi-view pose metrics ---------------------------------------------------------------------------
def _rx(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


def test_perfect_and_similarity_transformed_poses_score_full_marks():
    gt = re10k_c2w(10)
    S = np.eye(4)
    S[:3, :3], S[:3, 3] = 2.5 * _rx(33.0), [1.0, -2.0, 0.5]
    pred = S @ gt
    pred[:, :3, :3] /= 2.5  # a similarity of the whole trajectory: rotations stay rotations
    r, t = sequence_errors(pred, gt)
    assert len(r) == 45 and np.abs(r).max() < 1e-5 and np.abs(t).max() < 1e-5
    assert multi_view_pose_metrics(r, t) == pytest.approx({"rra@5": 100.0, "rta@5": 100.0, "auc@30": 100.0})


def test_known_rotation_and_translation_errors():
    gt = np.tile(np.eye(4), (2, 1, 1))
    gt[1, :3, 3] = [1.0, 0.0, 0.0]
    pred = gt.copy()
    pred[1, :3, :3] = _rx(10.0)  # rotated about the baseline: the translation direction is unchanged
    r, t = sequence_errors(pred, gt)
    assert r == pytest.approx([10.0]) and t == pytest.approx([0.0], abs=1e-6)
    pred = gt.copy()
    pred[1, :3, 3] = [np.cos(np.deg2rad(20)), np.sin(np.deg2rad(20)), 0.0]
    r, t = sequence_errors(pred, gt)
    assert r == pytest.approx([0.0], abs=1e-6) and t == pytest.approx([20.0])
    pred[1, :3, 3] *= -3.0  # translation sign and scale are not identifiable
    assert sequence_errors(pred, gt)[1] == pytest.approx([20.0])


def test_rra_rta_auc30_hand_computed():
    # max errors 0, 6, 10 degrees -> recall 1/3 on bins 0..5, 2/3 on 6..9, 1 on 10..29
    m = multi_view_pose_metrics(np.array([0.0, 3.0, 10.0]), np.array([0.0, 6.0, 2.0]))
    assert m["rra@5"] == pytest.approx(200 / 3) and m["rta@5"] == pytest.approx(200 / 3)
    assert m["auc@30"] == pytest.approx(100 * (6 / 3 + 4 * 2 / 3 + 20) / 30)
    assert multi_view_pose_metrics(np.array([40.0]), np.array([0.0]))["auc@30"] == 0.0


# --- DTU / ETH3D -------------------------------------------------------------------------------------
def _world_z(frame, depth):
    K, c2w = torch.from_numpy(frame.K), torch.from_numpy(frame.c2w)
    pts = depth_to_pointmap(torch.from_numpy(depth.astype(np.float64)), K, c2w).numpy()
    return pts[depth > 0][:, 2]


def test_dtu_reader_mask_erosion_and_geometry(tmp_path):
    root = write_dtu_scan(tmp_path / "dtu", "scan1", n=7)
    write_dtu_scan(tmp_path / "dtu", "scan2", n=2)  # a training scan: not evaluated
    (seq,) = dtu_sequences(tmp_path / "dtu")
    assert seq.name == "scan1" and seq.icp_threshold == 100.0
    assert [f.name for f in seq.frames] == ["00000000", "00000005"]  # every 5th frame
    K, w2c = read_mvsnet_cam(root / "scan1" / "cams" / "00000005_cam.txt")
    np.testing.assert_allclose(seq.frames[1].c2w, np.linalg.inv(w2c))
    image, depth = load_pi3_frame(seq.frames[1])
    assert image.shape == (48, 64, 3) and depth.dtype == np.float32
    # mask rows 4..43, cols 6..57; a 10x10 box anchored at (5, 5) (OpenCV's anchor for an even kernel)
    # needs rows y-5..y+4 and cols x-5..x+4 inside: rows 9..39, cols 11..53 remain
    keep = np.zeros_like(depth, bool)
    keep[9:40, 11:54] = True
    np.testing.assert_array_equal(depth > 0, keep)
    assert np.allclose(depth[keep], PLANE_Z_MM)
    for f in seq.frames:  # every frame sees the same world plane: poses are read as world-to-camera
        assert np.allclose(_world_z(f, load_pi3_frame(f)[1]), PLANE_Z_MM)
    assert len(dtu_sequences(root / "scan1").pop().frames) == 2  # one scan folder as ROOT


def test_dtu_bad_inputs_one_line(tmp_path):
    root = write_dtu_scan(tmp_path / "dtu", "scan4", n=3)
    cam = root / "scan4" / "cams" / "00000000_cam.txt"
    cam.write_text(cam.read_text().replace("intrinsic", "intrinsics"))
    with pytest.raises(Tune3DError, match="00000000_cam.txt: expected 'extrinsic'"):
        dtu_sequences(root)
    with pytest.raises(Tune3DError, match="none of the 22 DTU test scans"):
        dtu_sequences(tmp_path)
    root = write_dtu_scan(tmp_path / "dtu2", "scan9", n=1)
    np.save(root / "scan9" / "depths" / "00000000.npy", np.zeros(5, np.float32))
    (seq,) = dtu_sequences(root)
    with pytest.raises(Tune3DError, match="00000000.npy: expected a 2-D depth array"):
        load_pi3_frame(seq.frames[0])


def test_eth3d_reader_raw_depth_and_geometry(tmp_path):
    root = write_eth3d_scene(tmp_path / "eth3d", "courtyard", n=6)
    (seq,) = eth3d_sequences(root)
    assert seq.name == "courtyard" and seq.icp_threshold == 0.1
    assert [f.name for f in seq.frames] == ["DSC_0000.JPG", "DSC_0005.JPG"]
    for f in seq.frames:
        image, depth = load_pi3_frame(f)
        assert image.shape == (48, 64, 3) and (depth[:, :3] == 0).all() and (depth[:, 3:] > 0).all()
        assert np.allclose(_world_z(f, depth), PLANE_Z_MM / 1000.0)
    bad = root / "courtyard" / "ground_truth_depth" / "custom_undistorted" / "DSC_0005.JPG"
    bad.write_bytes(np.zeros(10, "<f4").tobytes())
    with pytest.raises(Tune3DError, match="DSC_0005.JPG: 10 float32 values; expected 48x64"):
        load_pi3_frame(seq.frames[1])
    (root / "courtyard" / "custom_undistorted_cam" / "DSC_0000.npz").unlink()
    with pytest.raises(Tune3DError, match="DSC_0000.npz: file not found"):
        eth3d_sequences(root)


def test_pi3_protocol_scores_a_similarity_of_the_ground_truth_perfectly(tmp_path, monkeypatch):
    """Table 6 chain on DTU (mm) and ETH3D (m): a prediction that is the masked ground truth under an
    arbitrary similarity (scale 1e-3 for DTU, as a model in metres would give) plus a 1 mm / 1 cm
    shift of one frame scores Acc/Comp of that shift's size at most and NC 1, for a metric model too."""
    from tune3d.fin3r.evaluation import pointmaps, pointmaps_pi3
    from tune3d.recon import create_model

    model = create_model("dust3r_tiny", allow_random_init=True)
    model.metric = True  # Pi3 fits the scale for every model
    seen = {}

    def fake_predict(model, images, niter=300):
        gt = seen["gt"]
        R = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
        pred = 1e-3 * gt @ R.T + np.array([0.3, -0.2, 1.0])
        pred[1] += seen["shift"]  # frame 1 off by a known offset (pred units)
        return pred

    real_load = pointmaps.load_sequence

    def spy_load(*a, **k):
        images, gt, valid = real_load(*a, **k)
        seen["gt"] = np.where(valid[..., None], gt, 0.0)
        return images, gt, valid

    # evaluate_pi3_pointmaps reconstructs through pointmaps.reconstruct_sequences
    monkeypatch.setattr(pointmaps, "predict_points", fake_predict)
    monkeypatch.setattr(pointmaps, "load_sequence", spy_load)
    dtu = dtu_sequences(write_dtu_scan(tmp_path / "dtu", "scan1", n=6))
    seen["shift"] = 0.0
    m = pointmaps_pi3.evaluate_pi3_pointmaps(model, dtu, size=64)
    assert m["acc"] < 1e-6 and m["comp"] < 1e-6 and m["nc"] == pytest.approx(1.0)
    seen["shift"] = np.array([0.0, 0.0, 1e-3])  # 1 mm along the plane normal after the 1e-3 scale
    m = pointmaps_pi3.evaluate_pi3_pointmaps(model, dtu, size=64)
    assert 0.0 < m["acc"] <= 1.0 + 1e-6 and m["nc"] == pytest.approx(1.0, abs=1e-4)  # mm, under the ICP gate
    eth = eth3d_sequences(write_eth3d_scene(tmp_path / "eth3d", n=6))
    seen["shift"] = 0.0
    m = pointmaps_pi3.evaluate_pi3_pointmaps(model, eth, size=64)
    assert m["acc"] < 1e-6 and m["comp"] < 1e-6 and m["n_sequences"] == 1
