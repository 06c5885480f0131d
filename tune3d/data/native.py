"""The tune3d scene format (see ``docs/data_format.md``): ``scene.json`` + per-frame files.

Writing is atomic per file and ``scene.json`` is written last, so an interrupted conversion is never
readable as a scene. Depth is stored losslessly: ``.npy`` float32 metres, or 16-bit PNG with the
declared ``depth_scale`` when every value is exactly ``k * depth_scale`` (e.g. converted Kinect data).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from tune3d.data.ply import read_points_ply, write_points_ply
from tune3d.data.scene import Frame, Scene
from tune3d.data.sources import DepthFileSource, ImageFileSource, LabelFileSource
from tune3d.data.validate import as_matrix, check_intrinsics, check_poses, positive_int
from tune3d.errors import Tune3DError
from tune3d.io import atomic_path, read_json, write_json

FORMAT_NAME = "tune3d-scene"
FORMAT_VERSION = 1
SCENE_FILE = "scene.json"


def is_native(path: Path) -> bool:
    return (Path(path) / SCENE_FILE).is_file()


def read_native(path: str | Path) -> Scene:
    """Read a scene written by :func:`write_scene`."""
    root = Path(path)
    meta_path = root / SCENE_FILE
    meta = read_json(meta_path)
    where = str(meta_path)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise Tune3DError(f'{where}: not a tune3d scene (missing "format": "{FORMAT_NAME}")')
    version = meta.get("version")
    if version != FORMAT_VERSION:
        raise Tune3DError(
            f"{where}: unsupported scene format version {version!r} (this tune3d reads {FORMAT_VERSION})"
        )
    frames_meta = meta.get("frames")
    if not isinstance(frames_meta, list) or not frames_meta:
        raise Tune3DError(f"{where}: scene has no frames")
    depth_scale = meta.get("depth_scale")
    if depth_scale is not None and (not isinstance(depth_scale, (int, float)) or not depth_scale > 0):
        raise Tune3DError(f"{where}: depth_scale must be a positive number, got {depth_scale!r}")
    frames: list[Frame] = []
    for i, fm in enumerate(frames_meta):
        fw = f"{where} frame {i}"
        if not isinstance(fm, dict):
            raise Tune3DError(f"{fw}: expected an object")
        try:
            name = str(fm["name"])
            W = positive_int(fm["width"], fw, "width")
            H = positive_int(fm["height"], fw, "height")
            K = check_intrinsics(as_matrix(fm["K"], (3, 3), fw, "K"), W, H, fw)
            c2w = as_matrix(fm["c2w"], (4, 4), fw, "c2w")
            image = fm["image"]
        except KeyError as e:
            raise Tune3DError(f"{fw}: missing key {e}") from None
        shape = (H, W)
        depth_src = sem_src = None
        if fm.get("depth"):
            suffix = Path(fm["depth"]).suffix.lower()
            if suffix == ".png" and depth_scale is None:
                raise Tune3DError(f"{where}: PNG depth needs a top-level depth_scale")
            scale = 1.0 if suffix == ".npy" else float(depth_scale)
            depth_src = DepthFileSource(root / fm["depth"], scale=scale, shape=shape)
        if fm.get("semantics"):
            sem_src = LabelFileSource(root / fm["semantics"], shape=shape)
        distortion = fm.get("distortion") or {}
        if not isinstance(distortion, dict):
            raise Tune3DError(f"{fw}: distortion must be an object")
        frames.append(
            Frame(
                name=name,
                c2w=c2w,
                K=K,
                width=W,
                height=H,
                image_source=ImageFileSource(root / str(image), shape),
                depth_source=depth_src,
                semantics_source=sem_src,
                camera_model=str(fm.get("camera_model", "PINHOLE")),
                distortion={str(k): float(v) for k, v in distortion.items()},
            )
        )
    check_poses(
        np.stack([f.c2w for f in frames]), [f"{where} frame {i} ({f.name})" for i, f in enumerate(frames)]
    )
    splits = meta.get("splits") or {}
    if not isinstance(splits, dict) or not all(isinstance(v, list) for v in splits.values()):
        raise Tune3DError(f"{where}: splits must map names to lists of frame indices")
    try:
        splits = {str(k): [int(i) for i in v] for k, v in splits.items()}
    except (TypeError, ValueError):
        raise Tune3DError(f"{where}: split indices must be integers") from None
    class_names = meta.get("class_names")
    if class_names is not None and not (
        isinstance(class_names, list) and all(isinstance(c, str) for c in class_names)
    ):
        raise Tune3DError(f"{where}: class_names must be a list of strings")
    points = colors = None
    if meta.get("points"):
        points, colors = read_points_ply(root / meta["points"])
    return Scene(
        name=str(meta.get("name", root.name)),
        frames=frames,
        splits=splits,
        class_names=class_names,
        points=points,
        point_colors=colors,
        format="tune3d",
        path=str(root),
        depth_scale=None if depth_scale is None else float(depth_scale),
    )


def _png16_exact(depth: np.ndarray, scale: float) -> np.ndarray | None:
    """uint16 codes k with ``float32(k) * float32(scale) == depth`` bitwise, or None if impossible."""
    s = np.float32(scale)
    codes = np.round(depth.astype(np.float64) / float(s))
    if codes.max(initial=0) > 65535:
        return None
    codes = codes.astype(np.uint16)
    back = codes.astype(np.float32) * s
    return codes if np.array_equal(back.view(np.uint32), depth.astype(np.float32).view(np.uint32)) else None


def _save_png(arr: np.ndarray, path: Path) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")


def _save_npy(arr: np.ndarray, path: Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, arr, allow_pickle=False)


def write_scene(
    scene: Scene,
    out: str | Path,
    *,
    overwrite: bool = False,
    depth_format: str = "auto",
    progress: bool = False,
) -> Path:
    """Write ``scene`` in the tune3d format under ``out`` (created). Returns ``out``.

    ``depth_format``: ``"npy"`` (float32, always exact), ``"png16"`` (uint16 with ``scene.depth_scale``;
    frames whose depth is not exactly representable fall back to ``.npy``), or ``"auto"`` (png16 when
    the scene has a ``depth_scale``, i.e. came from integer depth, else npy). Image files that are
    already PNG/JPEG at the frame's size are copied byte for byte; everything else is written as PNG.
    """
    out = Path(out)
    if depth_format not in ("auto", "npy", "png16"):
        raise Tune3DError(f"depth_format must be auto, npy or png16, got {depth_format!r}")
    if len(scene) == 0:
        raise Tune3DError(f"{scene.name}: cannot write an empty scene")
    if out.exists() and not out.is_dir():
        raise Tune3DError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise Tune3DError(f"{out}: folder is not empty (pass --overwrite to replace it)")
        if scene.path is not None and Path(scene.path).resolve() == out.resolve():
            raise Tune3DError(f"{out}: cannot overwrite the scene being read")
        # Remove the old scene.json first: an interrupted rewrite must not look like a valid scene.
        (out / SCENE_FILE).unlink(missing_ok=True)
        for sub in ("images", "depth", "semantics"):
            shutil.rmtree(out / sub, ignore_errors=True)
        (out / "points.ply").unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    scale = scene.depth_scale
    use_png16 = depth_format == "png16" or (depth_format == "auto" and scale is not None)
    if use_png16 and scale is None:
        raise Tune3DError(f"{scene.name}: depth_format png16 needs scene.depth_scale")

    frames_meta: list[dict[str, Any]] = []
    iterator = enumerate(scene.frames)
    if progress:
        iterator = tqdm(iterator, total=len(scene), desc=f"write {scene.name}", unit="frame")
    for i, frame in iterator:
        stem = f"{i:06d}"
        img = frame.image()  # decoding also validates the source
        src = frame.image_source
        suffix = src.path.suffix.lower() if src.path is not None else ""
        if suffix in (".png", ".jpg", ".jpeg"):
            rel = f"images/{stem}{'.jpg' if suffix == '.jpeg' else suffix}"
            with atomic_path(out / rel) as tmp:
                shutil.copyfile(src.path, tmp)
        else:
            rel = f"images/{stem}.png"
            _save_png(img, out / rel)
        fm: dict[str, Any] = {
            "name": frame.name,
            "image": rel,
            "width": frame.width,
            "height": frame.height,
            "K": frame.K.tolist(),
            "c2w": frame.c2w.tolist(),
        }
        depth = frame.depth()
        if depth is not None:
            codes = _png16_exact(depth, scale) if use_png16 else None
            if codes is not None:
                fm["depth"] = f"depth/{stem}.png"
                _save_png(codes, out / fm["depth"])
            else:
                fm["depth"] = f"depth/{stem}.npy"
                _save_npy(depth.astype(np.float32), out / fm["depth"])
        labels = frame.semantics()
        if labels is not None:
            if labels.min(initial=0) < 0 or labels.max(initial=0) > 65535:
                raise Tune3DError(f"{frame.name}: labels outside 0..65535 cannot be stored as PNG")
            fm["semantics"] = f"semantics/{stem}.png"
            _save_png(
                labels.astype(np.uint8 if labels.max(initial=0) <= 255 else np.uint16), out / fm["semantics"]
            )
        if frame.camera_model != "PINHOLE" or frame.distortion:
            fm["camera_model"] = frame.camera_model
            fm["distortion"] = dict(frame.distortion)
        frames_meta.append(fm)

    meta: dict[str, Any] = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "name": scene.name}
    if scene.format not in ("tune3d", "memory") and scene.path:
        meta["source"] = {"format": scene.format, "path": str(scene.path)}
    any_png_depth = any(str(f.get("depth", "")).endswith(".png") for f in frames_meta)
    meta["depth_scale"] = float(scale) if any_png_depth else None
    meta["class_names"] = scene.class_names
    meta["splits"] = {k: list(map(int, v)) for k, v in scene.splits.items()}
    meta["points"] = None
    if scene.points is not None:
        write_points_ply(out / "points.ply", scene.points, scene.point_colors)
        meta["points"] = "points.ply"
    meta["frames"] = frames_meta
    write_json(out / SCENE_FILE, meta)  # last: its presence marks a complete scene
    return out
