"""Tiny benchmark datasets written in exactly their official layouts (file names, bit depths, split files).

Images are blocks of class-dependent colour so a probe can learn something; nothing is copied from the
real datasets. Every writer returns the dataset root.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from tune3d.data.benchmarks.classes import pascal_palette


def _blocks(rng: np.random.Generator, h: int, w: int, values: list[int], block: int = 8) -> np.ndarray:
    """An ``h,w`` map of random ``values`` in ``block``-pixel squares."""
    small = rng.choice(values, size=(-(-h // block), -(-w // block)))
    return np.kron(small, np.ones((block, block), dtype=small.dtype))[:h, :w]


def _rgb_for(classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Colour image whose colour depends on the class id (+ noise)."""
    base = pascal_palette(256).astype(np.int32)[np.asarray(classes, dtype=np.int64) % 256]
    noise = rng.integers(-10, 11, size=base.shape)
    return np.clip(base + 64 + noise, 0, 255).astype(np.uint8)


def _save_rgb(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, quality=95) if path.suffix == ".jpg" else Image.fromarray(arr).save(path)


def _save_u8(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8), mode="L").save(path)


def _save_u16(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint16)).save(path)  # mode I;16


def write_mmseg_seg(
    root: Path, num_raw: int, n_train: int = 3, n_val: int = 2, size=(32, 48), prefix: str = "", seed: int = 0
) -> Path:
    """``images/{training,validation}/*.jpg`` + ``annotations/.../*.png``, raw labels 0..num_raw."""
    rng = np.random.default_rng(seed)
    for sub, n in (("training", n_train), ("validation", n_val)):
        for i in range(n):
            lab = _blocks(rng, *size, list(range(num_raw + 1)))
            name = f"{prefix}{sub}_{i:05d}" if prefix else f"{i:05d}"
            _save_u8(lab, root / "annotations" / sub / f"{name}.png")
            _save_rgb(_rgb_for(lab, rng), root / "images" / sub / f"{name}.jpg")
    return root


def write_nyu_depth(root: Path, n_train: int = 3, n_test: int = 2, size=(48, 64), seed: int = 0) -> Path:
    """Toolbox NYU layout: ``nyu_{train,test}.txt`` of ``rgb depth focal`` lines, uint16 mm PNGs."""
    rng = np.random.default_rng(seed)
    for fname, scene, n in (
        ("nyu_train.txt", "kitchen_0028a", n_train),
        ("nyu_test.txt", "bathroom", n_test),
    ):
        lines = []
        for i in range(n):
            blocks = _blocks(rng, *size, [0, 1500, 3000, 6000, 9000])
            depth_mm = np.where(blocks > 0, blocks + rng.integers(0, 50, size), 0).astype(
                np.uint16
            )  # 0 = no depth
            _save_u16(depth_mm, root / scene / f"sync_depth_{i:05d}.png")
            _save_rgb(_rgb_for(depth_mm // 1500, rng), root / scene / f"rgb_{i:05d}.jpg")
            lines.append(f"/{scene}/rgb_{i:05d}.jpg /{scene}/sync_depth_{i:05d}.png 518.8579")
        (root / fname).write_text("\n".join(lines) + "\n")
    return root


def write_voc(
    root: Path, n_train: int = 3, n_val: int = 2, n_aug: int = 0, size=(40, 56), seed: int = 0
) -> Path:
    """``VOCdevkit/VOC2012`` with palette PNG labels (0..20, 255 borders) and split files; ``n_aug`` extra
    ``SegmentationClassAug`` images listed in ``aug.txt``. Returns the folder holding ``VOCdevkit``."""
    rng = np.random.default_rng(seed)
    voc = root / "VOCdevkit" / "VOC2012"
    pal = pascal_palette(256).flatten().tolist()
    sets = voc / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True, exist_ok=True)
    for fname, n, start in (("train.txt", n_train, 0), ("val.txt", n_val, 100), ("aug.txt", n_aug, 200)):
        if fname == "aug.txt" and n == 0:
            continue
        names = [f"2007_{start + i:06d}" for i in range(n)]
        for name in names:
            lab = _blocks(rng, *size, [0, 1, 5, 15, 20]).astype(np.uint8)
            lab[0, :] = 255  # object borders are 255 in VOC
            _save_rgb(_rgb_for(lab, rng), voc / "JPEGImages" / f"{name}.jpg")
            if fname == "aug.txt":
                _save_u8(lab, voc / "SegmentationClassAug" / f"{name}.png")
            else:
                im = Image.fromarray(lab, mode="P")
                im.putpalette(pal)
                (voc / "SegmentationClass").mkdir(parents=True, exist_ok=True)
                im.save(voc / "SegmentationClass" / f"{name}.png")
        (sets / fname).write_text("\n".join(names) + "\n")
    return root


def write_kitti(root: Path, n_train: int = 2, n_test: int = 2, size=(376, 1242), seed: int = 0) -> Path:
    """Toolbox KITTI layout: ``input/<date>/<drive>/image_02/data/*.png``, ``gt_depth/<drive>/proj_depth/
    groundtruth/image_02/*.png`` (uint16, metres * 256, 0 = no lidar), ``kitti_eigen_{train,test}.txt``;
    the test file also has one ``None`` line (no ground truth), which readers skip."""
    rng = np.random.default_rng(seed)
    date, drive = "2011_09_26", "2011_09_26_drive_0001_sync"
    for fname, n, start in (("kitti_eigen_train.txt", n_train, 0), ("kitti_eigen_test.txt", n_test, 100)):
        lines = []
        for i in range(n):
            stem = f"{start + i:010d}"
            depth = np.zeros(size, dtype=np.uint16)
            ys, xs = rng.integers(0, size[0], 500), rng.integers(0, size[1], 500)
            depth[ys, xs] = rng.integers(256, 79 * 256, 500)
            _save_u16(
                depth, root / "gt_depth" / drive / "proj_depth" / "groundtruth" / "image_02" / f"{stem}.png"
            )
            img = _rgb_for(_blocks(rng, *size, [1, 2, 3], block=32), rng)
            _save_rgb(img, root / "input" / date / drive / "image_02" / "data" / f"{stem}.png")
            lines.append(
                f"{date}/{drive}/image_02/data/{stem}.png "
                f"{drive}/proj_depth/groundtruth/image_02/{stem}.png 721.5377"
            )
        if fname == "kitti_eigen_test.txt":
            lines.append(f"{date}/{drive}/image_02/data/0000009999.png None 721.5377")
        (root / fname).write_text("\n".join(lines) + "\n")
    return root


def write_scannet(
    root: Path,
    scenes=("scene0000_00", "scene0001_00"),
    frames: int = 2,
    color=(36, 48),
    depth=(24, 32),
    seed=0,
) -> Path:
    """Exported ScanNet: ``scans/SCENE/{color/N.jpg, depth/N.png, label-filt/N.png}``, split files, label tsv.

    ScanNet ids 1 (wall -> nyu40 1), 2 (chair -> 5), 22 (ceiling -> 22), 0 = unannotated; scene 0 trains,
    scene 1 validates. Label maps are 16-bit PNGs at the colour size, as exported.
    """
    rng = np.random.default_rng(seed)
    (root / "scannetv2-labels.combined.tsv").write_text(
        "id\traw_category\tcategory\tcount\tnyu40id\teigen13id\tnyuClass\tnyu40class\n"
        "1\twall\twall\t8277\t1\t12\twall\twall\n"
        "2\tchair\tchair\t4646\t5\t4\tchair\tchair\n"
        "22\tceiling\tceiling\t806\t22\t3\tceiling\tceiling\n"
    )
    (root / "scannetv2_train.txt").write_text(scenes[0] + "\n")
    (root / "scannetv2_val.txt").write_text("\n".join(scenes[1:]) + "\n")
    for scene in scenes:
        for i in range(frames):
            lab = _blocks(rng, *color, [0, 1, 2, 22], block=6)
            _save_u16(lab, root / "scans" / scene / "label-filt" / f"{i * 20}.png")
            _save_rgb(_rgb_for(lab, rng), root / "scans" / scene / "color" / f"{i * 20}.jpg")
            _save_u16(
                _blocks(rng, *depth, [0, 800, 2500, 4000]), root / "scans" / scene / "depth" / f"{i * 20}.png"
            )
    return root


def write_scannetpp(
    root: Path, scenes=("0a1b2c3d4e", "5f6a7b8c9d"), size=(24, 32), focal: float = 20.0
) -> Path:
    """ScanNet++ release layout: ``splits/nvs_sem_{train,val}.txt``, ``metadata/semantic_benchmark/
    {top100.txt, map_benchmark.csv}`` and per scene ``dslr/{colmap (text), nerfstudio/
    transforms_undistorted.json, undistorted_images/*.JPG}`` + ``scans/{mesh_aligned_0.05.ply,
    segments.json, segments_anno.json}``.

    Geometry (metres, z up): a wall plane at x = 2 split at y = 0 into a "wall" half (y > 0, segment 0)
    and a "doorframe" half (y < 0, segment 1, mapped to "door" by map_benchmark.csv), a floor (segment 2)
    and an unannotated ceiling (segment 3). Each scene has two frames at (0, 0, 1.5) looking along +x, so
    every pixel sees the x = 2 plane at z-depth 2 m; image columns < W/2 see y > 0.
    """
    import json

    import trimesh
    from scipy.spatial.transform import Rotation

    H, W = size
    (root / "splits").mkdir(parents=True, exist_ok=True)
    (root / "splits" / "nvs_sem_train.txt").write_text(scenes[0] + "\n")
    (root / "splits" / "nvs_sem_val.txt").write_text("\n".join(scenes[1:]) + "\n")
    meta = root / "metadata" / "semantic_benchmark"
    meta.mkdir(parents=True, exist_ok=True)
    (meta / "top100.txt").write_text("wall\nfloor\ndoor\nceiling lamp\ntable\n")
    (meta / "map_benchmark.csv").write_text(
        "class,count,semantic_map_to,instance_map_to\ndoorframe,3,door,\nwall,9,,\n"
    )
    quads = [
        [(2, 0, 0), (2, 2, 0), (2, 2, 3), (2, 0, 3)],  # wall, y > 0
        [(2, -2, 0), (2, 0, 0), (2, 0, 3), (2, -2, 3)],  # doorframe, y < 0
        [(-2, -2, 0), (2, -2, 0), (2, 2, 0), (-2, 2, 0)],  # floor
        [(-2, -2, 3), (2, -2, 3), (2, 2, 3), (-2, 2, 3)],  # ceiling, not annotated
    ]
    verts = np.array([v for q in quads for v in q], dtype=np.float64)
    faces = np.array(
        [[4 * i, 4 * i + 1, 4 * i + 2] for i in range(4)] + [[4 * i, 4 * i + 2, 4 * i + 3] for i in range(4)]
    )
    seg = [i for i in range(4) for _ in range(4)]
    groups = [
        {"id": 0, "objectId": 0, "label": "wall", "segments": [0]},
        {"id": 1, "objectId": 1, "label": "doorframe", "segments": [1]},
        {"id": 2, "objectId": 2, "label": "floor", "segments": [2]},
    ]
    c2w = np.eye(4)
    c2w[:3, :3] = np.array(
        [[0, -1, 0], [0, 0, -1], [1, 0, 0]], dtype=float
    ).T  # columns: right, down, forward
    c2w[:3, 3] = (0, 0, 1.5)
    w2c = np.linalg.inv(c2w)
    qx, qy, qz, qw = Rotation.from_matrix(w2c[:3, :3]).as_quat()
    tx, ty, tz = w2c[:3, 3]
    rng = np.random.default_rng(0)
    for scene in scenes:
        scans = root / "data" / scene / "scans"
        scans.mkdir(parents=True, exist_ok=True)
        trimesh.Trimesh(verts, faces, process=False).export(scans / "mesh_aligned_0.05.ply")
        (scans / "segments.json").write_text(json.dumps({"segIndices": seg}))
        (scans / "segments_anno.json").write_text(json.dumps({"sceneId": scene, "segGroups": groups}))
        dslr = root / "data" / scene / "dslr"
        names = ["DSC00001.JPG", "DSC00002.JPG"]
        for n in names:
            _save_rgb(rng.integers(0, 256, (H, W, 3), dtype=np.uint8), dslr / "undistorted_images" / n)
        (dslr / "colmap").mkdir(parents=True, exist_ok=True)
        (dslr / "colmap" / "cameras.txt").write_text(f"1 PINHOLE {W} {H} {focal} {focal} {W / 2} {H / 2}\n")
        lines = [f"{i + 1} {qw} {qx} {qy} {qz} {tx} {ty} {tz} 1 {n}\n\n" for i, n in enumerate(names)]
        (dslr / "colmap" / "images.txt").write_text("".join(lines))
        (dslr / "colmap" / "points3D.txt").write_text("1 2.0 0.5 1.0 200 100 50 0.1\n")
        ns = {
            "camera_model": "PINHOLE", "fl_x": focal, "fl_y": focal, "cx": W / 2, "cy": H / 2, "w": W, "h": H,
            "frames": [{"file_path": names[0], "transform_matrix": np.eye(4).tolist(), "is_bad": False}],
            "test_frames": [{"file_path": names[1], "transform_matrix": np.eye(4).tolist(), "is_bad": False}],
        }  # fmt: skip
        (dslr / "nerfstudio").mkdir(parents=True, exist_ok=True)
        (dslr / "nerfstudio" / "transforms_undistorted.json").write_text(json.dumps(ns))
    return root
