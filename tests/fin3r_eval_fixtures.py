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


def _rot_y(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), 0.0, np.sin(a)], [0.0, 1.0, 0.0], [-np.sin(a), 0.0, np.cos(a)]])


def re10k_c2w(n: int, k: int = 0) -> np.ndarray:
    """A known ``n,4,4`` camera-to-world trajectory (turning about y while moving along x and z)."""
    c2w = np.tile(np.eye(4), (n, 1, 1))
    for i in range(n):
        c2w[i, :3, :3] = _rot_y(4.0 * i + k)
        c2w[i, :3, 3] = [0.1 * i, 0.02 * k, 0.03 * i * i]
    return c2w


def write_re10k(
    root: Path,
    seqs=("0a1b2c3d4e5f6789", "1122334455667788"),
    n: int = 12,
    layout: str = "pi3",
    h: int = 36,
    w: int = 64,
) -> Path:
    """RealEstate10K: camera files (URL line + ``ts fx fy cx cy 0 0 w2c(12)``) and frames.

    ``layout="pi3"``: ``metadata/test/<seq>.txt`` + ``<seq>/images/NNNN.png``; ``"frames"`` (the release
    and its downloader): ``test/<seq>.txt`` + ``test/<seq>/<timestamp>.png``."""
    meta = root / ("metadata/test" if layout == "pi3" else "test")
    meta.mkdir(parents=True, exist_ok=True)
    for k, seq in enumerate(seqs):
        c2w = re10k_c2w(n, k)
        lines = [f"https://www.youtube.com/watch?v=seq{k}"]
        for i in range(n):
            ts = 33366666 * i + 1000
            w2c = np.linalg.inv(c2w[i])[:3].reshape(-1)
            lines.append(
                " ".join([str(ts), "0.9", "1.6", "0.5", "0.5", "0", "0"] + [f"{v:.9f}" for v in w2c])
            )
            frame = (
                root / seq / "images" / f"{i:04d}.png"
                if layout == "pi3"
                else root / "test" / seq / f"{ts}.png"
            )
            frame.parent.mkdir(parents=True, exist_ok=True)
            _image(frame, h, w, 100 * k + i)
        (meta / f"{seq}.txt").write_text("\n".join(lines) + "\n")
    return root


# The fixture scenes below look at the plane world z = PLANE_Z from cameras translated in x and y.
PLANE_Z_MM = 600.0


def _shift_c2w(i: int, step: float) -> np.ndarray:
    c2w = np.eye(4)
    c2w[:3, 3] = [step * i, 0.5 * step * (i % 2), 0.0]
    return c2w


def write_dtu_scan(root: Path, scan: str = "scan1", n: int = 6, h: int = 48, w: int = 64) -> Path:
    """Spann3R's DTU test layout: images/, depths/ (.npy, mm), binary_masks/, cams/ (MVSNet text)."""
    folder = root / scan
    for sub in ("images", "depths", "binary_masks", "cams"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    K = np.array([[60.0, 0, w / 2], [0, 60.0, h / 2], [0, 0, 1]])
    for i in range(n):
        _image(folder / "images" / f"{i:08d}.jpg", h, w, i)
        depth = np.full((h, w), PLANE_Z_MM, dtype=np.float32)
        depth[0, 0] = np.nan
        np.save(folder / "depths" / f"{i:08d}.npy", depth)
        mask = np.zeros((h, w), np.uint8)
        mask[4 : h - 4, 6 : w - 6] = 255  # object region; the protocol erodes it by a 10x10 box
        Image.fromarray(mask).save(folder / "binary_masks" / f"{i:08d}.png")
        w2c = np.linalg.inv(_shift_c2w(i, 20.0))
        text = "extrinsic\n" + "\n".join(" ".join(f"{v:.6f}" for v in r) for r in w2c)
        text += "\n\nintrinsic\n" + "\n".join(" ".join(f"{v:.6f}" for v in r) for r in K) + "\n\n425.0 2.5\n"
        (folder / "cams" / f"{i:08d}_cam.txt").write_text(text)
    return root


def write_eth3d_scene(root: Path, scene: str = "courtyard", n: int = 6, h: int = 48, w: int = 64) -> Path:
    """Pi3's ETH3D layout: images/, ground_truth_depth/ (raw float32) under custom_undistorted; cam npz."""
    img_dir = root / scene / "images" / "custom_undistorted"
    dep_dir = root / scene / "ground_truth_depth" / "custom_undistorted"
    cam_dir = root / scene / "custom_undistorted_cam"
    for d in (img_dir, dep_dir, cam_dir):
        d.mkdir(parents=True, exist_ok=True)
    K = np.array([[55.0, 0, w / 2], [0, 55.0, h / 2], [0, 0, 1]])
    for i in range(n):
        name = f"DSC_{i:04d}.JPG"
        rng = np.random.default_rng(i)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(img_dir / name, format="JPEG")
        depth = np.full((h, w), PLANE_Z_MM / 1000.0, dtype="<f4")
        depth[:, :3] = np.inf  # no ground truth there
        depth.tofile(dep_dir / name)
        w2c = np.linalg.inv(_shift_c2w(i, 0.02))[:3]
        np.savez(cam_dir / name.replace("JPG", "npz"), intrinsics=K, extrinsics=w2c)
    return root


def _rmvd_classes(dataset: str):
    """Stand-ins for rmvd's sample classes (same module, class and attribute names), importable by
    ``pickle.dumps`` while the context is open, so a test can write a sample list exactly as rmvd does."""
    import contextlib
    import sys
    import types

    from tune3d.data.benchmarks.robustmvd import RMVD_CLASSES

    module, sample_cls, image_cls, depth_cls = RMVD_CLASSES[dataset]

    class File:
        def __init__(self, path):
            self.path = path

    class Sample:
        def __init__(self, base, name):
            self.base = base
            self.name = name
            self.data = {}

    @contextlib.contextmanager
    def installed():
        mods = {n: types.ModuleType(n) for n in ("rmvd", "rmvd.data", module)}
        for cname, base in ((sample_cls, Sample), (image_cls, File), (depth_cls, File)):
            c = type(cname, (base,), {"__module__": module, "__qualname__": cname})
            setattr(mods[module], cname, c)
        saved = {n: sys.modules.get(n) for n in mods}
        sys.modules.update(mods)
        try:
            yield mods[module]
        finally:
            for n, m in saved.items():
                if m is None:
                    sys.modules.pop(n, None)
                else:
                    sys.modules[n] = m

    return installed()


def write_robustmvd(
    root: Path, dataset: str, scenes=("courtyard",), n_keys: int = 2, views: int = 4, h: int = 24, w: int = 32
) -> Path:
    """RobustMVD's ``eth3d`` / ``tanks_and_temples`` layout: frames + key-view depth per scene, and the
    ``<dataset>.robustmvd.mvd.pickle`` sample list (key view at index 0, ``views - 1`` source views)."""
    import pickle

    rng = np.random.default_rng(3)
    samples = []
    with _rmvd_classes(dataset) as mod:
        sample_cls, image_cls, depth_cls = (
            getattr(mod, [n for n in dir(mod) if n.endswith(s)][0]) for s in ("Sample", "Image", "Depth")
        )
        for si, scene in enumerate(scenes):
            n_frames = n_keys + views
            if dataset == "eth3d":
                img_dir, dep_dir = (
                    root / scene / "images" / "dslr_images",
                    root / scene / "ground_truth_depth" / "dslr_images",
                )
                names = [f"DSC_{200 + i:04d}.JPG" for i in range(n_frames)]
            else:
                img_dir, dep_dir = root / scene / "images", root / scene / "depth"
                names = [f"{i:08d}.jpg" for i in range(n_frames)]
            img_dir.mkdir(parents=True)
            dep_dir.mkdir(parents=True)
            for i, nm in enumerate(names):
                _image(img_dir / nm, h, w, 100 * si + i)
            for k in range(n_keys):
                v, u = np.mgrid[0:h, 0:w]
                depth = (2.0 + 0.05 * u + 0.03 * v + k).astype(np.float32)
                depth[:2, :] = np.inf if dataset == "eth3d" else np.nan  # no ground truth there
                if dataset == "eth3d":
                    depth.astype("<f4").tofile(dep_dir / names[k])
                    depth_rel = f"ground_truth_depth/dslr_images/{names[k]}"
                else:
                    np.savez(dep_dir / f"{k + 1:06d}.npz", depth)  # rmvd's T&T depth files are 1-based
                    depth_rel = f"depth/{k + 1:06d}.npz"
                views_idx = [k] + [j for j in range(n_frames) if j != k][: views - 1]
                s = sample_cls(scene, f"{scene}/key{k:06d}")
                rel = "images/dslr_images/" if dataset == "eth3d" else "images/"
                K = np.array([[0.9 * w, 0, w / 2], [0, 0.9 * w, h / 2], [0, 0, 1]], np.float32)
                s.data = {
                    "images": [image_cls(rel + names[j]) for j in views_idx],
                    "depth": depth_cls(depth_rel),
                    "poses": [np.eye(4, dtype=np.float32)]
                    + [
                        np.block(
                            [[np.eye(3), rng.normal(0, 0.1, (3, 1))], [np.zeros((1, 3)), np.ones((1, 1))]]
                        ).astype(np.float32)
                        for _ in views_idx[1:]
                    ],
                    "intrinsics": [K.copy() for _ in views_idx],
                    "keyview_idx": 0,
                }
                samples.append(s)
        (root / f"{dataset}.robustmvd.mvd.pickle").write_bytes(pickle.dumps(samples, protocol=4))
    return root
