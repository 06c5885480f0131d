"""Torch rasterizer tiling: the ellipse-tight tile lists and the tile size change work, not the image."""

from __future__ import annotations

import math

import pytest
import torch

from tune3d.errors import Tune3DError
from tune3d.splatting import rasterize
from tune3d.splatting._torch_backend import (
    DEFAULT_TILE_SIZE,
    isect_tiles,
    project_gaussians,
    rasterize_to_pixels,
)


def _elongated_scene(n: int = 60, seed: int = 0):
    """Thin, rotated, partly faint Gaussians: their bounding boxes cover many tiles their ellipses miss."""
    g = torch.Generator().manual_seed(seed)
    dt = torch.float64
    means = torch.randn(n, 3, generator=g, dtype=dt) * 0.6 + torch.tensor([0.0, 0.0, 3.0], dtype=dt)
    quats = torch.randn(n, 4, generator=g, dtype=dt)
    scales = torch.rand(n, 3, generator=g, dtype=dt) * 0.02 + 0.005
    scales[:, 0] = 0.3 + 0.3 * torch.rand(n, generator=g, dtype=dt)  # one long axis
    opac = torch.rand(n, generator=g, dtype=dt) * 0.9 + 0.02
    colors = torch.rand(n, 5, generator=g, dtype=dt)
    f = 40.0
    K = torch.tensor([[f, 0, 26.0], [0, f, 19.0], [0, 0, 1]], dtype=dt)[None]
    return means, quats, scales, opac, colors, torch.eye(4, dtype=dt)[None], K


def _composite(m2, con, opac, cols, radii, depths, W, H, ts, tight: bool):
    tw, th = math.ceil(W / ts), math.ceil(H / ts)
    extra = dict(conics=con, opacities=opac) if tight else {}
    tpg, fids, offs = isect_tiles(m2, radii, depths, ts, tw, th, **extra)
    img, alpha = rasterize_to_pixels(m2, con, cols, opac, W, H, ts, offs, fids)
    return img, alpha, fids.numel(), tpg


@pytest.mark.parametrize("ts", [4, 8, 16])
def test_tight_tile_lists_keep_the_image(ts):
    W, H = 52, 38
    means, quats, scales, opac, colors, viewmats, K = _elongated_scene()
    radii, m2, depths, con, _ = project_gaussians(means, quats, scales, opac, viewmats, K, W, H)
    op = opac[None].expand_as(depths)
    cols = colors[None].expand(1, -1, -1)
    loose = _composite(m2, con, op, cols, radii, depths, W, H, ts, tight=False)
    tight = _composite(m2, con, op, cols, radii, depths, W, H, ts, tight=True)
    torch.testing.assert_close(tight[0], loose[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(tight[1], loose[1], rtol=0, atol=1e-12)
    assert tight[2] < 0.9 * loose[2]  # the filter really drops bounding-box-only tiles
    assert int(tight[3].sum()) == tight[2]  # tiles_per_gauss counts the kept intersections


def test_tight_tile_lists_keep_every_visible_pixel():
    """Every (pixel, Gaussian) pair with alpha >= 1/255 lies in a tile that lists the Gaussian."""
    W, H, ts = 52, 38, 8
    means, quats, scales, opac, _, viewmats, K = _elongated_scene(seed=1)
    radii, m2, depths, con, _ = project_gaussians(means, quats, scales, opac, viewmats, K, W, H)
    tw, th = math.ceil(W / ts), math.ceil(H / ts)
    _, fids, offs = isect_tiles(m2, radii, depths, ts, tw, th, conics=con, opacities=opac[None])
    ends = torch.cat([offs.reshape(-1)[1:].long(), torch.tensor([fids.numel()])])
    listed = set()
    for t, (s, e) in enumerate(zip(offs.reshape(-1).tolist(), ends.tolist())):
        listed.update((t, g) for g in fids[s:e].tolist())
    ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    px = torch.stack([xs, ys], -1).reshape(-1, 2).double() + 0.5
    d = m2[0][None] - px[:, None]  # [P,N,2]
    a, b, c = con[0].unbind(-1)
    sigma = 0.5 * (a * d[..., 0] ** 2 + c * d[..., 1] ** 2) + b * d[..., 0] * d[..., 1]
    visible = (opac * torch.exp(-sigma) >= 1 / 255) & (radii[0] > 0).all(-1)
    p_idx, g_idx = torch.nonzero(visible, as_tuple=True)
    assert len(p_idx) > 100
    tile = (px[p_idx, 1].long() // ts) * tw + px[p_idx, 0].long() // ts
    assert all((t, g) in listed for t, g in zip(tile.tolist(), g_idx.tolist()))


@pytest.mark.parametrize("ts", [3, 5, 8, 16])
def test_tile_size_changes_nothing_but_speed(ts):
    means, quats, scales, opac, colors, viewmats, K = _elongated_scene(seed=2)
    bg = torch.rand(1, 5, dtype=torch.float64)
    kw = dict(render_mode="RGB+ED", backgrounds=bg, backend="torch")
    ref, ref_a, _ = rasterize(means, quats, scales, opac, colors, viewmats, K, 52, 38, tile_size=16, **kw)
    out, a, info = rasterize(means, quats, scales, opac, colors, viewmats, K, 52, 38, tile_size=ts, **kw)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-10)
    torch.testing.assert_close(a, ref_a, rtol=0, atol=1e-10)
    assert info["tile_size"] == ts and info["tile_width"] == math.ceil(52 / ts)


def test_default_tile_size_and_lift_config():
    from tune3d.splatting.lift_format import LiftConfig

    means, quats, scales, opac, colors, viewmats, K = _elongated_scene(n=10)
    _, _, info = rasterize(means, quats, scales, opac, colors, viewmats, K, 20, 20, backend="torch")
    assert info["tile_size"] == DEFAULT_TILE_SIZE
    assert LiftConfig(tile_size=4).tile_size == 4 and LiftConfig().tile_size is None
    with pytest.raises(Tune3DError, match="tile_size"):
        LiftConfig(tile_size=0)
    with pytest.raises(ValueError, match="tile_size"):
        rasterize(means, quats, scales, opac, colors, viewmats, K, 20, 20, tile_size=0, backend="torch")


def test_lift_renders_with_the_configured_tile_size():
    from tune3d.splatting import FeatureGaussians
    from tune3d.splatting.lift import View, lift_losses
    from tune3d.splatting.lift_format import LiftConfig

    g = torch.Generator().manual_seed(0)
    xyz = torch.rand(200, 3, generator=g) * torch.tensor([2.0, 1.5, 1.0]) + torch.tensor([-1.0, -0.75, 2.5])
    gs = FeatureGaussians.from_points(
        xyz, torch.rand(200, 3, generator=g), sh_degree=1, feature_dim=4, feature_width=6
    )
    K = torch.tensor([[30.0, 0, 16], [0, 30, 12], [0, 0, 1]])
    view = View(0, "v", torch.rand(3, 24, 32, generator=g), torch.eye(4), K)
    target = torch.randn(6, 4, 5, generator=g)
    losses = {}
    for ts in (4, None):
        loss, out = lift_losses(gs, view, target, LiftConfig(sh_degree=1, tile_size=ts), 1, "torch")
        assert out.info["tile_size"] == (ts or DEFAULT_TILE_SIZE)
        losses[ts] = loss["total"].item()
    assert math.isclose(losses[4], losses[None], rel_tol=1e-5)
