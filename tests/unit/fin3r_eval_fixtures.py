"""Tiny fixtures in the official layouts of the Fin3R evaluation datasets (written by the tests)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from tune3d.data.benchmarks.moge import write_moge_depth


def _image(path: Path, h: int, w: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


def write_moge_suite(root: Path, datasets=("NYUv2", "ETH3D"), n: int = 2, h: int = 24, w: int = 32) -> Path:
    """``root/<Dataset>/.index.txt`` + instance folders with image.jpg, depth.png, meta.json."""
    for k, name in enumerate(datasets):
        folder = root / name
        folder.mkdir(parents=True)
        names = []
        for i in range(n):
            inst = folder / "scene" / f"{i:04d}"
            inst.mkdir(parents=True)
            _image(inst / "image.jpg", h, w, 10 * k + i)
            v, u = np.mgrid[0:h, 0:w]
            depth = (2.0 + 0.05 * u + 0.03 * v + i).astype(np.float32)
            depth[0, 0] = np.nan  # unknown pixel
            write_moge_depth(inst / "depth.png", depth)
            K = [[0.8, 0.0, 0.5], [0.0, 0.8 * w / h, 0.5], [0.0, 0.0, 1.0]]
            (inst / "meta.json").write_text(json.dumps({"intrinsics": K}))
            names.append(f"scene/{i:04d}")
        (folder / ".index.txt").write_text("\n".join(names) + "\n")
    return root


def write_scannet1500(root: Path, h: int = 48, w: int = 64) -> Path:
    """LoFTR layout: test.npz, intrinsics.npz, scannet_test_1500/scene0707_00/{color,pose}."""
    scene = root / "scannet_test_1500" / "scene0707_00"
    (scene / "color").mkdir(parents=True)
    (scene / "pose").mkdir(parents=True)
    c2w = {15: np.eye(4), 30: np.eye(4)}
    c2w[30][:3, 3] = [0.3, 0.0, 0.05]
    for f, T in c2w.items():
        _image(scene / "color" / f"{f}.jpg", h, w, f)
        np.savetxt(scene / "pose" / f"{f}.txt", T)
    np.savez(root / "test.npz", name=np.array([[707, 0, 15, 30]], dtype=np.int64))
    K = np.array([[50.0, 0, w / 2], [0, 50.0, h / 2], [0, 0, 1]])
    np.savez(root / "intrinsics.npz", scene0707_00=K)
    return root


def write_seven_scenes_flat(root: Path, n: int = 6, h: int = 48, w: int = 64) -> Path:
    """A flat 7-Scenes folder: frame-XXXXXX.{color.png,depth.png,pose.txt} + camera-intrinsics.txt."""
    root.mkdir(parents=True, exist_ok=True)
    np.savetxt(root / "camera-intrinsics.txt", np.array([[50.0, 0, w / 2], [0, 50.0, h / 2], [0, 0, 1]]))
    for i in range(n):
        stem = root / f"frame-{i:06d}"
        _image(Path(f"{stem}.color.png"), h, w, i)
        d = np.full((h, w), 1500 + 10 * i, dtype=np.uint16)
        d[0, :] = 65535  # invalid marker
        Image.fromarray(d).save(f"{stem}.depth.png")
        T = np.eye(4)
        T[:3, 3] = [0.02 * i, 0.0, 0.0]
        np.savetxt(f"{stem}.pose.txt", T)
    return root


def write_nrgbd_scene(root: Path, n: int = 3, h: int = 48, w: int = 64) -> Path:
    """Neural RGB-D scene: images/img<i>.png, depth/depth<i>.png (mm), poses.txt (OpenGL c2w)."""
    (root / "images").mkdir(parents=True)
    (root / "depth").mkdir()
    rows = []
    for i in range(n):
        _image(root / "images" / f"img{i}.png", h, w, i)
        Image.fromarray(np.full((h, w), 2000, dtype=np.uint16)).save(root / "depth" / f"depth{i}.png")
        T = np.eye(4)
        T[0, 3] = 0.1 * i
        rows.append(T if i != 1 else np.full((4, 4), np.nan))
    (root / "poses.txt").write_text("\n".join(" ".join(f"{x:g}" for x in r) for T in rows for r in T) + "\n")
    return root


def write_sintel_dpt(path: Path, depth: np.ndarray) -> None:
    """Sintel ``.dpt``: float32 tag 202021.25, int32 width, int32 height, float32 depth (little-endian)."""
    h, w = depth.shape
    path.write_bytes(
        np.array([202021.25], "<f4").tobytes()
        + np.array([w, h], "<i4").tobytes()
        + np.asarray(depth, "<f4").tobytes()
    )


def write_bonn(
    root: Path, seqs=("balloon2", "crowd2", "crowd3", "person_tracking2", "synchronous"), n: int = 3
):
    """Bonn RGB-D 110-frame cuts: rgbd_bonn_<seq>/{rgb_110,depth_110}/*.png (depth uint16 m x 5000)."""
    for k, s in enumerate(seqs):
        rgb, dep = root / f"rgbd_bonn_{s}" / "rgb_110", root / f"rgbd_bonn_{s}" / "depth_110"
        rgb.mkdir(parents=True)
        dep.mkdir(parents=True)
        for i in range(n):
            _image(rgb / f"{1548266469.1 + i:.6f}.png", 24, 32, 7 * k + i)
            v, u = np.mgrid[0:24, 0:32]
            Image.fromarray((5000 * (1.0 + 0.02 * u + 0.01 * v + 0.1 * i)).astype(np.uint16)).save(
                dep / f"{1548266469.1 + i:.6f}.png"
            )
    return root
