"""Fixture writers for data tests: tiny nerfstudio / COLMAP / ScanNet++ layouts from a synthetic scene."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tune3d.data.readers.colmap import ColmapCamera, ColmapImage, rotmat_to_qvec, write_colmap_model
from tune3d.geometry import opencv_to_opengl


def tiny_scene(views: int = 3, seed: int = 0, height: int = 24, width: int = 32, points: int = 500):
    from tune3d.data.synth import generate_scene

    return generate_scene(seed, views, height, width, num_points=points, test_every=3)


def write_images(scene, folder: Path, ext: str = ".png") -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, f in enumerate(scene.frames):
        name = f"img_{i:03d}{ext}"
        Image.fromarray(f.image()).save(folder / name)
        names.append(name)
    return names


def synth_image_folder(root: Path, views: int, seed: int):
    """One synthetic 48x64 room under ``root/data`` and its frames as ``root/images/view{k}.png``: the
    image-folder input of ``tune3d reconstruct``. Returns ``(scene, folder)``."""
    from tune3d.data import load_scene
    from tune3d.data.synth import synth_dataset

    paths = synth_dataset(
        root / "data", scenes=1, views=views, resolution=(48, 64), seed=seed, num_points=300
    )
    sc = load_scene(paths[0])
    folder = root / "images"
    folder.mkdir()
    for k, f in enumerate(sc.frames):
        Image.fromarray(f.image()).save(folder / f"view{k}.png")
    return sc, folder


def write_colmap_fixture(scene, root: Path, binary: bool, model: str = "PINHOLE") -> None:
    names = write_images(scene, root / "images")
    f0 = scene[0]
    fx, fy, cx, cy = f0.K[0, 0], f0.K[1, 1], f0.K[0, 2], f0.K[1, 2]
    params = {
        "PINHOLE": [fx, fy, cx, cy],
        "SIMPLE_PINHOLE": [fx, cx, cy],
        "OPENCV": [fx, fy, cx, cy, 0.01, -0.002, 0.0005, 0.0001],
        "SIMPLE_RADIAL": [fx, cx, cy, 0.02],
        "RADIAL": [fx, cx, cy, 0.02, -0.01],
        "OPENCV_FISHEYE": [fx, fy, cx, cy, 0.01, 0.002, -0.001, 0.0005],
    }[model]
    cams = {1: ColmapCamera(1, model, f0.width, f0.height, np.array(params, dtype=np.float64))}
    imgs = {}
    for i, (f, name) in enumerate(zip(scene.frames, names)):
        w2c = f.viewmat
        imgs[i + 1] = ColmapImage(i + 1, rotmat_to_qvec(w2c[:3, :3]), w2c[:3, 3].copy(), 1, name)
    write_colmap_model(
        root / "sparse" / "0", cams, imgs, (scene.points[:50], scene.point_colors[:50]), binary=binary
    )


def write_nerfstudio_fixture(scene, root: Path, with_depth: bool = True) -> dict:
    names = write_images(scene, root / "images")
    f0 = scene[0]
    frames = []
    (root / "depth").mkdir(parents=True, exist_ok=True)
    for i, (f, name) in enumerate(zip(scene.frames, names)):
        T = opencv_to_opengl(torch.from_numpy(f.c2w)).numpy()
        fm = {"file_path": f"images/{name}", "transform_matrix": T.tolist()}
        if with_depth:
            mm = np.round(f.depth() * 1000).astype(np.uint16)
            Image.fromarray(mm).save(root / "depth" / f"{i:03d}.png")
            fm["depth_file_path"] = f"depth/{i:03d}.png"
        frames.append(fm)
    meta = {
        "camera_model": "OPENCV",
        "fl_x": f0.K[0, 0],
        "fl_y": f0.K[1, 1],
        "cx": f0.K[0, 2],
        "cy": f0.K[1, 2],
        "w": f0.width,
        "h": f0.height,
        "k1": 0.01,
        "k2": 0.0,
        "p1": 0.0,
        "p2": 0.0,
        "frames": frames,
    }
    (root / "transforms.json").write_text(json.dumps(meta))
    return meta
