"""Synthetic rooms: determinism, labels, geometric consistency of depth/poses, datasets on top."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tune3d.data.datasets import ImageFolderDataset, MultiViewDataset, ViewDataset, overlap_matrix
from tune3d.data.synth import CLASS_NAMES, generate_scene


@pytest.fixture(scope="module")
def scene():
    return generate_scene(3, num_views=6, height=30, width=40, num_points=3000, test_every=3)


def test_deterministic(scene):
    again = generate_scene(3, num_views=6, height=30, width=40, num_points=3000, test_every=3)
    for a, b in zip(scene.frames, again.frames):
        assert np.array_equal(a.c2w, b.c2w) and np.array_equal(a.image(), b.image())
        assert np.array_equal(a.depth(), b.depth()) and np.array_equal(a.semantics(), b.semantics())
    assert np.array_equal(scene.points, again.points)
    other = generate_scene(4, num_views=1, height=30, width=40, num_points=0)
    assert not np.array_equal(other[0].image(), scene[0].image())


def test_content(scene):
    assert len(CLASS_NAMES) >= 10 and scene.class_names == CLASS_NAMES
    labels = np.concatenate([f.semantics().ravel() for f in scene.frames])
    assert {0, 1}.issubset(set(labels.tolist())) and len(np.unique(labels)) >= 5
    assert labels.max() < len(CLASS_NAMES)
    d = np.stack([f.depth() for f in scene.frames])
    assert (d > 0).all() and d.max() < 12
    img = np.stack([f.image() for f in scene.frames])
    assert img.std() > 20  # textured, not flat
    assert scene.splits == {"train": [0, 2, 3, 5], "test": [1, 4]}
    assert scene.points.dtype == np.float32 and scene.point_colors.dtype == np.uint8


def test_depth_is_metric_z_and_consistent_across_views(scene):
    """Points back-projected from view 0 reproject into view 1 with matching depth where visible."""
    M = overlap_matrix(scene, range(len(scene)), grid=16)
    a, b = np.unravel_index(np.argmax(M - np.eye(len(M)) * 2), M.shape)
    assert M[a, b] > 0.3
    from tune3d.data.overlap import _frame_points

    fa, fb = scene[int(a)], scene[int(b)]
    pts = _frame_points(fa, 16)
    vm = fb.viewmat
    cam = pts @ vm[:3, :3].T + vm[:3, 3]
    u = fb.K[0, 0] * cam[:, 0] / cam[:, 2] + fb.K[0, 2]
    v = fb.K[1, 1] * cam[:, 1] / cam[:, 2] + fb.K[1, 2]
    ok = (cam[:, 2] > 0) & (u >= 1) & (u < fb.width - 1) & (v >= 1) & (v < fb.height - 1)
    db = fb.depth()[v[ok].astype(int), u[ok].astype(int)]
    rel = np.abs(db - cam[ok, 2]) / db
    assert np.median(rel) < 0.02  # most points agree (edges/occlusions excepted)


def test_tensor_covisibility_agrees_with_overlap_matrix(scene):
    """The in-memory form (every pixel, quarter resolution) and the lattice form rank partners alike."""
    import torch

    from tune3d.data.overlap import covisibility, covisible_partners

    depth = torch.from_numpy(np.stack([f.depth() for f in scene]).astype(np.float32))
    K, c2w = torch.from_numpy(scene.intrinsics), torch.from_numpy(scene.c2w)
    n = len(scene)
    C = np.array([[covisibility(depth, K, c2w, i, j) for j in range(n)] for i in range(n)])
    assert np.allclose(np.diag(C), 1.0, atol=0.02)  # a frame sees itself (up to depth-edge pixels)
    M = overlap_matrix(scene, range(n), grid=16)
    off = ~np.eye(n, dtype=bool)
    assert np.corrcoef(C[off], M[off])[0, 1] > 0.9
    parts = covisible_partners(depth, K, c2w, views=2, min_overlap=0.3, max_gap=n)
    small = torch.nn.functional.interpolate(depth[:, None], scale_factor=0.25, mode="nearest")[:, 0]
    sK = K.clone()
    sK[:, :2] *= 0.25
    for i, p in enumerate(parts):
        assert i not in p
        assert p == [j for j in range(n) if j != i and covisibility(small, sK, c2w, i, j) >= 0.3]
    assert covisible_partners(depth, K, c2w, views=1, min_overlap=0.3, max_gap=n) == [[] for _ in range(n)]


def test_view_dataset(scene):
    ds = ViewDataset([scene], resolution=(16, 20), split="train")
    assert len(ds) == 4
    item = ds[1]
    assert item["image"].shape == (3, 16, 20) and item["image"].dtype == torch.float32
    assert item["depth"].shape == (1, 16, 20) and item["semantics"].shape == (16, 20)
    assert (
        item["semantics"].dtype == torch.int64 and item["K"].shape == (3, 3) and item["c2w"].shape == (4, 4)
    )
    assert item["frame_index"] == 2 and item["scene_index"] == 0
    assert 0 <= item["image"].min() and item["image"].max() <= 1


def test_multiview_dataset(scene):
    ds = MultiViewDataset([scene], num_views=2, resolution=(15, 20), min_overlap=0.2, seed=1)
    assert len(ds) >= 1
    views = ds[0]
    assert len(views) == 2 and views[0]["frame_index"] != views[1]["frame_index"]
    table = ds.overlap(0)
    assert table[views[0]["frame_index"], views[1]["frame_index"]] >= 0.2
    again = MultiViewDataset([scene], num_views=2, resolution=(15, 20), min_overlap=0.2, seed=1)
    assert again[0][1]["frame_index"] == views[1]["frame_index"]


def test_image_folder_dataset(scene, tmp_path):
    from PIL import Image

    for i in range(2):
        Image.fromarray(scene[i].image()).save(tmp_path / f"{i}.png")
    ds = ImageFolderDataset(tmp_path, resolution=(8, 8))
    assert len(ds) == 2 and ds[0]["image"].shape == (3, 8, 8)
