"""Torch rasterizer: exactness against a brute-force per-pixel loop, gradients, modes, dispatch, strategy."""

from __future__ import annotations

import math

import pytest
import torch

from tune3d.errors import Tune3DError
from tune3d.splatting import rasterize, resolve_backend
from tune3d.splatting._torch_backend import project_gaussians, rasterization_torch


def _scene(n: int, dtype=torch.float64, seed: int = 0, spread: float = 0.5, opaque: bool = False):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g, dtype=dtype) * spread + torch.tensor([0.0, 0.0, 3.0], dtype=dtype)
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = torch.rand(n, 3, generator=g, dtype=dtype) * 0.2 + (0.25 if opaque else 0.03)
    lo = 0.9 if opaque else 0.05
    opac = torch.rand(n, generator=g, dtype=dtype) * (0.99 - lo) + lo
    return means, quats, scales, opac


def _camera(width: int, height: int, f: float, dtype=torch.float64, c: int = 1):
    K = torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=dtype)[None].repeat(c, 1, 1)
    viewmats = torch.eye(4, dtype=dtype)[None].repeat(c, 1, 1)
    for i in range(1, c):  # small sideways shifts
        viewmats[i, 0, 3] = 0.15 * i
    return viewmats, K


def _brute_force(means2d, conics, depths, radii, opac, colors, width, height, bg=None):
    """Per pixel, per depth-sorted Gaussian, gsplat's sequential loop with its thresholds."""
    out = torch.zeros(height, width, colors.shape[-1], dtype=colors.dtype)
    alpha_img = torch.zeros(height, width, dtype=colors.dtype)
    order = [g for g in torch.argsort(depths, stable=True).tolist() if (radii[g] > 0).all()]
    for i in range(height):
        for j in range(width):
            T, acc = 1.0, torch.zeros(colors.shape[-1], dtype=colors.dtype)
            for g in order:
                dx, dy = float(means2d[g, 0]) - (j + 0.5), float(means2d[g, 1]) - (i + 0.5)
                a, b, c = conics[g].tolist()
                sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
                alpha = min(0.999, float(opac[g]) * math.exp(-sigma))
                if sigma < 0 or alpha < 1.0 / 255.0:
                    continue
                next_t = T * (1.0 - alpha)
                if next_t <= 1e-4:
                    break
                acc += colors[g] * alpha * T
                T = next_t
            out[i, j] = acc if bg is None else acc + T * bg
            alpha_img[i, j] = 1.0 - T
    return out, alpha_img


@pytest.mark.parametrize("opaque", [False, True])
def test_matches_brute_force(opaque):
    width, height = 24, 20
    means, quats, scales, opac = _scene(40, opaque=opaque, seed=1 + opaque)
    colors = torch.rand(40, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    bg = torch.tensor([[0.2, 0.4, 0.6, 0.8]], dtype=torch.float64)
    viewmats, K = _camera(width, height, 30.0)
    # tile_size 8 so the image has several tiles including partial ones at the border
    img, alpha, info = rasterize(
        means,
        quats,
        scales,
        opac,
        colors,
        viewmats,
        K,
        width,
        height,
        backgrounds=bg,
        tile_size=8,
        backend="torch",
    )
    radii, m2, depths, conics, _ = project_gaussians(means, quats, scales, opac, viewmats, K, width, height)
    ref, ref_alpha = _brute_force(m2[0], conics[0], depths[0], radii[0], opac, colors, width, height, bg[0])
    torch.testing.assert_close(img[0], ref, rtol=0, atol=1e-10)
    torch.testing.assert_close(alpha[0, ..., 0], ref_alpha, rtol=0, atol=1e-10)
    if opaque:  # the T <= 1e-4 stop must actually have been exercised
        assert (ref_alpha > 1 - 1e-3).any()
    assert info["radii"].dtype == torch.int32 and info["radii"].shape == (1, 40, 2)


def test_culling_and_info_keys():
    means, quats, scales, opac = _scene(30, seed=4, spread=1.5)
    means[0, 2] = -1.0  # behind the camera
    means[1] = torch.tensor([100.0, 0.0, 3.0], dtype=torch.float64)  # far outside the image
    opac[2] = 0.002  # below 1/255: never visible
    viewmats, K = _camera(32, 24, 30.0, c=2)
    colors = torch.rand(30, 3, dtype=torch.float64)
    _, _, info = rasterize(means, quats, scales, opac, colors, viewmats, K, 32, 24, backend="torch")
    assert (info["radii"][:, :3] == 0).all()
    for key in ("means2d", "radii", "depths", "conics", "opacities", "gaussian_ids", "tile_size"):
        assert key in info
    assert info["width"] == 32 and info["height"] == 24 and info["n_cameras"] == 2
    assert info["gaussian_ids"] is None and info["means2d"].shape == (2, 30, 2)


@pytest.mark.parametrize("mode", ["RGB", "D", "ED", "RGB+D", "RGB+ED"])
def test_render_modes_and_channels(mode):
    means, quats, scales, opac = _scene(25, seed=5)
    viewmats, K = _camera(16, 12, 20.0, c=2)
    colors = torch.rand(25, 7, dtype=torch.float64)
    bg = torch.rand(2, 7, dtype=torch.float64)
    out, alpha, info = rasterize(
        means,
        quats,
        scales,
        opac,
        colors,
        viewmats,
        K,
        16,
        12,
        render_mode=mode,
        backgrounds=bg,
        backend="torch",
    )
    x = {"RGB": 7, "D": 1, "ED": 1, "RGB+D": 8, "RGB+ED": 8}[mode]
    assert out.shape == (2, 12, 16, x) and alpha.shape == (2, 12, 16, 1)
    if mode != "RGB":
        z = info["depths"][info["radii"].gt(0).all(-1)]
        depth = out[..., -1]
        if "E" in mode:  # expected depth lies within the visible depth range where something was hit
            hit = alpha[..., 0] > 0.05
            assert depth[hit].min() >= z.min() - 1e-9 and depth[hit].max() <= z.max() + 1e-9
        else:  # accumulated depth = expected depth * alpha
            ed, _, _ = rasterize(
                means, quats, scales, opac, colors, viewmats, K, 16, 12, render_mode="ED", backend="torch"
            )
            torch.testing.assert_close(depth, ed[..., 0] * alpha[..., 0])
    if mode.startswith("RGB"):
        ref, _, _ = rasterize(
            means, quats, scales, opac, colors, viewmats, K, 16, 12, backgrounds=bg, backend="torch"
        )
        torch.testing.assert_close(out[..., :7], ref)


def test_sh_colors_match_manual_evaluation():
    from tune3d.splatting.sh import eval_sh

    n = 20
    means, quats, scales, opac = _scene(n, seed=6)
    viewmats, K = _camera(16, 16, 20.0, c=2)
    sh = torch.randn(n, 16, 3, dtype=torch.float64) * 0.3
    out, _, _ = rasterize(means, quats, scales, opac, sh, viewmats, K, 16, 16, sh_degree=3, backend="torch")
    campos = torch.linalg.inv(viewmats)[:, :3, 3]
    rgb = torch.clamp_min(eval_sh(3, means[None] - campos[:, None], sh[None].expand(2, -1, -1, -1)) + 0.5, 0)
    ref, _, _ = rasterize(means, quats, scales, opac, rgb, viewmats, K, 16, 16, backend="torch")
    torch.testing.assert_close(out, ref)


def test_chunked_equals_single_chunk_with_grads():
    means, quats, scales, opac = _scene(60, seed=7)
    viewmats, K = _camera(40, 32, 40.0)
    colors = torch.rand(60, 5, dtype=torch.float64)
    results = []
    for chunk in (1 << 30, 256 * 8):  # one chunk vs many checkpointed chunks
        leaves = [t.clone().requires_grad_() for t in (means, quats, scales, opac, colors)]
        out, alpha, info = rasterization_torch(
            *leaves, viewmats, K, 40, 32, tile_size=8, chunk_elements=chunk
        )
        info["means2d"].retain_grad()
        ((out * torch.linspace(0, 1, 5, dtype=torch.float64)).sum() + alpha.square().sum()).backward()
        results.append([out, alpha, info["means2d"].grad, *[t.grad for t in leaves]])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    assert results[0][2].abs().sum() > 0  # screen-space gradient reached means2d


def test_gradcheck_float64():
    n, width, height = 5, 8, 8
    g = torch.Generator().manual_seed(8)
    means = (torch.randn(n, 3, generator=g, dtype=torch.float64) * 0.25 + torch.tensor([0, 0, 2.0])).double()
    quats = torch.randn(n, 4, generator=g, dtype=torch.float64)
    log_scales = torch.log(torch.rand(n, 3, generator=g, dtype=torch.float64) * 0.15 + 0.1)
    logit_opac = torch.randn(n, generator=g, dtype=torch.float64) * 0.5
    sh = torch.randn(n, 4, 3, generator=g, dtype=torch.float64) * 0.2
    feats = torch.randn(n, 2, generator=g, dtype=torch.float64)
    viewmats, K = _camera(width, height, 8.0)

    def fn(means, quats, log_scales, logit_opac, sh, feats):
        rgb, a1, _ = rasterize(
            means, quats, log_scales.exp(), logit_opac.sigmoid(), sh, viewmats, K, width, height,
            sh_degree=1, render_mode="RGB+ED", tile_size=4, backend="torch",
        )  # fmt: skip
        lat, _, _ = rasterize(
            means, quats, log_scales.exp(), logit_opac.sigmoid(), feats, viewmats, K, width, height,
            tile_size=4, backend="torch",
        )  # fmt: skip
        return rgb, a1, lat

    inputs = [t.clone().requires_grad_() for t in (means, quats, log_scales, logit_opac, sh, feats)]
    assert fn(*inputs)[1].max() > 0.3  # the Gaussians are actually visible
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_antialiased_compensation_darkens():
    means, quats, scales, opac = _scene(20, seed=9)
    scales = scales * 0.05  # sub-pixel Gaussians: compensation < 1
    viewmats, K = _camera(16, 16, 20.0)
    cols = torch.ones(20, 1, dtype=torch.float64)
    _, a0, _ = rasterize(means, quats, scales, opac, cols, viewmats, K, 16, 16, backend="torch")
    _, a1, i1 = rasterize(
        means, quats, scales, opac, cols, viewmats, K, 16, 16, rasterize_mode="antialiased", backend="torch"
    )
    assert a1.sum() < a0.sum() and (i1["opacities"] <= opac[None] + 1e-12).all()


def test_backend_dispatch_cpu(caplog):
    assert resolve_backend("auto", "cpu") == "torch"
    assert resolve_backend("torch", "cpu") == "torch"
    with pytest.raises(Tune3DError, match="gsplat"):
        resolve_backend("gsplat", "cpu")
    with pytest.raises(Tune3DError, match="unknown"):
        resolve_backend("cuda-magic", "cpu")
    means, quats, scales, opac = _scene(4, dtype=torch.float32)
    viewmats, K = _camera(8, 8, 8.0, dtype=torch.float32)
    with pytest.raises(Tune3DError, match="gsplat"):
        rasterize(means, quats, scales, opac, torch.rand(4, 3), viewmats, K, 8, 8, backend="gsplat")
    with pytest.raises(ValueError, match="colors"):
        rasterize(means, quats, scales, opac, torch.rand(5, 3), viewmats, K, 8, 8)


def test_default_strategy_grows_and_prunes_on_cpu():
    from gsplat.strategy import DefaultStrategy

    torch.manual_seed(0)
    n, width, height = 300, 32, 24
    means, quats, scales, opac = _scene(n, dtype=torch.float32, spread=0.6)
    opac[:40] = 0.003  # below prune_opa -> pruned
    params = torch.nn.ParameterDict(
        {
            "means": means,
            "quats": quats,
            "scales": scales.log(),
            "opacities": torch.logit(opac),
            "colors": torch.rand(n, 3),
            "features": torch.zeros(n, 8),
        }
    )
    optimizers = {k: torch.optim.Adam([p], lr=1e-3) for k, p in params.items()}
    strategy = DefaultStrategy(
        refine_start_iter=2, refine_every=3, reset_every=1000, grow_grad2d=1e-7, verbose=False
    )
    strategy.check_sanity(params, optimizers)
    state = strategy.initialize_state(scene_scale=1.0)
    viewmats, K = _camera(width, height, 25.0, dtype=torch.float32, c=2)
    target = torch.rand(2, height, width, 3)
    sizes = [n]
    for step in range(7):
        out, _, info = rasterize(
            params["means"], params["quats"], params["scales"].exp(), params["opacities"].sigmoid(),
            torch.cat([params["colors"], params["features"]], -1), viewmats, K, width, height,
        )  # fmt: skip
        strategy.step_pre_backward(params, optimizers, state, step, info)
        (out[..., :3] - target).abs().mean().backward()
        for opt in optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        strategy.step_post_backward(params, optimizers, state, step, info, packed=False)
        sizes.append(len(params["means"]))
        assert all(len(p) == sizes[-1] for p in params.values())
    assert max(sizes) > n  # grew (clone/split)
    # the 40 Gaussians below prune_opa (Adam at lr 1e-3 cannot lift them to 0.005 in 7 steps) were pruned
    assert params["opacities"].sigmoid().min() >= 0.005
