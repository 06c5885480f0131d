"""MoGe's per-dataset evaluation viewport: hand-checked crops, resizes and a rotated viewport."""

from __future__ import annotations

import numpy as np
from fin3r_eval_fixtures import write_moge_suite

from tune3d.data.benchmarks.moge import list_moge_instances, load_moge_instance
from tune3d.data.benchmarks.moge_viewport import (
    MOGE_VIEWPORTS,
    masked_nearest_resize,
    viewport_intrinsics,
    warp_to_viewport,
)


def test_masked_nearest_resize_down_and_up_by_hand():
    vals = np.arange(16, dtype=np.float32).reshape(4, 4)
    mask = np.ones((4, 4), bool)
    mask[0, 0] = False  # top-left block: its next valid pixel in row-major order
    mask[2:, 2:] = False  # bottom-right block: nothing valid
    out, m = masked_nearest_resize(vals, mask, (2, 2))
    np.testing.assert_array_equal(m, [[True, True], [True, False]])
    np.testing.assert_array_equal(out[m], [1, 2, 8])
    # upsampling gives each source pixel to the one nearest target pixel only
    out, m = masked_nearest_resize(np.array([[1.0, 2.0], [3.0, 4.0]]), np.ones((2, 2), bool), (4, 4))
    np.testing.assert_array_equal(m[0], [True, False, True, False])
    np.testing.assert_array_equal(m[:, 0], [True, False, True, False])
    np.testing.assert_array_equal(out[::2, ::2], [[1, 2], [3, 4]])


def test_centred_viewport_is_a_central_crop():
    # 32x16 frame, fx = fy = 32 px (normalised 1 and 2): a 16x16 viewport has the frame's pixel size,
    # so it is exactly the columns 8..23.
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (16, 32, 3), dtype=np.uint8)
    depth = rng.uniform(1, 5, (16, 32)).astype(np.float32)
    mask = rng.uniform(size=(16, 32)) > 0.2
    Kn = np.array([[1.0, 0.0, 0.5], [0.0, 2.0, 0.5], [0.0, 0.0, 1.0]])
    R, Kt = viewport_intrinsics(Kn, 16, 16)
    np.testing.assert_allclose(R, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(Kt, [[2.0, 0, 0.5], [0, 2.0, 0.5], [0, 0, 1]])
    w = warp_to_viewport(image, depth, mask, Kn, 16, 16)
    np.testing.assert_array_equal(w["image"], image[:, 8:24])
    np.testing.assert_array_equal(w["mask"], mask[:, 8:24])
    np.testing.assert_allclose(w["depth"][w["mask"]], depth[:, 8:24][mask[:, 8:24]], rtol=1e-5)
    assert (w["depth"][~w["mask"]] == 0).all()


def test_centred_viewport_downsamples_to_its_size():
    # a 64x48 frame to a 32x24 viewport of the same aspect: the whole view, every 2x2 block -> 1 pixel
    depth = np.full((48, 64), 3.0, dtype=np.float32)
    mask = np.ones((48, 64), bool)
    mask[0, 0] = False
    Kn = np.array([[0.8, 0.0, 0.5], [0.0, 0.8 * 64 / 48, 0.5], [0.0, 0.0, 1.0]])
    w = warp_to_viewport(np.zeros((48, 64, 3), np.uint8), depth, mask, Kn, 32, 24)
    assert w["image"].shape == (24, 32, 3) and w["depth"].shape == (24, 32)
    np.testing.assert_allclose(w["Kn"], Kn)
    assert w["mask"].all()  # the top-left 2x2 block still has 3 valid pixels
    mask[:2, :4] = False  # now the first two blocks have none
    w = warp_to_viewport(np.zeros((48, 64, 3), np.uint8), depth, mask, Kn, 32, 24)
    assert not w["mask"][0, 0] and not w["mask"][0, 1] and w["mask"].sum() == 32 * 24 - 2
    np.testing.assert_allclose(w["depth"][w["mask"]], 3.0, rtol=1e-5)


def test_off_centre_principal_point_rotates_the_viewport():
    # A fronto-parallel plane at z = 2 seen by a camera whose principal point is off-centre: the viewport
    # looks along the image centre's ray, so its depth is 2 / (R^T ray)_z, not 2.
    H, W = 60, 80
    Kn = np.array([[0.7, 0.0, 0.3], [0.0, 0.7 * W / H, 0.6], [0.0, 0.0, 1.0]])
    R, Kt = viewport_intrinsics(Kn, 40, 40)
    centre = np.linalg.inv(Kn) @ [0.5, 0.5, 1.0]
    np.testing.assert_allclose(R @ (centre / np.linalg.norm(centre)), [0, 0, 1], atol=1e-12)
    w = warp_to_viewport(
        np.zeros((H, W, 3), np.uint8), np.full((H, W), 2.0), np.ones((H, W), bool), Kn, 40, 40
    )
    u, v = np.meshgrid((np.arange(40) + 0.5) / 40, (np.arange(40) + 0.5) / 40, indexing="xy")
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(Kt).T
    expected = 2.0 / (rays @ R)[..., 2]  # (R^T r)_z
    assert w["mask"].mean() > 0.97  # the viewport stays inside the frame
    err = np.abs(w["depth"] / expected - 1)[w["mask"]]
    assert err.max() < 1e-2 and err.mean() < 2e-3  # nearest sampling of the ray distance
    assert np.abs(expected / 2 - 1).mean() > 0.03  # what an unrotated crop would have got wrong
    # the corners of the viewport, taken back to the frame, lie inside the frame
    corners = np.array([[0, 0, 1], [1, 0, 1], [0, 1, 1], [1, 1, 1.0]]) @ np.linalg.inv(Kt).T @ R @ Kn.T
    uv = corners[:, :2] / corners[:, 2:]
    assert (uv >= -1e-9).all() and (uv <= 1 + 1e-9).all()


def test_moge_reader_warps_to_the_dataset_viewport(tmp_path):
    root = write_moge_suite(tmp_path / "moge", datasets=("NYUv2",), n=1, h=24, w=32)
    (inst,) = list_moge_instances(root / "NYUv2")
    s = load_moge_instance(inst, MOGE_VIEWPORTS["NYUv2"])
    assert s["image"].shape == (480, 640, 3) and s["depth"].shape == (480, 640)
    # fixture intrinsics fx = 0.8 W, centred, 4:3 like the viewport: the whole frame, 20x the pixels
    np.testing.assert_allclose(s["K"], [[512.0, 0, 320.0], [0, 512.0, 240.0], [0, 0, 1]])
    raw = load_moge_instance(inst)
    # 20x upsampling: source pixel x lands on viewport pixel 20 x + 9 only (nearest), its depth unchanged
    assert s["mask"].sum() == raw["mask"].sum() == 24 * 32 - 1
    assert not s["mask"][9, 9]  # the fixture's unknown pixel [0, 0]
    assert s["mask"][29, 29] and not s["mask"][30, 30]
    np.testing.assert_allclose(s["depth"][29, 29], raw["depth"][1, 1], rtol=1e-5)
    np.testing.assert_allclose(s["depth"][469, 629], raw["depth"][23, 31], rtol=1e-5)
