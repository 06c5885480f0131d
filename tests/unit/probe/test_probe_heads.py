"""Probe heads, depth losses and lr schedules against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tune3d.errors import Tune3DError
from tune3d.probe import BinnedDepthHead, LinearSegHead, ProbeConfig, gradient_loss, sig_loss
from tune3d.probe.losses import depth_probe_loss
from tune3d.probe.schedule import lr_factor


def test_seg_head_shapes():
    head = LinearSegHead(24, 5)
    x = torch.randn(3, 24, 4, 6)
    assert head(x).shape == (3, 5, 4, 6)
    assert head.predict(x, (56, 84)).shape == (3, 5, 56, 84)
    assert isinstance(head.bn, torch.nn.BatchNorm2d)


def test_depth_head_shapes_and_range():
    head = BinnedDepthHead(24, 8, num_bins=256, min_depth=1e-3, max_depth=10.0, upsample=4)
    torch.nn.init.normal_(head.conv_depth.weight, std=1.0)
    x, cls = torch.randn(2, 24, 4, 6), torch.randn(2, 8)
    d = head(x, cls)
    assert d.shape == (2, 1, 16, 24)
    assert head.conv_depth.weight.shape == (256, 32, 1, 1)  # official layout: patch channels then CLS
    assert d.min() >= 1e-3 and d.max() <= 10.0
    assert head.predict(x, cls, (30, 40)).shape == (2, 1, 30, 40)
    with pytest.raises(ValueError, match="cls"):
        head(x, None)


def test_binned_depth_formula():
    """bins [1,2,3,4]; logits [0.9,-1,0,1.9] -> relu+0.1 = [1,.1,.1,2] / 3.2 -> depth 9.5/3.2."""
    head = BinnedDepthHead(3, 0, num_bins=4, min_depth=1.0, max_depth=4.0, upsample=1)
    with torch.no_grad():
        head.conv_depth.weight.zero_()
        head.conv_depth.bias.copy_(torch.tensor([0.9, -1.0, 0.0, 1.9]))
    d = head(torch.randn(1, 3, 2, 2))
    torch.testing.assert_close(d, torch.full((1, 1, 2, 2), 9.5 / 3.2))
    torch.testing.assert_close(head.bins, torch.tensor([1.0, 2.0, 3.0, 4.0]))


def test_depth_head_matches_reference_order():
    """Conv-then-upsample with CLS as a bias equals DINOv2's cat(CLS) -> upsample -> conv."""
    torch.manual_seed(0)
    head = BinnedDepthHead(6, 4, num_bins=16, min_depth=0.1, max_depth=5.0, upsample=4)
    torch.nn.init.normal_(head.conv_depth.weight, std=0.5)
    torch.nn.init.normal_(head.conv_depth.bias, std=0.5)
    x, cls = torch.randn(2, 6, 3, 5), torch.randn(2, 4)
    feat = torch.cat([x, cls[:, :, None, None].expand(-1, -1, 3, 5)], 1)
    feat = F.interpolate(feat, scale_factor=4, mode="bilinear", align_corners=False)
    p = torch.relu(head.conv_depth(feat)) + 0.1
    ref = (p / p.sum(1, keepdim=True) * head.bins[None, :, None, None]).sum(1, keepdim=True)
    torch.testing.assert_close(head(x, cls), ref, rtol=1e-5, atol=1e-5)


def test_sig_loss_hand_values():
    eps = 1e-3
    pred, gt = torch.tensor([2.0, 4.0, 9.0]), torch.tensor([1.0, 2.0, 0.0])  # third pixel invalid
    g = [math.log(2 + eps) - math.log(1 + eps), math.log(4 + eps) - math.log(2 + eps)]
    mean = sum(g) / 2
    var = sum((x - mean) ** 2 for x in g) / (2 - 1)  # unbiased, as torch.var
    expected = math.sqrt(var + 0.15 * mean**2)
    assert sig_loss(pred, gt).item() == pytest.approx(expected, rel=1e-5)
    assert sig_loss(pred, gt, warmup=True).item() == pytest.approx(math.sqrt(0.15) * abs(mean), rel=1e-5)
    # scale invariance up to the eps: a global scale only enters through 0.15 * mean^2
    gt2 = torch.rand(1, 20, 20) * 4 + 1
    assert sig_loss(gt2 * 3, gt2).item() == pytest.approx(math.sqrt(0.15) * math.log(3), rel=2e-3)
    assert sig_loss(torch.ones(4), torch.zeros(4)).item() == 0.0  # nothing valid


def test_gradient_loss_hand_values():
    a = math.log(2.0 + 1e-3) - math.log(1.0 + 1e-3)
    # 3x3, pred = 2*gt at (0,0) only: pairs (0,0)-(2,0) and (0,0)-(0,2) at stride 1, none at 2, 4, 6
    gt = torch.ones(1, 1, 3, 3)
    pred = gt.clone()
    pred[0, 0, 0, 0] = 2.0
    assert gradient_loss(pred, gt).item() == pytest.approx(2 * a / 9, rel=1e-5)
    # 5x5: stride 1 gives 2|a|/25; stride 2 samples a 3x3 grid containing (0,0): 2|a|/9
    gt = torch.ones(1, 5, 5)
    pred = gt.clone()
    pred[0, 0, 0] = 2.0
    assert gradient_loss(pred, gt).item() == pytest.approx(2 * a / 25 + 2 * a / 9, rel=1e-5)
    # invalid (2,0) removes the stride-1 pair (0,0)-(2,0) and shrinks the valid counts to 24 and 8;
    # at stride 2 the grid skips row 2's partner role: (0,0)-(4,0) and (0,0)-(0,4) both remain
    gt[0, 2, 0] = 0.0
    assert gradient_loss(pred, gt).item() == pytest.approx(a / 24 + 2 * a / 8, rel=1e-5)
    # a global scale gives a constant log-ratio and (up to eps, negligible at 100 m) zero gradient loss
    g = torch.rand(2, 1, 12, 12) * 100 + 100
    assert gradient_loss(3 * g, g).item() == pytest.approx(0.0, abs=1e-5)
    assert gradient_loss(g * (1 + torch.rand_like(g)), g).item() > 0.1


def test_depth_probe_loss_combines_and_backprops():
    gt = torch.rand(2, 1, 8, 8) * 3 + 0.5
    gt[0, 0, 0, 0] = 20.0  # beyond max_depth: ignored
    pred = (gt.clamp(max=5) * (1 + 0.1 * torch.randn_like(gt))).requires_grad_(True)
    loss, parts = depth_probe_loss(pred, gt, max_depth=10.0, grad_weight=0.5)
    valid = (gt > 0) & (gt <= 10)
    assert loss.item() == pytest.approx(
        sig_loss(pred, gt, valid).item() + 0.5 * gradient_loss(pred, gt, valid).item(), rel=1e-5
    )
    assert set(parts) == {"loss_sig", "loss_grad"}
    loss.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad[0, 0, 0, 0] == 0


def test_lr_schedules_match_mmcv():
    # poly power 1 with linear warm-up from warmup_ratio (mmcv: regular lr * (1 - (1 - t/W)(1 - r)))
    assert lr_factor(0, 100, "poly", warmup_iters=10, warmup_ratio=1e-6) == pytest.approx(1e-6)
    assert lr_factor(5, 100, "poly", warmup_iters=10, warmup_ratio=0.0) == pytest.approx(0.95 * 0.5)
    assert lr_factor(50, 100, "poly", warmup_iters=10) == pytest.approx(0.5)
    assert lr_factor(100, 100, "poly") == 0.0
    assert lr_factor(50, 100, "cosine", min_lr_ratio=0.0) == pytest.approx(0.5)
    assert lr_factor(100, 100, "cosine", min_lr_ratio=1e-8) == pytest.approx(1e-8)
    assert lr_factor(0, 100, "cosine", warmup_iters=30, warmup_ratio=1e-3) == pytest.approx(1e-3)


def test_config_resolution():
    seg, depth = ProbeConfig(iters=400).resolve("semseg"), ProbeConfig(iters=384).resolve("depth")
    assert (seg.lr, seg.weight_decay, seg.schedule, seg.grad_clip, seg.warmup_iters) == (
        1e-3,
        1e-4,
        "poly",
        None,
        15,
    )
    assert (depth.lr, depth.weight_decay, depth.schedule, depth.grad_clip) == (1e-4, 0.01, "cosine", 35.0)
    assert depth.warmup_iters == 128 and depth.sig_warmup_iters == 1
    assert ProbeConfig(lr=0.5).resolve("depth").lr == 0.5
    with pytest.raises(Tune3DError, match="unknown probe task"):
        ProbeConfig().resolve("normals")
    with pytest.raises(Tune3DError, match="min_depth"):
        ProbeConfig(min_depth=5.0, max_depth=1.0).resolve("depth")
