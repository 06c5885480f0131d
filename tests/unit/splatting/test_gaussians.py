"""Feature Gaussians: init, safetensors/PLY round trips, and FiT3D's colour/feature gradient split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tune3d.errors import Tune3DError
from tune3d.splatting import FeatureGaussians, rasterize, render_rgb_and_features
from tune3d.splatting.sh import SH_C0


def _points(n: int = 200, seed: int = 0):
    rng = np.random.default_rng(seed)
    xyz = rng.normal(size=(n, 3)).astype(np.float32) * 0.4 + np.array([0, 0, 3], np.float32)
    rgb = rng.integers(0, 256, size=(n, 3), dtype=np.uint8)
    return xyz, rgb


def _camera(width=24, height=16, f=20.0):
    K = torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]])
    return torch.eye(4), K


def test_from_points_init():
    xyz = np.array([[0, 0, 0], [1, 0, 0], [0, 2, 0], [0, 0, 3], [5, 5, 5]], np.float32)
    rgb = np.array([[255, 0, 0]] * 5, np.uint8)
    g = FeatureGaussians.from_points(xyz, rgb, sh_degree=3, feature_dim=16, feature_width=32)
    p = g.params
    assert len(g) == 5 and g.feature_dim == 16 and g.decoder.weight.shape == (32, 16, 3, 3)
    assert g.decoder.bias is None
    # point 0: neighbours at distances 1, 2, 3 -> log sqrt((1 + 4 + 9) / 3)
    torch.testing.assert_close(p["scales"][0], torch.full((3,), float(np.log(np.sqrt(14 / 3)))))
    torch.testing.assert_close(p["quats"], torch.tensor([[1.0, 0, 0, 0]]).repeat(5, 1))
    torch.testing.assert_close(g.opacities, torch.full((5,), 0.1))
    torch.testing.assert_close(p["sh0"][:, 0] * SH_C0 + 0.5, torch.tensor([[1.0, 0, 0]]).repeat(5, 1))
    assert p["shN"].shape == (5, 15, 3) and (p["shN"] == 0).all() and (p["features"] == 0).all()


def test_save_load_roundtrip(tmp_path):
    g = FeatureGaussians.from_points(*_points(50), sh_degree=2, feature_dim=8, feature_width=12)
    with torch.no_grad():
        for v in g.params.values():
            v.add_(torch.randn_like(v))
        g.decoder.weight.normal_()
    g.save(tmp_path)
    h = FeatureGaussians.load(tmp_path)
    assert h.sh_degree == 2 and h.feature_width == 12 and h.feature_dim == 8
    for k, v in g.params.items():
        torch.testing.assert_close(h.params[k], v, rtol=0, atol=0)
    torch.testing.assert_close(h.decoder.weight, g.decoder.weight, rtol=0, atol=0)
    (tmp_path / "gaussians.safetensors").write_bytes(b"garbage")
    with pytest.raises(Tune3DError, match="gaussians.safetensors"):
        FeatureGaussians.load(tmp_path)


@pytest.mark.parametrize("sh_degree", [0, 3])
def test_ply_roundtrip_and_layout(tmp_path, sh_degree):
    from plyfile import PlyData

    g = FeatureGaussians.from_points(*_points(30), sh_degree=sh_degree, feature_dim=4, feature_width=None)
    with torch.no_grad():
        for v in g.params.values():
            v.add_(torch.randn_like(v))
    path = tmp_path / "point_cloud.ply"
    g.export_ply(path, with_features=True)
    names = list(PlyData.read(str(path))["vertex"].data.dtype.names)
    n_rest = 3 * ((sh_degree + 1) ** 2 - 1)
    expected = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    expected += [f"f_rest_{i}" for i in range(n_rest)] + ["opacity", "scale_0", "scale_1", "scale_2"]
    expected += ["rot_0", "rot_1", "rot_2", "rot_3"] + [f"feat_{i}" for i in range(4)]
    assert names == expected
    h = FeatureGaussians.from_ply(path, feature_width=None)
    assert h.sh_degree == sh_degree
    for k, v in g.params.items():
        torch.testing.assert_close(h.params[k], v, rtol=0, atol=0)
    if sh_degree == 3:  # Inria's f_rest is channel-major: f_rest_1 is the 2nd red coefficient
        vertex = PlyData.read(str(path))["vertex"]
        assert np.float32(vertex["f_rest_1"][0]) == g.params["shN"][0, 1, 0].item()
        assert np.float32(vertex["f_rest_15"][0]) == g.params["shN"][0, 0, 1].item()
    g.export_ply(tmp_path / "plain.ply")
    assert not any(
        n.startswith("feat_") for n in PlyData.read(str(tmp_path / "plain.ply"))["vertex"].data.dtype.names
    )


def test_gradient_split_feature_loss_leaves_geometry_untouched():
    g = FeatureGaussians.from_points(*_points(80, seed=1), sh_degree=1, feature_dim=6, feature_width=10)
    with torch.no_grad():
        g.params["features"].normal_()
        g.params["opacities"].fill_(0.5)
        g.params["scales"].add_(torch.randn_like(g.params["scales"]) * 0.3)  # anisotropic: rotations matter
        g.params["quats"].add_(torch.randn_like(g.params["quats"]) * 0.3)
    viewmat, K = _camera()
    r = render_rgb_and_features(g, viewmat, K, 24, 16, backend="torch")
    assert (
        r.rgb.shape == (1, 3, 16, 24) and r.latent.shape == (1, 6, 16, 24) and r.depth.shape == (1, 1, 16, 24)
    )
    assert r.alpha.max() > 0.3
    feat_loss = (g.decode(r.latent) - 1.0).abs().mean()
    feat_loss.backward(retain_graph=True)
    geometry = ("means", "quats", "scales", "opacities", "sh0", "shN")
    for k in geometry:
        assert g.params[k].grad is None or (g.params[k].grad == 0).all(), k
    assert g.params["features"].grad.abs().sum() > 0 and g.decoder.weight.grad.abs().sum() > 0
    g.zero_grad(set_to_none=True)
    (r.rgb.mean() + r.depth.mean()).backward()
    for k in ("means", "quats", "scales", "opacities", "sh0"):
        assert g.params[k].grad.abs().sum() > 0, k
    assert g.params["features"].grad is None or (g.params["features"].grad == 0).all()


def test_split_render_matches_plain_rasterize():
    g = FeatureGaussians.from_points(*_points(60, seed=2), sh_degree=1, feature_dim=5, feature_width=None)
    with torch.no_grad():
        g.params["features"].normal_()
        g.params["shN"].normal_(std=0.2)
    viewmat, K = _camera()
    bg = torch.tensor([0.1, 0.2, 0.3])
    r = render_rgb_and_features(g, viewmat, K, 24, 16, backend="torch", background=bg)
    args = (g.means, g.quats, g.scales, g.opacities)
    rgbd, alpha, _ = rasterize(
        *args,
        g.sh_coeffs,
        viewmat[None],
        K[None],
        24,
        16,
        sh_degree=1,
        render_mode="RGB+ED",
        backgrounds=bg[None],
    )
    lat, _, _ = rasterize(*args, g.features, viewmat[None], K[None], 24, 16)
    torch.testing.assert_close(r.rgb, rgbd[..., :3].permute(0, 3, 1, 2))
    torch.testing.assert_close(r.depth, rgbd[..., 3:].permute(0, 3, 1, 2))
    torch.testing.assert_close(r.alpha, alpha.permute(0, 3, 1, 2))
    torch.testing.assert_close(r.latent, lat.permute(0, 3, 1, 2))


def test_decode_hands_the_conv_a_contiguous_map():
    """Renders are permuted [B,H,W,D] views; decode must give the conv an NCHW-contiguous map (oneDNN's
    channels-last path is ~2x slower on CPU), with the same values and gradients."""
    g = FeatureGaussians.from_points(*_points(20), sh_degree=0, feature_dim=6, feature_width=10)
    seen = []
    g.decoder.register_forward_pre_hook(lambda m, args: seen.append(args[0].is_contiguous()))
    hwd = torch.randn(1, 8, 12, 6, requires_grad=True)
    latent = hwd.permute(0, 3, 1, 2)  # as render_rgb_and_features returns it
    assert not latent.is_contiguous()
    out = g.decode(latent)
    assert seen == [True]
    ref = torch.nn.functional.conv2d(latent.detach().contiguous(), g.decoder.weight.detach(), padding=1)
    torch.testing.assert_close(out.detach(), ref)
    out.square().sum().backward()
    assert hwd.grad is not None and hwd.grad.shape == hwd.shape and hwd.grad.abs().sum() > 0
