"""Stage II targets decoded only at the token grid's support equal the full decode, then reduce."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tune3d.fit3d.lifted import LiftedCache, open_lifted, write_random_lifted
from tune3d.fit3d.targets import (
    bilinear_matrix,
    decode_at_grid,
    decode_full,
    grid_support,
    reduce_to_grid,
    render_grid_target,
    render_target,
    support_decodable,
    valid_mask,
)


def _latent(b: int, d: int, h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, h, w, d, generator=g).permute(0, 3, 1, 2)  # the rasterizer's NHWC layout


def _conv(d: int, c: int, k: int, bias: bool, seed: int) -> nn.Conv2d:
    torch.manual_seed(seed)
    return nn.Conv2d(d, c, k, padding=k // 2, bias=bias)


@pytest.mark.parametrize(
    "size,grid,k,bias",
    [
        ((42, 56), (3, 4), 3, False),  # ViT-S/14 at the lift size: integer scale 14
        ((37, 53), (5, 7), 3, True),  # odd sizes, non-integer scale factors, a bias
        ((30, 41), (4, 9), 5, False),  # wider kernel, different scales per axis
        ((5, 90), (2, 7), 3, False),  # taps at the image border use the zero padding
        ((16, 16), (16, 3), 1, True),  # one axis not reduced at all, 1x1 conv
    ],
)
def test_decode_at_grid_equals_full_decode_then_reduce(size, grid, k, bias):
    latent = _latent(2, 6, *size, seed=sum(size))
    dec = _conv(6, 11, k, bias, seed=k)
    with torch.no_grad():
        ref = reduce_to_grid(decode_full(latent, dec), grid)
        got = decode_at_grid(latent, dec, grid)
    assert got.shape == ref.shape == (2, 11, *grid)
    assert (got - ref).abs().max().item() < 5e-6
    # a channels-first (NCHW-contiguous) latent gives the same
    with torch.no_grad():
        assert torch.allclose(decode_at_grid(latent.contiguous(), dec, grid), got, atol=1e-6)


@pytest.mark.parametrize(
    "size,grid,k", [((42, 56), (3, 4), 3), ((37, 53), (5, 7), 3), ((30, 41), (4, 9), 5), ((5, 90), (2, 7), 3)]
)
def test_decode_at_grid_from_the_support_pixels_alone(size, grid, k):
    """A latent holding only grid_support's rows x columns decodes exactly like the whole map."""
    latent = _latent(2, 6, *size, seed=7)
    dec = _conv(6, 11, k, True, seed=k)
    rows, cols = grid_support(size, grid, k)
    assert len(rows) < size[0] or len(cols) < size[1]
    with torch.no_grad():
        ref = decode_at_grid(latent, dec, grid)
        got = decode_at_grid(latent[:, :, rows][:, :, :, cols], dec, grid, support=(rows, cols, *size))
    assert torch.equal(got, ref)


def test_grid_support_at_the_stage_ii_size():
    rows, cols = grid_support((294, 392), (21, 28))  # ViT-S/14 at 294x392: 4x4 pixels per token
    assert (len(rows), len(cols)) == (84, 112)
    assert rows[:8].tolist() == [5, 6, 7, 8, 19, 20, 21, 22]
    rows, _ = grid_support((28, 28), (2, 2), k=5)
    assert rows.tolist() == [4, 5, 6, 7, 8, 9, 18, 19, 20, 21, 22, 23]


def test_decode_at_grid_reads_only_the_support():
    """Changing latent pixels that no token's bilinear tap (or its 3x3 neighbourhood) reads changes nothing;
    changing one that is read does."""
    H, W, grid = 28, 28, (2, 2)  # scale 14: token i reads rows/cols 14i+6, 14i+7; with the conv 14i+5..14i+8
    latent = _latent(1, 4, H, W, seed=1)
    dec = _conv(4, 5, 3, False, seed=0)
    rows = bilinear_matrix(H, grid[0]).ne(0).any(0).nonzero().squeeze(1).tolist()
    assert rows == [6, 7, 20, 21]
    with torch.no_grad():
        base = decode_at_grid(latent, dec, grid)
        far = latent.clone()
        far[..., 0:5, :] += 100.0  # rows 0..4 are outside every neighbourhood
        assert torch.equal(decode_at_grid(far, dec, grid), base)
        near = latent.clone()
        near[..., 5, 5] += 1.0  # the conv neighbourhood of pixel (6, 6)
        assert not torch.allclose(decode_at_grid(near, dec, grid), base)


def test_bilinear_matrix_is_pytorchs_resize():
    x = torch.randn(3, 37)
    m = bilinear_matrix(37, 5)
    assert m.shape == (5, 37) and (m.ne(0).sum(1) <= 2).all()
    ref = reduce_to_grid(x.view(1, 3, 1, 37), (1, 5)).view(3, 5)
    assert torch.allclose(x @ m.T, ref, atol=1e-6)
    assert torch.equal(bilinear_matrix(4, 4), torch.eye(4))


@pytest.mark.parametrize(
    "dec",
    [
        nn.Conv2d(4, 5, 3, padding=1, padding_mode="reflect"),  # not zero padding
        nn.Conv2d(4, 5, 3, padding=2, dilation=2),  # dilated
        nn.Conv2d(4, 5, (3, 1), padding=(1, 0)),  # not square
        nn.Sequential(nn.Conv2d(4, 5, 1), nn.ReLU()),  # not linear
    ],
)
def test_decoders_that_are_not_a_same_conv_fall_back_to_the_full_decode(dec):
    assert not support_decodable(dec)
    latent = _latent(1, 4, 20, 26, seed=3)
    with torch.no_grad():
        ref = reduce_to_grid(dec(latent), (3, 4))
        assert torch.equal(decode_at_grid(latent, dec, (3, 4)), ref)


def test_grid_not_smaller_than_image_falls_back():
    latent = _latent(1, 4, 6, 8, seed=4)
    dec = _conv(4, 5, 3, False, seed=1)
    assert support_decodable(dec)
    with torch.no_grad():
        for grid in [(6, 8), (9, 12)]:  # identity and upsampling
            assert torch.equal(
                decode_at_grid(latent, dec, grid), reduce_to_grid(decode_full(latent, dec), grid)
            )


def test_render_grid_target_matches_full_render_on_a_lifted_scene(tmp_path):
    from tune3d.data import write_scene
    from tune3d.data.synth import generate_scene

    write_scene(generate_scene(0, num_views=2, height=42, width=58, num_points=800), tmp_path / "s")
    lifted = open_lifted(write_random_lifted(tmp_path / "s", tmp_path / "l", 32, latent_dim=16, seed=0))
    gs = LiftedCache(2**30).get(lifted)
    image, viewmat, K = lifted.view(0)
    H, W = image.shape[-2:]
    grid = (3, 4)  # 42x58 -> floor to 42x56 at patch 14; the target is reduced from the full 42x58 render
    feats, alpha = render_target(gs, viewmat, K, H, W, "torch")
    for mode in ("alpha", "binary"):
        tgt, mask = render_grid_target(gs, viewmat, K, H, W, grid, "torch", mask=mode)
        assert (tgt - reduce_to_grid(feats, grid)).abs().max().item() < 1e-5
        # the latent and alpha are rendered only at grid_support's pixels (tile-local rounding differs)
        ref_mask = reduce_to_grid(valid_mask(alpha, mode), grid)
        assert (mask - ref_mask).abs().max().item() < 1e-6
