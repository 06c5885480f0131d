"""Hand-computed checks of the Fin3R evaluation metrics: ICP, two-view AUC bins, depth and pointmaps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tune3d.fin3r.evaluation.mono_depth import evaluate_mono_depth
from tune3d.fin3r.evaluation.pointmaps import reconstruction_metrics
from tune3d.fin3r.evaluation.two_view import pose_auc_percent, two_view_error
from tune3d.geometry.pose import quat_to_mat
from tune3d.metrics.icp import align_umeyama_icp, icp_point_to_point
from tune3d.metrics.video_depth import video_depth_metrics
from tune3d.recon.interface import ReconModel


def _rot(axis, deg: float) -> np.ndarray:
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    h = math.radians(deg) / 2
    q = torch.tensor([math.cos(h), *(math.sin(h) * a)], dtype=torch.float64)
    return quat_to_mat(q, scalar_first=True).numpy()


def _surface(n: int = 40) -> np.ndarray:
    """A bumpy height field (no sliding symmetry, so ICP has a unique answer)."""
    u, v = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n))
    z = 0.5 * np.sin(3 * u) * np.cos(2 * v) + 0.3 * v**2
    return np.stack([u, v, z], -1).reshape(-1, 3)


def test_icp_recovers_known_small_offset():
    gt = _surface()
    R, t = _rot([0.2, 1.0, 0.3], 2.0), np.array([0.03, -0.02, 0.01])
    src = gt @ R.T + t  # misplaced copy
    res = icp_point_to_point(src, gt, max_dist=0.2, max_iters=100)
    T_true = np.eye(4)
    T_true[:3, :3], T_true[:3, 3] = R.T, -R.T @ t  # the inverse of the offset
    np.testing.assert_allclose(res.T, T_true, atol=1e-4)
    assert res.fitness == 1.0 and res.rmse < 1e-4


def test_umeyama_then_icp_fixes_scale_and_residual_offset():
    gt = _surface()
    rng = np.random.default_rng(0)
    pred = (gt @ _rot([1, 0, 0], 30).T) * 0.5 + 2.0
    pred_noisy = pred + rng.normal(0, 1e-3, pred.shape)
    aligned, S = align_umeyama_icp(pred_noisy, gt, with_scale=True, icp_max_dist=0.1)
    assert np.abs(aligned - gt).max() < 1e-2
    assert np.linalg.det(S[:3, :3]) ** (1 / 3) == pytest.approx(2.0, rel=1e-2)


def test_two_view_error_and_auc_bins():
    T_gt = np.eye(4)
    T_gt[:3, 3] = [1.0, 0.0, 0.0]
    T_pred = T_gt.copy()
    T_pred[:3, :3] = _rot([0, 1, 0], 7.0)
    r, t = two_view_error(T_pred, T_gt)
    assert r == pytest.approx(7.0) and t == pytest.approx(0.0)
    # LoFTR's curve for one pair joins (0, 0) to (7, 1) linearly and is cut (held flat) at the last error
    # below the threshold: AUC@5 = 0, @10 = (3.5 + 3)/10, @20 = (3.5 + 13)/20.
    auc = pose_auc_percent([max(r, t)])
    assert auc["auc@5"] == 0.0
    assert auc["auc@10"] == pytest.approx(65.0)
    assert auc["auc@20"] == pytest.approx(82.5)
    # with many pairs the recall is a step at 7 degrees: ~0 at 5, (10-7)/10 at 10, (20-7)/20 at 20.
    auc = pose_auc_percent([max(r, t)] * 1000)
    assert auc["auc@5"] < 0.1
    assert auc["auc@10"] == pytest.approx(30.0, abs=0.1)
    assert auc["auc@20"] == pytest.approx(65.0, abs=0.1)
    assert pose_auc_percent([0.0, 0.0]) == {"auc@5": 100.0, "auc@10": 100.0, "auc@20": 100.0}
    # translation direction is sign-invariant (LoFTR): a flipped baseline scores 0.
    T_flip = T_gt.copy()
    T_flip[:3, 3] *= -1
    assert two_view_error(T_flip, T_gt)[1] == pytest.approx(0.0, abs=1e-6)


class _OracleDepth(ReconModel):
    """Test double: predicts ``a * gt + b`` (an affine-invariant model that is otherwise perfect)."""

    num_views = 0
    patch_size = 8

    def __init__(self, gt: torch.Tensor, a: float, b: float, metric: bool = False):
        super().__init__()
        self.gt, self.a, self.b, self.metric = gt, a, b, metric
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward_mono(self, images):
        h, w = images.shape[-2:]
        d = torch.nn.functional.interpolate(self.gt[None, None], size=(h, w), mode="nearest")[0]
        return self.a * d + self.b, torch.ones_like(d)


def test_mono_depth_perfect_prediction_scores_rel0_delta100():
    gt = torch.linspace(1.0, 4.0, 16 * 16).reshape(16, 16).double()
    sample = {"image": np.zeros((16, 16, 3), np.uint8), "depth": gt.numpy(), "mask": np.ones((16, 16), bool)}
    res = evaluate_mono_depth(_OracleDepth(gt, 0.5, 0.3), [sample], size=16)
    assert res["rel"] == pytest.approx(0.0, abs=1e-4) and res["delta1"] == pytest.approx(100.0)
    # a metric model is not aligned: predicting 2x the depth gives Abs Rel 1 (100) and delta1 0.
    res = evaluate_mono_depth(_OracleDepth(gt, 2.0, 0.0, metric=True), [sample], size=16)
    assert res["rel"] == pytest.approx(100.0) and res["delta1"] == 0.0


def test_video_depth_one_scale_per_sequence():
    gt = torch.rand(3, 8, 8).double() + 1.0
    assert video_depth_metrics(gt * 3.0, gt, align="scale")["abs_rel"] == pytest.approx(0.0, abs=1e-12)
    assert video_depth_metrics(gt * 3.0 + 1, gt, align="scale_shift")["delta1"] == pytest.approx(1.0)
    # per-frame scales differ: one scale for the whole sequence cannot undo that.
    pred = gt * torch.tensor([1.0, 2.0, 1.0]).double()[:, None, None]
    assert video_depth_metrics(pred, gt, align="scale")["abs_rel"] > 0.1


def test_reconstruction_metrics_perfect_up_to_similarity():
    v, u = np.meshgrid(np.linspace(-1, 1, 20), np.linspace(-1, 1, 24), indexing="ij")
    gt = np.stack([u, v, 2 + 0.2 * np.sin(3 * u)], -1)[None]  # 1,H,W,3
    pred = (gt @ _rot([0, 0, 1], 20).T) * 3.0 - 1.0
    valid = np.ones(gt.shape[:3], bool)
    m = reconstruction_metrics(pred, gt, valid)
    assert m["acc"] < 1e-6 and m["comp"] < 1e-6 and m["acc_med"] < 1e-6
    assert m["nc"] == pytest.approx(1.0, abs=1e-6)
    # metric models get no scale: a 3x prediction stays wrong.
    assert reconstruction_metrics(pred, gt, valid, metric=True)["acc"] > 0.1
