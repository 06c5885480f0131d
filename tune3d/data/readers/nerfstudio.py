"""nerfstudio / instant-ngp ``transforms.json``.

Intrinsics ``fl_x, fl_y, cx, cy, w, h`` (or ``camera_angle_x`` as in the Blender scenes) at the top
level or per frame; ``transform_matrix`` is camera-to-world in OpenGL camera axes (x right, y up,
z back) and is converted to OpenCV axes. Distortion keys (``k1..k4, p1, p2``) and ``camera_model`` are
recorded per frame; images are not undistorted. ``depth_file_path`` (uint16 PNG or ``.npy``) is scaled
by ``depth_unit_scale_factor`` (nerfstudio's default 1e-3 = millimetres) unless overridden.
``ply_file_path`` gives the point cloud. ``train_filenames`` / ``test_filenames`` / ``val_filenames``
and ScanNet++-style ``test_frames`` become splits.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tune3d.data.ply import read_points_ply
from tune3d.data.scene import Frame, Scene
from tune3d.data.sources import DepthFileSource, ImageFileSource, image_size
from tune3d.data.validate import as_matrix, check_intrinsics, check_poses, finite_float, positive_int
from tune3d.errors import Tune3DError
from tune3d.geometry import opengl_to_opencv
from tune3d.io import read_json

DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "k5", "k6", "p1", "p2")
DEFAULT_DEPTH_UNIT = 1e-3


def _resolve(base: Path, rel: str, image_dir: Path | None) -> Path:
    """nerfstudio paths are relative to the json's folder; ScanNet++ paths to the image folder."""
    candidates = [image_dir / rel] if image_dir is not None else []
    candidates += [base / rel]
    for c in candidates:
        if c.is_file():
            return c
        if not c.suffix:  # Blender scenes omit the extension
            for ext in (".png", ".jpg", ".jpeg"):
                if c.with_suffix(ext).is_file():
                    return c.with_suffix(ext)
    return candidates[0]


def read_transforms(
    json_path: str | Path,
    *,
    image_dir: Path | None = None,
    depth_scale: float | None = None,
    name: str | None = None,
    fmt: str = "nerfstudio",
) -> Scene:
    """Read a transforms.json into a Scene (poses converted to OpenCV axes)."""
    json_path = Path(json_path)
    meta = read_json(json_path)
    where = str(json_path)
    if not isinstance(meta, dict):
        raise Tune3DError(f"{where}: expected a JSON object")
    base = json_path.parent
    raw_frames: list[tuple[dict, str | None]] = []
    for key, split in (("frames", None), ("test_frames", "test")):
        entries = meta.get(key, [])
        if not isinstance(entries, list):
            raise Tune3DError(f"{where}: {key!r} must be a list")
        raw_frames += [(e, split) for e in entries]
    if not raw_frames:
        raise Tune3DError(f"{where}: no frames")
    if depth_scale is None:
        depth_scale = finite_float(
            meta.get("depth_unit_scale_factor", DEFAULT_DEPTH_UNIT), where, "depth scale"
        )

    frames: list[Frame] = []
    split_of: list[str | None] = []
    for i, (fm, split) in enumerate(raw_frames):
        fw = f"{where} frame {i}"
        if not isinstance(fm, dict):
            raise Tune3DError(f"{fw}: expected an object")
        if "file_path" not in fm or "transform_matrix" not in fm:
            raise Tune3DError(f"{fw}: needs 'file_path' and 'transform_matrix'")

        def get(key: str, default: Any = None, fm: dict = fm) -> Any:
            return fm.get(key, meta.get(key, default))

        img_path = _resolve(base, str(fm["file_path"]), image_dir)
        w, h = get("w"), get("h")
        if w is None or h is None:
            if not img_path.is_file():
                raise Tune3DError(f"{img_path}: file not found")
            h, w = image_size(img_path)
        W, H = positive_int(w, fw, "w"), positive_int(h, fw, "h")
        if get("fl_x") is not None:
            fx = finite_float(get("fl_x"), fw, "fl_x")
            fy = finite_float(get("fl_y", fx), fw, "fl_y")
        elif get("camera_angle_x") is not None:
            fx = 0.5 * W / math.tan(0.5 * finite_float(get("camera_angle_x"), fw, "camera_angle_x"))
            fy = fx
            if get("camera_angle_y") is not None:
                fy = 0.5 * H / math.tan(0.5 * finite_float(get("camera_angle_y"), fw, "camera_angle_y"))
        else:
            raise Tune3DError(f"{fw}: no focal length (fl_x or camera_angle_x)")
        cx = finite_float(get("cx", W / 2), fw, "cx")
        cy = finite_float(get("cy", H / 2), fw, "cy")
        K = check_intrinsics(np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]]), W, H, fw)
        T = as_matrix(fm["transform_matrix"], (4, 4), fw, "transform_matrix")
        if not np.isfinite(T).all():
            raise Tune3DError(f"{fw}: transform_matrix has NaN or inf values")
        c2w = opengl_to_opencv(torch.from_numpy(T)).numpy()
        distortion = {k: finite_float(get(k), fw, k) for k in DISTORTION_KEYS if get(k) is not None}
        model = str(get("camera_model", "OPENCV" if any(distortion.values()) else "PINHOLE"))
        depth_src = None
        if fm.get("depth_file_path"):
            depth_src = DepthFileSource(_resolve(base, str(fm["depth_file_path"]), None), depth_scale, (H, W))
        frames.append(
            Frame(
                name=Path(str(fm["file_path"])).as_posix(),
                c2w=c2w,
                K=K,
                width=W,
                height=H,
                image_source=ImageFileSource(img_path, (H, W)),
                depth_source=depth_src,
                camera_model=model,
                distortion=distortion,
            )
        )
        split_of.append("bad" if fm.get("is_bad") else split)
    check_poses(
        np.stack([f.c2w for f in frames]), [f"{where} frame {i} ({f.name})" for i, f in enumerate(frames)]
    )
    if any(f.has_depth for f in frames) and not all(f.has_depth for f in frames):
        raise Tune3DError(f"{where}: some frames have depth_file_path and others do not")

    splits: dict[str, list[int]] = {}
    if any(s == "test" for s in split_of):  # ScanNet++ style: frames = train, test_frames = test
        splits = {
            "train": [i for i, s in enumerate(split_of) if s is None],
            "test": [i for i, s in enumerate(split_of) if s == "test"],
        }
    by_name = {f.name: i for i, f in enumerate(frames)}
    by_base = {Path(f.name).name: i for i, f in enumerate(frames)}
    for split in ("train", "val", "test"):
        names = meta.get(f"{split}_filenames")
        if isinstance(names, list):
            splits[split] = [by_name.get(n, by_base.get(Path(str(n)).name)) for n in names]
            splits[split] = [i for i in splits[split] if i is not None]

    points = colors = None
    if meta.get("ply_file_path"):
        # nerfstudio writes the ply already in the (applied_transform-ed) frame of the poses.
        points, colors = read_points_ply(base / str(meta["ply_file_path"]))
    return Scene(
        name=name or base.name,
        frames=frames,
        splits=splits,
        points=points,
        point_colors=colors,
        format=fmt,
        path=str(json_path),
        depth_scale=depth_scale
        if frames[0].has_depth and frames[0].depth_source.encoding == "png16"
        else None,
    )
