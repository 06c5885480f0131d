"""Tests for tune3d.metrics against hand-computed small cases, plus a few properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tune3d.geometry import apply_sim3, depth_to_pointmap, make_K
from tune3d.metrics import (
    DEPTH_METRIC_KEYS,
    POINTMAP_METRIC_KEYS,
    ConfusionMatrix,
    DepthMetricAccumulator,
    accuracy,
    completeness,
    delta1_point,
    depth_metrics,
    depth_metrics_per_image,
    feature_drift,
    norm_summary,
    normal_consistency,
    pointmap_metrics,
    pose_auc,
    pose_metrics,
    rel_point,
    relative_pose_errors,
    rra_rta,
    token_norms,
)

D = torch.float64

# ----------------------------------------------------------------------------- depth

# 2x3 image: four valid pixels, one masked out, one with gt = 0 (invalid)
PRED = torch.tensor([[[1.0, 2.0, 1.0], [1.0, 5.0, 7.0]]], dtype=D)
GT = torch.tensor([[[1.0, 3.0, 1.8], [2.5, 0.0, 9.0]]], dtype=D)
MASK = torch.tensor([[[True, True, True], [True, True, False]]])


def expected_depth_metrics():
    p, g = [1.0, 2.0, 1.0, 1.0], [1.0, 3.0, 1.8, 2.5]
    n = 4
    lg = [math.log(a) - math.log(b) for a, b in zip(p, g)]
    ratio = [max(a / b, b / a) for a, b in zip(p, g)]  # 1, 1.5, 1.8, 2.5
    return {
        "abs_rel": (0 + 1 / 3 + 0.8 / 1.8 + 1.5 / 2.5) / n,
        "sq_rel": (0 + 1 / 3 + 0.64 / 1.8 + 2.25 / 2.5) / n,
        "rmse": math.sqrt((0 + 1 + 0.64 + 2.25) / n),
        "rmse_log": math.sqrt(sum(x * x for x in lg) / n),
        "log10": sum(abs(math.log10(a) - math.log10(b)) for a, b in zip(p, g)) / n,
        "delta1": 1 / 4,  # only ratio 1 < 1.25
        "delta2": 2 / 4,  # 1.5 < 1.5625
        "delta3": 3 / 4,  # 1.8 < 1.953125
        "silog": 100 * math.sqrt(sum(x * x for x in lg) / n - 0.5 * (sum(lg) / n) ** 2),
        "_ratio_check": ratio,
    }


def test_depth_metrics_hand():
    exp = expected_depth_metrics()
    got = depth_metrics(PRED, GT, MASK)
    assert set(got) == set(DEPTH_METRIC_KEYS)
    for k in DEPTH_METRIC_KEYS:
        assert got[k] == pytest.approx(exp[k], rel=1e-12), k
    # shapes (H,W) and (B,1,H,W) give the same result; max_depth excludes the 9 m pixel even without mask
    assert depth_metrics(PRED[0], GT[0], MASK[0])["abs_rel"] == pytest.approx(exp["abs_rel"])
    assert depth_metrics(PRED[:, None], GT[:, None], max_depth=5.0)["rmse"] == pytest.approx(exp["rmse"])


def test_depth_clipping_and_alignment():
    # prediction 0 is clipped to min_depth = 0.5 before the metric: abs_rel = |0.5 - 1| / 1
    m = depth_metrics(torch.tensor([[[0.0]]]), torch.tensor([[[1.0]]]), min_depth=0.5)
    assert m["abs_rel"] == pytest.approx(0.5)
    # clipped to max_depth = 2: |2 - 2| = 0
    m = depth_metrics(torch.tensor([[[10.0]]]), torch.tensor([[[2.0]]]), max_depth=2.0)
    assert m["abs_rel"] == pytest.approx(0.0)
    # median alignment makes a scaled prediction perfect
    gt = torch.rand(2, 4, 4, dtype=D) + 1
    for mode in ("median", "scale", "scale_shift", "affine_disparity"):
        m = depth_metrics(gt * 0.3, gt, align=mode)
        assert m["abs_rel"] == pytest.approx(0.0, abs=1e-12), mode
        assert m["delta1"] == 1.0


def test_depth_per_image_mean_and_accumulator():
    gt = torch.ones(3, 1, 2, 2, dtype=D)
    pred = gt.clone()
    pred[0] = 2.0  # abs_rel 1 for image 0
    pred[1, 0, 0, 0] = 1.5  # abs_rel 0.5/4 for image 1
    gt[2] = 0  # image 2 has no valid pixel: skipped
    per = depth_metrics_per_image(pred, gt)
    assert per["abs_rel"][:2].tolist() == pytest.approx([1.0, 0.125])
    assert math.isnan(per["abs_rel"][2])
    assert depth_metrics(pred, gt)["abs_rel"] == pytest.approx((1.0 + 0.125) / 2)
    acc = DepthMetricAccumulator()
    acc.update(pred[:1], gt[:1])
    acc.update(pred[1:], gt[1:])
    assert acc.count == 2
    assert acc.compute()["abs_rel"] == pytest.approx(0.5625)
    other = DepthMetricAccumulator()
    other.load_state_dict(acc.state_dict())
    other.merge(acc)
    assert other.count == 4 and other.compute()["abs_rel"] == pytest.approx(0.5625)
    assert all(math.isnan(v) for v in DepthMetricAccumulator().compute().values())


# ----------------------------------------------------------------------------- segmentation


def test_confusion_matrix_hand():
    target = torch.tensor([[[0, 0, 1, 255], [2, 2, 1, 0]]])
    pred = torch.tensor([[[0, 1, 1, 2], [2, 0, 1, 0]]])
    cm = ConfusionMatrix(4)  # class 3 never appears: NaN IoU, excluded from the mean
    cm.update(pred, target)
    assert cm.mat[:3, :3].tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 1]]
    r = cm.compute()
    # IoU: c0 2/(3+3-2), c1 2/(2+3-2), c2 1/(2+1-1)
    assert r["iou"][:3].tolist() == pytest.approx([0.5, 2 / 3, 0.5])
    assert math.isnan(r["iou"][3]) and math.isnan(r["acc"][3])
    assert r["mIoU"] == pytest.approx(5 / 9)
    assert r["mAcc"] == pytest.approx((2 / 3 + 1 + 0.5) / 3)
    assert r["aAcc"] == pytest.approx(5 / 7)
    # accumulates over updates; a class predicted but absent from GT gets IoU 0 and counts in the mean
    cm.update(torch.tensor([[3]]), torch.tensor([[1]]))
    r = cm.compute()
    assert r["iou"][3].item() == 0.0 and math.isnan(r["acc"][3])
    assert r["mIoU"] == pytest.approx((0.5 + 2 / 4 + 0.5 + 0.0) / 4)


def test_confusion_matrix_logits_ignore_and_errors():
    cm = ConfusionMatrix(2, ignore_index=255)
    logits = torch.tensor([[[[2.0, -1.0]], [[0.0, 3.0]]]])  # (1, 2, 1, 2) -> argmax [[0, 1]]
    cm.update(logits, torch.tensor([[[0, 255]]]))
    assert cm.mat.tolist() == [[1, 0], [0, 0]]
    with pytest.raises(ValueError):
        cm.update(torch.tensor([[2]]), torch.tensor([[0]]))
    with pytest.raises(ValueError):
        cm.update(torch.tensor([[0]]), torch.tensor([[7]]))


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 1000), c=st.integers(2, 6))
def test_perfect_segmentation_is_one_and_ignore_excluded(seed, c):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, c, (2, 5, 5), generator=g)
    pred = target.clone()
    ign = torch.rand(2, 5, 5, generator=g) < 0.3
    target[ign] = 255
    pred[ign] = torch.randint(0, c, (int(ign.sum()),), generator=g)  # wrong where ignored: must not matter
    cm = ConfusionMatrix(c)
    cm.update(pred, target)
    r = cm.compute()
    assert r["mIoU"] == 1.0 and r["mAcc"] == 1.0 and r["aAcc"] == 1.0
    assert int(cm.mat.sum()) == int((~ign).sum())


# ----------------------------------------------------------------------------- pointmaps


def test_acc_comp_nc_hand():
    pred = np.array([[0.0, 0, 0], [1, 0, 0]])
    gt = np.array([[0.0, 0, 0], [0, 2, 0], [0, 0, 3]])
    assert accuracy(pred, gt) == pytest.approx((0 + 1) / 2)
    assert completeness(pred, gt) == pytest.approx((0 + 2 + 3) / 3)
    assert accuracy(pred, gt, reduction="median") == pytest.approx(0.5)
    n_pred = np.array([[0.0, 0, 1], [0, 1, 0]])
    n_gt = np.array([[0.0, 0, -1], [0.6, 0.8, 0], [1, 0, 0]])
    # pred->gt pairs: (p0,g0) |-1| = 1, (p1,g0) 0 -> 0.5; gt->pred: (g0,p0) 1, (g1,p0) 0, (g2,p0) 0 -> 1/3
    assert normal_consistency(pred, gt, n_pred, n_gt) == pytest.approx((0.5 + 1 / 3) / 2)


def test_rel_point_delta1_hand():
    pred = torch.tensor([[[2.2, 0, 0], [0, 2, 0], [0, 0, 5.5], [9, 9, 9]]], dtype=D)
    gt = torch.tensor([[[2.0, 0, 0], [0, 1, 0], [0, 0, 4], [1, 1, 1]]], dtype=D)
    mask = torch.tensor([[True, True, True, False]])
    # errors 0.2, 1, 1.5 -> relative 0.1, 1, 0.375; inliers: 0.2 < 0.25*2 yes, 1 < 0.25*1 no, 1.5 < 0.25*4 no
    assert rel_point(pred, gt, mask).item() == pytest.approx((0.1 + 1 + 0.375) / 3)
    assert delta1_point(pred, gt, mask).item() == pytest.approx(1 / 3)


def _scene():
    H, W = 10, 12
    K = make_K(10.0, 10.0, W / 2, H / 2)
    yy, xx = torch.meshgrid(torch.arange(H, dtype=D), torch.arange(W, dtype=D), indexing="ij")
    depth = torch.stack([2 + 0.1 * xx, 3 - 0.05 * yy + 0.02 * xx**2 / W])
    return depth_to_pointmap(depth, K)


def test_pointmap_metrics_identity_and_sim3():
    gt = _scene()
    mask = torch.ones(gt.shape[:-1], dtype=torch.bool)
    m = pointmap_metrics(gt.clone(), gt, mask, align="none")
    assert set(m) == set(POINTMAP_METRIC_KEYS)
    assert m["acc"] == 0 and m["comp"] == 0 and m["rel_point"] == 0 and m["delta1_point"] == 1
    assert m["nc"] == pytest.approx(1.0)
    R, _ = torch.linalg.qr(torch.randn(3, 3, dtype=D, generator=torch.Generator().manual_seed(0)))
    R = R * torch.sign(torch.linalg.det(R))
    moved = apply_sim3(torch.tensor(0.3, dtype=D), R, torch.tensor([1.0, -2.0, 0.5], dtype=D), gt)
    mask[0, :2] = False  # masked pixels are garbage and must be ignored by the fit and the metrics
    moved[0, :2] = 1e3
    aligned = pointmap_metrics(moved, gt, mask, align="umeyama")
    assert aligned["acc"] < 1e-9 and aligned["comp"] < 1e-9 and aligned["nc"] == pytest.approx(1.0)
    assert aligned["rel_point"] < 1e-9
    unaligned = pointmap_metrics(moved, gt, mask, align="none")
    assert unaligned["acc"] > 0.1
    # scale-only alignment recovers a pure scale
    assert pointmap_metrics(gt * 4, gt, align="scale")["acc"] < 1e-12
    # subsampling draws independent subsets of each cloud: finite, but no longer exactly zero
    sub = pointmap_metrics(gt.clone(), gt, align="none", max_points=50)
    assert 0 < sub["acc"] < 1.0 and sub["rel_point"] == 0
    assert pointmap_metrics(gt.clone(), gt, align="none", max_points=10**6)["acc"] == 0


# ----------------------------------------------------------------------------- pose


def test_pose_auc_hand():
    assert pose_auc([1.0, 3.0], (5, 2)) == pytest.approx({"auc@5": 3.75 / 5, "auc@2": 0.75 / 2})
    # VGGT histogram variant at thr 5: recall at 1..5 deg = 0, .5, .5, 1, 1 -> 0.6
    assert pose_auc([1.0, 3.0], (5,), method="histogram")["auc@5"] == pytest.approx(0.6)
    assert pose_auc(np.zeros(7), (5, 10, 20)) == {"auc@5": 1.0, "auc@10": 1.0, "auc@20": 1.0}
    assert pose_auc([50.0, 60.0], (5,))["auc@5"] == 0.0


@settings(max_examples=10, deadline=None)
@given(errs=st.lists(st.floats(0, 40), min_size=1, max_size=20))
def test_pose_auc_monotone_and_bounded(errs):
    a = pose_auc(errs, (5, 10, 20))
    assert 0 <= a["auc@5"] <= a["auc@10"] + 1e-12 <= 1 + 1e-12
    worse = pose_auc([e + 1 for e in errs], (5, 10, 20))
    assert all(worse[k] <= a[k] + 1e-12 for k in a)


def _traj(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    T = torch.eye(4, dtype=D).repeat(n, 1, 1)
    for i in range(n):
        q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=D))
        T[i, :3, :3] = q * torch.sign(torch.linalg.det(q))
    T[:, :3, 3] = torch.randn(n, 3, generator=g, dtype=D)
    return T


def test_relative_pose_errors_similarity_invariant_and_hand():
    gt = _traj()
    S = torch.eye(4, dtype=D)
    S[:3, :3] = _traj(1, seed=5)[0, :3, :3] * 2.0
    S[:3, 3] = torch.tensor([1.0, 2.0, 3.0], dtype=D)
    pred = S @ gt
    pred[:, :3, :3] /= 2.0  # keep rotations orthonormal: world scaled by 2, cameras rigid
    e = relative_pose_errors(pred, gt)
    assert e["pairs"].tolist() == [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]
    assert e["rot_err"].abs().max() < 1e-6 and e["trans_err"].abs().max() < 1e-6
    # hand: two cameras 1 m apart along x; predicted second camera rotated 10 deg about its z axis and
    # moved along y: rotation error 10, translation direction error 90
    c = torch.eye(4, dtype=D).repeat(2, 1, 1)
    c[1, 0, 3] = 1.0
    p = c.clone()
    a = math.radians(10)
    p[1, :2, :2] = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=D)
    p[1, :3, 3] = torch.tensor([0.0, 1.0, 0.0], dtype=D)
    e = relative_pose_errors(p, c)
    assert e["rot_err"].item() == pytest.approx(10.0)
    # relative translation: gt R_j^T(-t_j) = (-1,0,0); pred R_j^T (0,-1,0) = (-sin10, -cos10, 0): angle 80
    assert e["trans_err"].item() == pytest.approx(80.0)
    m = pose_metrics(p, c, auc_thresholds=(30,), accuracy_thresholds=(15,))
    assert m["rra@15"] == 1.0 and m["rta@15"] == 0.0
    assert m["auc@30"] == 0.0  # max(rot, trans) = 80 > 30
    assert rra_rta(torch.tensor([1.0, 20.0]), torch.tensor([3.0, 4.0]), 5) == (0.5, 1.0)


# ----------------------------------------------------------------------------- features


def test_feature_norms_hand():
    tokens = torch.tensor([[[3.0, 4.0], [0.0, 1.0]]])  # (B=1, N=2, C=2): norms 5, 1
    assert token_norms(tokens).tolist() == [[5.0, 1.0]]
    fmap = tokens.transpose(1, 2).reshape(1, 2, 1, 2)  # (B, C, h, w)
    assert token_norms(fmap).tolist() == [[[5.0, 1.0]]]
    s = norm_summary(tokens, percentiles=(50, 100))
    assert s == pytest.approx(
        {"mean": 3.0, "std": math.sqrt(8), "min": 1.0, "max": 5.0, "p50": 3.0, "p100": 5.0}
    )
    b = torch.tensor([[[6.0, 8.0], [0.0, -1.0]]])  # norms 10, 1; cosines 1, -1
    d = feature_drift(tokens, b)
    assert d == pytest.approx(
        {
            "norm_a": 3.0,
            "norm_b": 5.5,
            "norm_ratio": 5.5 / 3,
            "norm_abs_diff": 2.5,
            "norm_rel_diff": 2.5 / 3,
            "cosine_mean": 0.0,
            "cosine_std": math.sqrt(2),
            "cosine_min": -1.0,
        }
    )
    assert feature_drift(fmap, b.transpose(1, 2).reshape(1, 2, 1, 2)) == pytest.approx(d)
    with pytest.raises(ValueError):
        token_norms(torch.zeros(2, 3))
