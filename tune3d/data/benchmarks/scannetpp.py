"""ScanNet++ DSLR frames with semantics and depth rendered from the laser-scan mesh (100 classes).

Per-vertex labels come from ``scans/segments.json`` (``segIndices``: one segment per vertex of
``scans/mesh_aligned_0.05.ply``) and ``scans/segments_anno.json`` (``segGroups``: a ``label`` and its
``segments``); labels are renamed through ``metadata/semantic_benchmark/map_benchmark.csv``
(``class`` -> ``semantic_map_to``, when present) and indexed in ``metadata/semantic_benchmark/top100.txt``
(anything else is ignored, 255). Each DSLR frame (poses and intrinsics from the tune3d ScanNet++ reader:
COLMAP poses in the mesh's frame, PINHOLE undistorted or OPENCV_FISHEYE images) is rendered by casting
one ray per pixel centre into the mesh with Embree (``trimesh`` + ``embreex``): the label of the hit
face's first vertex (as FiT3D's rasteriser) and the hit's z-depth. Renders are cached as PNGs (8-bit
labels, 16-bit millimetres) under ``$TUNE3D_RENDER_CACHE`` (default ``~/.cache/tune3d/scannetpp``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from tune3d.data.benchmarks.base import BenchmarkSample, DatasetInfo, read_split_lines, require
from tune3d.data.benchmarks.common import split_key
from tune3d.data.readers.scannetpp import read_scannetpp
from tune3d.errors import Tune3DError
from tune3d.io import atomic_path

LAYOUT = (
    "ROOT/splits/nvs_sem_{train,val}.txt (scene ids), ROOT/metadata/semantic_benchmark/top100.txt "
    "[+ map_benchmark.csv] and ROOT/data/SCENE/{dslr/ (colmap/, nerfstudio/, resized_images/ or "
    "undistorted_images/), scans/mesh_aligned_0.05.ply, scans/segments.json, scans/segments_anno.json}"
)
MESH = "mesh_aligned_0.05.ply"


def cache_dir() -> Path:
    return Path(os.environ.get("TUNE3D_RENDER_CACHE", Path.home() / ".cache" / "tune3d" / "scannetpp"))


def read_class_names(root: Path) -> list[str]:
    path = require(root / "metadata" / "semantic_benchmark" / "top100.txt", "class list", "scannetpp", LAYOUT)
    names = read_split_lines(path)
    if not names:
        raise Tune3DError(f"{path}: empty class list")
    return names


def read_label_map(root: Path) -> dict[str, str]:
    """``class -> semantic_map_to`` from ``map_benchmark.csv`` (rows without a target are left out)."""
    path = root / "metadata" / "semantic_benchmark" / "map_benchmark.csv"
    if not path.is_file():
        return {}
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise Tune3DError(f"{path}: unreadable label map ({e})") from None
    if rows and not {"class", "semantic_map_to"} <= set(rows[0]):
        raise Tune3DError(f"{path}: needs the columns 'class' and 'semantic_map_to'")
    return {r["class"]: r["semantic_map_to"] for r in rows if (r.get("semantic_map_to") or "").strip()}


def _load_json(path: Path) -> dict:
    require(path, "annotation file", "scannetpp", LAYOUT)
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise Tune3DError(f"{path}: unreadable JSON ({e})") from None


def vertex_labels(
    scans: Path, num_vertices: int, classes: list[str], label_map: dict[str, str]
) -> np.ndarray:
    """Class index per mesh vertex (-1 = unlabelled or not a benchmark class)."""
    seg = np.asarray(_load_json(scans / "segments.json").get("segIndices", []), dtype=np.int64)
    if seg.shape != (num_vertices,):
        raise Tune3DError(
            f"{scans / 'segments.json'}: {seg.size} segIndices for a mesh of {num_vertices} vertices"
        )
    index = {n: i for i, n in enumerate(classes)}
    seg_label = np.full(int(seg.max()) + 1 if seg.size else 1, -1, dtype=np.int64)
    for g in _load_json(scans / "segments_anno.json").get("segGroups", []):
        name = str(g.get("label", ""))
        cls = index.get(label_map.get(name, name), -1)
        ids = np.asarray(g.get("segments", []), dtype=np.int64)
        ids = ids[(ids >= 0) & (ids < len(seg_label))]
        seg_label[ids] = cls
    return np.where(seg >= 0, seg_label[np.clip(seg, 0, None)], -1)


@lru_cache(maxsize=2)
def _scene_geometry(scans: str, classes: tuple[str, ...], label_map: tuple[tuple[str, str], ...]):
    """(mesh faces F,3, vertex labels V, Embree intersector) of one scene, cached per process."""
    try:
        import trimesh
        from trimesh.ray.ray_pyembree import RayMeshIntersector
    except ImportError as e:  # pragma: no cover - both are declared dependencies
        raise Tune3DError(f"ScanNet++ rendering needs trimesh and embreex ({e})") from None
    path = require(Path(scans) / MESH, "scan mesh", "scannetpp", LAYOUT)
    try:
        mesh = trimesh.load(path, process=False, force="mesh")  # process=False keeps the vertex order
    except Exception as e:  # trimesh raises many types for a broken file
        raise Tune3DError(f"{path}: unreadable mesh ({e})") from None
    labels = vertex_labels(Path(scans), len(mesh.vertices), list(classes), dict(label_map))
    return np.asarray(mesh.faces), labels, RayMeshIntersector(mesh)


def camera_rays(K: np.ndarray, height: int, width: int, model: str, dist: dict[str, float]) -> np.ndarray:
    """Camera-frame ray directions ``H*W,3`` through pixel centres, scaled to ``z = 1`` (OpenCV axes).

    OPENCV_FISHEYE is inverted with Newton steps on ``theta_d = theta (1 + k1 t^2 + k2 t^4 + k3 t^6 +
    k4 t^8)``; rays at or beyond 90 degrees get NaN.
    """
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    x = (u.ravel() - K[0, 2]) / K[0, 0]
    y = (v.ravel() - K[1, 2]) / K[1, 1]
    if model in ("PINHOLE", "SIMPLE_PINHOLE"):
        return np.stack([x, y, np.ones_like(x)], 1)
    if model != "OPENCV_FISHEYE":
        raise Tune3DError(f"ScanNet++ rendering supports PINHOLE and OPENCV_FISHEYE cameras, not {model}")
    k = [float(dist.get(f"k{i}", 0.0)) for i in range(1, 5)]
    rd = np.hypot(x, y)
    th = rd.copy()
    for _ in range(20):
        t2 = th * th
        f = th * (1 + t2 * (k[0] + t2 * (k[1] + t2 * (k[2] + t2 * k[3])))) - rd
        df = 1 + t2 * (3 * k[0] + t2 * (5 * k[1] + t2 * (7 * k[2] + t2 * 9 * k[3])))
        th = th - f / df
    scale = np.where(rd > 1e-12, np.tan(th) / np.maximum(rd, 1e-12), 1.0)
    rays = np.stack([x * scale, y * scale, np.ones_like(x)], 1)
    rays[th >= np.pi / 2 - 1e-6] = np.nan
    return rays


def render(sample: BenchmarkSample, task: str) -> None:
    """Render ``sample.target`` (labels or depth) from its scene mesh unless it is cached."""
    if sample.target.is_file():
        return
    m = sample.meta
    faces, labels, caster = _scene_geometry(m["scans"], m["classes"], m["label_map"])
    c2w = np.asarray(m["c2w"], dtype=np.float64)
    dirs_cam = camera_rays(np.asarray(m["K"]), m["height"], m["width"], m["camera_model"], m["distortion"])
    ok = np.isfinite(dirs_cam).all(1)
    dirs = dirs_cam @ c2w[:3, :3].T  # world directions, camera-frame z = 1 (NaN beyond the fisheye's 90 deg)
    tri = np.full(len(dirs_cam), -1, dtype=np.int64)
    tri[ok] = caster.intersects_first(np.broadcast_to(c2w[:3, 3], dirs[ok].shape), dirs[ok])
    hit = tri >= 0
    if task == "semseg":
        out = np.full(len(tri), 255, dtype=np.uint8)
        lab = labels[faces[tri[hit], 0]]
        out[hit] = np.where(lab >= 0, lab, 255)
        arr = Image.fromarray(out.reshape(m["height"], m["width"]), mode="L")
    else:
        v0 = caster.mesh.vertices[faces[tri[hit], 0]]
        n = caster.mesh.face_normals[tri[hit]]
        # z-depth of the hit: rays have z = 1 in the camera frame, so the ray parameter is the depth
        t = np.einsum("ij,ij->i", n, v0 - c2w[:3, 3]) / np.einsum("ij,ij->i", n, dirs[hit])
        out = np.zeros(len(tri), dtype=np.float64)
        out[hit] = t
        mm = np.clip(np.round(out * 1000), 0, 65535).astype(np.uint16)
        arr = Image.fromarray(mm.reshape(m["height"], m["width"]))
    with atomic_path(sample.target) as tmp:
        arr.save(tmp, format="PNG")


def _list(root: Path, split: str, task: str):
    fname = split_key("scannetpp", split, {"train": "nvs_sem_train.txt", "val": "nvs_sem_val.txt"})
    split_file = require(root / "splits" / fname, "split file", "scannetpp", LAYOUT)
    classes = tuple(read_class_names(root))
    label_map = tuple(sorted(read_label_map(root).items()))
    key = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:12]
    samples = []
    for scene_id in read_split_lines(split_file):
        sdir = require(
            root / "data" / scene_id, f"scene folder (listed in {split_file.name})", "scannetpp", LAYOUT
        )
        scans = require(sdir / "scans" / MESH, "scan mesh", "scannetpp", LAYOUT).parent
        scene = read_scannetpp(sdir)
        for f in scene.frames:
            image = Path(f.image_source.path)
            target = cache_dir() / key / scene_id / task / (Path(f.name).stem + ".png")
            meta = {
                "scans": str(scans), "classes": classes, "label_map": label_map, "c2w": f.c2w,
                "K": f.K, "width": f.width, "height": f.height, "camera_model": f.camera_model,
                "distortion": f.distortion,
            }  # fmt: skip
            samples.append(BenchmarkSample(f"{scene_id}/{f.name}", image, target, meta))
    if not samples:
        raise Tune3DError(f"{split_file}: no scenes listed")
    return samples, None, {"class_names": list(classes)}


SCANNETPP = DatasetInfo(
    name="scannetpp",
    task="semseg",
    tasks=("semseg", "depth"),
    layout=LAYOUT,
    list_samples=_list,
    class_names=None,
    fixed_num_classes=100,
    depth_scale=1000.0,
    max_depth=20.0,
    prepare_target=render,
    notes="labels and depth rendered from the scan mesh (Embree ray casting), cached as PNGs",
)
