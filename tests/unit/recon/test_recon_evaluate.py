"""Evaluation helpers of ``tune3d eval-recon`` against hand-built cases."""

from __future__ import annotations

import torch

from tune3d.recon.evaluate import EvalReconConfig, descriptor_match_errors, evaluate_model


def test_descriptor_match_errors_on_a_shifted_one_hot_image():
    H, W = 4, 6
    one_hot = torch.eye(H * W).reshape(H, W, H * W)
    shifted = torch.roll(one_hot, shifts=1, dims=1)  # view 2 sees pixel (x, y) of view 1 at (x + 1, y)
    desc = torch.stack([one_hot, shifted])
    xy0 = torch.tensor([[0, 0], [2, 1], [4, 3]])
    truth = xy0 + torch.tensor([1, 0])
    assert descriptor_match_errors(desc, xy0, truth).tolist() == [0.0, 0.0, 0.0]
    wrong = xy0 + torch.tensor([1, 2])  # true matches two rows lower than the descriptors say
    assert descriptor_match_errors(desc, xy0, wrong).tolist() == [2.0, 2.0, 2.0]


def test_mast3r_evaluation_reports_matching(tmp_path):
    from tune3d.data.synth import generate_scene
    from tune3d.recon import create_model

    torch.manual_seed(0)
    scene = generate_scene(2, num_views=6, height=48, width=64, num_points=0)
    model = create_model("mast3r_tiny", allow_random_init=True)
    cfg = EvalReconConfig(pairs=2, mono_frames=2, size=64, match_queries=50)
    m = evaluate_model(model, scene, cfg)
    assert set(m["matching"]) == {"acc@1px", "acc@3px", "acc@5px", "median_px", "queries"}
    assert 0 < m["matching"]["queries"] <= 100
    assert 0.0 <= m["matching"]["acc@1px"] <= m["matching"]["acc@3px"] <= m["matching"]["acc@5px"] <= 1.0
    assert "matching" not in evaluate_model(create_model("dust3r_tiny", allow_random_init=True), scene, cfg)
