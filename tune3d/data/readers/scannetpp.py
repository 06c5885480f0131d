"""ScanNet++ DSLR captures (``<scene>/dslr``).

Poses come from ``dslr/colmap`` (OpenCV world-to-camera in the metric, z-up frame of the laser scan and
its meshes), because the nerfstudio ``transforms*.json`` poses live in a permuted OpenGL world frame.
Intrinsics come from the nerfstudio file matching the image folder: ``undistorted_images`` (or
``resized_undistorted_images``) with ``transforms_undistorted.json`` (PINHOLE), else ``resized_images``
with ``transforms.json`` (OPENCV_FISHEYE, distortion recorded). ``frames`` / ``test_frames`` give the
train / test splits (frames flagged ``is_bad`` are left out of both). Without a COLMAP model the
nerfstudio poses are used (converted to OpenCV axes).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tune3d.data.readers.colmap import find_model_dir, read_colmap
from tune3d.data.readers.nerfstudio import read_transforms
from tune3d.data.scene import Scene
from tune3d.errors import Tune3DError

_LAYOUTS = (
    ("undistorted_images", "transforms_undistorted.json"),
    ("resized_undistorted_images", "transforms_undistorted.json"),
    ("resized_images", "transforms.json"),
)


def dslr_dir(root: Path) -> Path | None:
    for d in (root / "dslr", root):
        if (d / "nerfstudio" / "transforms.json").is_file() or (
            d / "nerfstudio" / "transforms_undistorted.json"
        ).is_file():
            return d
    return None


def read_scannetpp(path: str | Path) -> Scene:
    root = Path(path)
    dslr = dslr_dir(root)
    if dslr is None:
        raise Tune3DError(f"{root}: no dslr/nerfstudio/transforms.json (ScanNet++ DSLR layout)")
    for img_sub, json_name in _LAYOUTS:
        if (dslr / img_sub).is_dir() and (dslr / "nerfstudio" / json_name).is_file():
            break
    else:
        raise Tune3DError(
            f"{dslr}: no image folder with matching intrinsics "
            "(undistorted_images + transforms_undistorted.json, or resized_images + transforms.json)"
        )
    scene_name = root.name if root != dslr else root.parent.name
    ns = read_transforms(
        dslr / "nerfstudio" / json_name, image_dir=dslr / img_sub, name=scene_name, fmt="scannetpp"
    )
    if find_model_dir(dslr / "colmap") is None:
        return ns
    colmap = read_colmap(dslr / "colmap", image_dir=dslr / img_sub, fmt="scannetpp")
    poses = {Path(f.name).name: f.c2w for f in colmap.frames}
    frames = []
    for f in ns.frames:
        key = Path(f.name).name
        if key not in poses:
            raise Tune3DError(f"{dslr / 'colmap'}: no pose for image {key!r} listed in {json_name}")
        frames.append(dataclasses.replace(f, c2w=poses[key]))
    return dataclasses.replace(
        ns, frames=frames, points=colmap.points, point_colors=colmap.point_colors, path=str(root)
    )
