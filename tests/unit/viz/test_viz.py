"""Image helpers and the shared-PCA feature visualisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tune3d.viz import (
    colorize_depth,
    colorize_labels,
    fit_pca,
    label_palette,
    pca_images,
    save_png,
    tile_images,
    to_uint8,
    turbo,
    upsample_nearest,
)


def test_to_uint8_layouts():
    chw = torch.zeros(3, 4, 5)
    chw[0] = 1.0
    out = to_uint8(chw)
    assert (
        out.shape == (4, 5, 3)
        and out.dtype == np.uint8
        and (out[..., 0] == 255).all()
        and (out[..., 1] == 0).all()
    )
    assert to_uint8(np.full((4, 5), 0.5)).shape == (4, 5, 3)
    assert to_uint8(np.full((2, 2, 3), 7, np.uint8))[0, 0, 0] == 7
    with pytest.raises(ValueError):
        to_uint8(np.zeros((2, 2, 4, 4)))


def test_save_png_roundtrip(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    path = save_png(img, tmp_path / "sub" / "a.png")
    assert np.array_equal(np.asarray(Image.open(path)), img)


def test_turbo_endpoints_and_depth_colouring():
    lo, mid, hi = turbo(np.array([0.0, 0.5, 1.0]))
    assert lo == pytest.approx([0.136, 0.091, 0.107], abs=2e-3)  # dark blue-violet
    assert mid[1] > 0.9  # green/cyan in the middle
    assert hi[0] > hi[1] and hi[0] > hi[2]  # dark red end
    depth = np.linspace(0.5, 4.0, 20).reshape(4, 5).astype(np.float32)
    depth[0, 0] = 0.0
    rgb = colorize_depth(depth)
    assert rgb.shape == (4, 5, 3) and (rgb[0, 0] == 0).all() and rgb[1:].any()
    inv = colorize_depth(torch.from_numpy(depth)[None], inverse=True)
    assert (inv[0, 0] == 0).all() and not np.array_equal(inv, rgb)


def test_labels_palette_and_ignore():
    pal = label_palette(256)
    assert pal.shape == (256, 3) and len({tuple(c) for c in pal}) == 256
    labels = np.array([[0, 1], [2, 255]])
    rgb = colorize_labels(labels)
    assert (rgb[1, 1] == 0).all() and rgb[0, 0].any()
    assert len({tuple(rgb[0, 0]), tuple(rgb[0, 1]), tuple(rgb[1, 0])}) == 3


def test_tile_and_upsample():
    a = np.zeros((4, 6, 3), np.uint8)
    b = np.full((2, 2, 3), 9, np.uint8)
    t = tile_images([a, b, a], ncols=2, pad=1)
    assert t.shape == (2 * 4 + 3, 2 * 6 + 3, 3)
    assert upsample_nearest(b, 3).shape == (6, 6, 3)
    assert upsample_nearest(a, (8, 12)).shape == (8, 12, 3)


def test_pca_recovers_dominant_directions_and_is_shared_across_views():
    g = torch.Generator().manual_seed(0)
    C = 16
    basis = torch.linalg.qr(torch.randn(C, C, generator=g))[0]
    scales = torch.tensor([10.0, 5.0, 2.0] + [0.1] * (C - 3))
    views = [
        ((torch.randn(2, 10, 12, C, generator=g) * scales) @ basis.T).permute(0, 3, 1, 2) + 3.0
        for _ in range(3)
    ]
    pca = fit_pca(views)
    for i in range(3):
        assert abs(float(pca.components[:, i] @ basis[:, i])) > 0.99
    assert pca.explained[0] > pca.explained[1] > pca.explained[2]
    rgb = pca.transform(views[0])
    assert rgb.shape == (2, 3, 10, 12) and rgb.min() >= 0 and rgb.max() <= 1
    # shared projection: identical features in two views get identical colours
    v1, v2 = views[1].clone(), views[2].clone()
    v2[0, :, 3, 4] = v1[1, :, 5, 6]
    assert torch.allclose(pca.transform(v1)[1, :, 5, 6], pca.transform(v2)[0, :, 3, 4])
    # deterministic signs: refitting on a permuted token order gives the same components
    again = fit_pca([views[2], views[0], views[1]])
    assert torch.allclose(again.components, pca.components, atol=1e-4)


def test_pca_images_sizes():
    feats = [torch.randn(8, 3, 4), torch.randn(8, 3, 4)]
    ims = pca_images(feats, scale=14)
    assert len(ims) == 2 and ims[0].shape == (42, 56, 3) and ims[0].dtype == np.uint8
    assert ims[0].std() > 0
