"""Microsoft 7-Scenes RGB-D layout.

One sequence folder holds ``frame-XXXXXX.color.{jpg,png}``, ``frame-XXXXXX.depth.png`` (uint16 mm,
0 and 65535 invalid) and ``frame-XXXXXX.pose.txt`` (4x4 camera-to-world, OpenCV axes, metres), plus an
optional ``camera-intrinsics.txt`` (3x3 K; the official release omits it and documents fx = fy = 585,
cx = 320, cy = 240). A scene folder with ``seq-XX/`` sub-folders loads every sequence; the official
``TrainSplit.txt`` / ``TestSplit.txt`` (lines like ``sequence1``) become the train/test splits.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from tune3d.data.scene import Frame, Scene
from tune3d.data.sources import DepthFileSource, ImageFileSource, image_size
from tune3d.data.validate import check_intrinsics, check_poses
from tune3d.errors import Tune3DError

logger = logging.getLogger(__name__)
DEFAULT_K = np.array([[585.0, 0.0, 320.0], [0.0, 585.0, 240.0], [0.0, 0.0, 1.0]])
DEPTH_SCALE = 0.001
_FRAME_RE = re.compile(r"^(frame-\d+)\.pose\.txt$")


def _sequence_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("seq-*") if p.is_dir() and any(p.glob("frame-*.pose.txt")))


def is_seven_scenes(root: Path) -> bool:
    return (
        (root / "camera-intrinsics.txt").is_file()
        or any(root.glob("frame-*.pose.txt"))
        or bool(_sequence_dirs(root))
    )


def _read_matrix(path: Path, shape: tuple[int, int], what: str) -> np.ndarray:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise Tune3DError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise Tune3DError(f"{path}: unreadable {what} ({e})") from None
    try:
        vals = np.array([float(x) for x in text.split()], dtype=np.float64)
    except ValueError:
        raise Tune3DError(f"{path}: {what} has non-numeric entries") from None
    if vals.size != shape[0] * shape[1]:
        raise Tune3DError(f"{path}: {what} needs {shape[0] * shape[1]} numbers, found {vals.size}")
    m = vals.reshape(shape)
    if not np.isfinite(m).all():
        raise Tune3DError(f"{path}: {what} has NaN or inf values")
    return m


def _color_path(folder: Path, stem: str) -> Path:
    for ext in (".color.png", ".color.jpg"):
        p = folder / f"{stem}{ext}"
        if p.is_file():
            return p
    raise Tune3DError(f"{folder / stem}.color.png/.jpg: file not found")


def read_seven_scenes(path: str | Path) -> Scene:
    root = Path(path)
    seqs = _sequence_dirs(root)
    folders = seqs if seqs else [root]
    k_path = root / "camera-intrinsics.txt"
    if k_path.is_file():
        K = _read_matrix(k_path, (3, 3), "intrinsics")
    else:
        K = DEFAULT_K.copy()
        logger.warning(
            "%s: no camera-intrinsics.txt; assuming the official 7-Scenes camera fx = fy = 585, cx = 320, "
            "cy = 240",
            root,
        )

    frames: list[Frame] = []
    seq_of: list[str] = []
    size: tuple[int, int] | None = None
    for folder in folders:
        stems = sorted(m.group(1) for p in folder.iterdir() if (m := _FRAME_RE.match(p.name)))
        for stem in stems:
            color = _color_path(folder, stem)
            if size is None:
                size = image_size(color)
                check_intrinsics(K, size[1], size[0], str(k_path))
            depth = folder / f"{stem}.depth.png"
            c2w = _read_matrix(folder / f"{stem}.pose.txt", (4, 4), "pose")
            name = stem if folder == root else f"{folder.name}/{stem}"
            frames.append(
                Frame(
                    name=name,
                    c2w=c2w,
                    K=K,
                    width=size[1],
                    height=size[0],
                    image_source=ImageFileSource(color, size),
                    depth_source=DepthFileSource(depth, DEPTH_SCALE, size, invalid=(0, 65535))
                    if depth.is_file()
                    else None,
                )
            )
            seq_of.append(folder.name)
    if not frames:
        raise Tune3DError(f"{root}: 7-Scenes layout without frames (no frame-XXXXXX.pose.txt files)")
    check_poses(np.stack([f.c2w for f in frames]), [str(root / f"{f.name}.pose.txt") for f in frames])
    if any(f.has_depth for f in frames) and not all(f.has_depth for f in frames):
        missing = next(f.name for f in frames if not f.has_depth)
        raise Tune3DError(f"{root / missing}.depth.png: file not found (other frames have depth)")

    splits: dict[str, list[int]] = {}
    for split, fname in (("train", "TrainSplit.txt"), ("test", "TestSplit.txt")):
        p = root / fname
        if seqs and p.is_file():
            ids = {int(m.group(1)) for m in re.finditer(r"sequence\s*(\d+)", p.read_text())}
            splits[split] = [i for i, s in enumerate(seq_of) if int(s.split("-")[-1]) in ids]
    return Scene(
        name=root.name,
        frames=frames,
        splits=splits,
        format="7scenes",
        path=str(root),
        depth_scale=DEPTH_SCALE,
    )
