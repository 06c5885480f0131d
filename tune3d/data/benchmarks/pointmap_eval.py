"""Multi-view pointmap test sequences of the Spann3R / CUT3R protocol: 7-Scenes and Neural RGB-D (NRGBD).

A sequence is its frames subsampled every ``kf_every`` (Spann3R/CUT3R: 20) with colour, metric depth
(0 = invalid; depth > 10 m or < 1 mm dropped as in their readers), camera-to-world pose (OpenCV axes) and
pixel intrinsics.

7-Scenes (``ROOT`` = the dataset with scene folders, one scene folder with ``seq-XX/`` and
``TestSplit.txt``, or one flat sequence folder): ``frame-XXXXXX.color.png|jpg``, depth
``frame-XXXXXX.depth.proj.png`` (colour-registered, preferred) or ``frame-XXXXXX.depth.png`` (uint16 mm,
65535 invalid), ``frame-XXXXXX.pose.txt``. Intrinsics: ``camera-intrinsics.txt`` when present, else the
SimpleRecon values the protocol uses (fx = fy = 525, cx = 320, cy = 240).

NRGBD (``ROOT`` = the dataset with scene folders, or one scene): ``images/img{i}.png``,
``depth/depth{i}.png`` (uint16 mm), ``poses.txt`` (4 rows per frame, OpenGL camera-to-world; rows with
``nan`` mark frames without a pose, which are skipped); fx = fy = 554.2562584220408, cx = 320, cy = 240.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from tune3d.data.sources import DepthFileSource, ImageFileSource
from tune3d.errors import Tune3DError

SEVEN_SCENES_K = np.array([[525.0, 0.0, 320.0], [0.0, 525.0, 240.0], [0.0, 0.0, 1.0]])
NRGBD_K = np.array([[554.2562584220408, 0.0, 320.0], [0.0, 554.2562584220408, 240.0], [0.0, 0.0, 1.0]])
KF_EVERY = 20
MAX_DEPTH = 10.0
SEVEN_SCENES_LAYOUT = (
    "7-Scenes: ROOT/<scene>/{TestSplit.txt,seq-XX/frame-XXXXXX.{color.png,depth[.proj].png,pose.txt}} "
    "or one folder of frame-XXXXXX.* files"
)
NRGBD_LAYOUT = "NRGBD: ROOT/<scene>/{images/img<i>.png, depth/depth<i>.png, poses.txt}"


@dataclass(frozen=True)
class EvalFrame:
    name: str
    image: Path
    depth: Path
    c2w: np.ndarray  # 4x4 OpenCV camera-to-world, metres
    K: np.ndarray  # 3x3 pixels at the depth map's size


@dataclass
class EvalSequence:
    name: str
    frames: list[EvalFrame] = field(default_factory=list)


def _matrix(path: Path, n: int) -> np.ndarray:
    try:
        vals = np.array([float(x) for x in path.read_text().split()], dtype=np.float64)
    except FileNotFoundError:
        raise Tune3DError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, ValueError):
        raise Tune3DError(f"{path}: expected {n} numbers") from None
    if vals.size != n or not np.isfinite(vals).all():
        raise Tune3DError(f"{path}: expected {n} finite numbers, found {vals.size}")
    return vals


_FRAME = re.compile(r"^frame-(\d+)\.pose\.txt$")


def _seven_scenes_folder(folder: Path, name: str, K: np.ndarray, kf_every: int) -> EvalSequence:
    stems = sorted(m.group(1) for p in folder.iterdir() if (m := _FRAME.match(p.name)))
    if not stems:
        raise Tune3DError(f"{folder}: no frame-XXXXXX.pose.txt files; expected {SEVEN_SCENES_LAYOUT}")
    seq = EvalSequence(name)
    for stem in stems[::kf_every]:
        base = folder / f"frame-{stem}"
        image = next((p for p in (Path(f"{base}.color.png"), Path(f"{base}.color.jpg")) if p.is_file()), None)
        if image is None:
            raise Tune3DError(f"{base}.color.png: file not found")
        depth = next(
            (p for p in (Path(f"{base}.depth.proj.png"), Path(f"{base}.depth.png")) if p.is_file()), None
        )
        if depth is None:
            raise Tune3DError(f"{base}.depth.png: file not found (depth is needed for the ground truth)")
        c2w = _matrix(Path(f"{base}.pose.txt"), 16).reshape(4, 4)
        seq.frames.append(EvalFrame(f"frame-{stem}", image, depth, c2w, K))
    return seq


def seven_scenes_sequences(root: str | Path, kf_every: int = KF_EVERY) -> list[EvalSequence]:
    """The 7-Scenes test sequences under ``root`` (see the module docstring), each every ``kf_every``."""
    root = Path(root)
    if not root.is_dir():
        raise Tune3DError(f"{root}: dataset root not found; expected {SEVEN_SCENES_LAYOUT}")

    def K_for(folder: Path) -> np.ndarray:
        p = folder / "camera-intrinsics.txt"
        return _matrix(p, 9).reshape(3, 3) if p.is_file() else SEVEN_SCENES_K.copy()

    if any(root.glob("frame-*.pose.txt")):
        return [_seven_scenes_folder(root, root.name, K_for(root), kf_every)]
    scenes = (
        [root]
        if (root / "TestSplit.txt").is_file()
        else sorted(p for p in root.iterdir() if p.is_dir() and (p / "TestSplit.txt").is_file())
    )
    if not scenes:
        raise Tune3DError(f"{root}: no 7-Scenes frames or TestSplit.txt; expected {SEVEN_SCENES_LAYOUT}")
    out = []
    for scene in scenes:
        ids = sorted({int(m.group(1)) for m in re.finditer(r"(\d+)", (scene / "TestSplit.txt").read_text())})
        for i in ids:
            folder = scene / f"seq-{i:02d}"
            if not folder.is_dir():
                raise Tune3DError(
                    f"{folder}: sequence folder not found (listed in {scene / 'TestSplit.txt'})"
                )
            out.append(_seven_scenes_folder(folder, f"{scene.name}/seq-{i:02d}", K_for(scene), kf_every))
    return out


def _nrgbd_poses(path: Path) -> list[np.ndarray | None]:
    try:
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    except FileNotFoundError:
        raise Tune3DError(f"{path}: file not found; expected {NRGBD_LAYOUT}") from None
    if len(lines) % 4:
        raise Tune3DError(f"{path}: {len(lines)} rows; expected 4 rows per frame")
    poses: list[np.ndarray | None] = []
    for i in range(0, len(lines), 4):
        block = " ".join(lines[i : i + 4])
        if "nan" in block.lower():
            poses.append(None)
            continue
        try:
            m = np.array([float(x) for x in block.split()], dtype=np.float64)
        except ValueError:
            raise Tune3DError(f"{path}: frame {i // 4} has non-numeric entries") from None
        if m.size != 16:
            raise Tune3DError(f"{path}: frame {i // 4} is not a 4x4 matrix")
        c2w = m.reshape(4, 4)
        c2w[:3, 1:3] *= -1.0  # OpenGL (y up, z back) -> OpenCV camera axes
        poses.append(c2w)
    return poses


def nrgbd_sequences(root: str | Path, kf_every: int = KF_EVERY) -> list[EvalSequence]:
    """Every NRGBD scene under ``root`` (or ``root`` itself) as one sequence, frames every ``kf_every``."""
    root = Path(root)
    if not root.is_dir():
        raise Tune3DError(f"{root}: dataset root not found; expected {NRGBD_LAYOUT}")
    scenes = (
        [root]
        if (root / "poses.txt").is_file()
        else sorted(p for p in root.iterdir() if p.is_dir() and (p / "poses.txt").is_file())
    )
    if not scenes:
        raise Tune3DError(f"{root}: no scene with poses.txt; expected {NRGBD_LAYOUT}")
    out = []
    for scene in scenes:
        poses = _nrgbd_poses(scene / "poses.txt")
        n = len(list((scene / "images").glob("img*.png")))
        if n == 0:
            raise Tune3DError(f"{scene / 'images'}: no img<i>.png files; expected {NRGBD_LAYOUT}")
        if n > len(poses):
            raise Tune3DError(f"{scene / 'poses.txt'}: {len(poses)} poses for {n} images")
        seq = EvalSequence(scene.name)
        for i in range(0, n, kf_every):
            if poses[i] is None:
                continue
            image, depth = scene / "images" / f"img{i}.png", scene / "depth" / f"depth{i}.png"
            for p in (image, depth):
                if not p.is_file():
                    raise Tune3DError(f"{p}: file not found")
            seq.frames.append(EvalFrame(f"img{i}", image, depth, poses[i], NRGBD_K.copy()))
        out.append(seq)
    return out


def load_eval_frame(frame: EvalFrame) -> tuple[np.ndarray, np.ndarray]:
    """(image H,W,3 uint8 resized to the depth's size, depth H,W float32 metres with 0 = invalid)."""
    depth = DepthFileSource(frame.depth, 0.001, invalid=(65535,)).load()
    depth[(depth > MAX_DEPTH) | (depth < 1e-3)] = 0
    image = ImageFileSource(frame.image).load()
    H, W = depth.shape
    if image.shape[:2] != (H, W):
        image = np.asarray(Image.fromarray(image).resize((W, H), Image.Resampling.BILINEAR))
    return image, depth


def seven_scenes_mono_samples(root: str | Path, kf_every: int = KF_EVERY, limit: int | None = None):
    """Table 5's 7-Scenes keyframes (every ``kf_every`` of each test sequence) as single-image depth
    samples: yields ``{"image": H,W,3 uint8, "depth": H,W float32 metres (0 = invalid), "mask": H,W bool}``
    for the first ``limit`` keyframes over all sequences."""
    frames = [f for seq in seven_scenes_sequences(root, kf_every) for f in seq.frames]
    for frame in frames[:limit]:
        image, depth = load_eval_frame(frame)
        yield {"image": image, "depth": depth, "mask": depth > 0}
