"""Video-depth test sequences in the CUT3R / MonST3R evaluation layouts (Sintel, Bonn, KITTI).

- Sintel (``ROOT`` = MPI-Sintel ``training``'s parent or ``training`` itself): frames
  ``training/final/<seq>/frame_XXXX.png``, depth ``training/depth/<seq>/frame_XXXX.dpt`` (little-endian:
  float32 tag 202021.25, int32 width, int32 height, float32 depth row-major). The 14 evaluated sequences
  are :data:`SINTEL_SEQUENCES`; depth beyond 70 m is not evaluated.
- Bonn (``ROOT`` holds ``rgbd_bonn_<seq>/``): the 110-frame cuts ``rgb_110/*.png`` and
  ``depth_110/*.png`` (uint16, metres x 5000, 0 = invalid) of :data:`BONN_SEQUENCES`; 70 m cap.
- KITTI (``ROOT`` holds ``depth_selection/val_selection_cropped/``): ``image_gathered/<seq>/*.png`` and
  ``groundtruth_depth_gathered/<seq>/*.png`` (uint16, metres x 256, 0 = no lidar); every sequence.

Frames and depth maps pair up by sorted file order, as in the official scripts; counts must match.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tune3d.data.sources import DepthFileSource
from tune3d.errors import Tune3DError

SINTEL_SEQUENCES = (
    "alley_2",
    "ambush_4",
    "ambush_5",
    "ambush_6",
    "cave_2",
    "cave_4",
    "market_2",
    "market_5",
    "market_6",
    "shaman_3",
    "sleeping_1",
    "sleeping_2",
    "temple_2",
    "temple_3",
)
BONN_SEQUENCES = ("balloon2", "crowd2", "crowd3", "person_tracking2", "synchronous")
SINTEL_TAG = 202021.25
LAYOUTS = {
    "sintel": "ROOT/training/{final/<seq>/frame_XXXX.png, depth/<seq>/frame_XXXX.dpt}",
    "bonn": "ROOT/rgbd_bonn_<seq>/{rgb_110/*.png, depth_110/*.png}",
    "kitti": "ROOT/depth_selection/val_selection_cropped/"
    "{image_gathered,groundtruth_depth_gathered}/<seq>/*.png",
}
MAX_DEPTH = {"sintel": 70.0, "bonn": 70.0, "kitti": None}


@dataclass(frozen=True)
class VideoSequence:
    dataset: str
    name: str
    images: tuple[Path, ...]
    depths: tuple[Path, ...]


def read_sintel_dpt(path: str | Path) -> np.ndarray:
    """A Sintel ``.dpt`` depth map -> float32 ``H,W`` metres."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise Tune3DError(f"{path}: file not found") from None
    if len(raw) < 12 or np.frombuffer(raw[:4], "<f4")[0] != np.float32(SINTEL_TAG):
        raise Tune3DError(f"{path}: not a Sintel .dpt depth file (wrong tag)")
    w, h = (int(x) for x in np.frombuffer(raw[4:12], "<i4"))
    if w <= 0 or h <= 0 or len(raw) != 12 + 4 * w * h:
        raise Tune3DError(
            f"{path}: .dpt header says {w}x{h} but the file holds {(len(raw) - 12) // 4} values"
        )
    return np.frombuffer(raw[12:], "<f4").reshape(h, w).astype(np.float32)


def read_png_depth(path: str | Path, per_metre: float) -> np.ndarray:
    """A uint16 depth PNG -> float32 metres, 0 = invalid."""
    return DepthFileSource(path, 1.0 / per_metre).load()


def load_video_depth(seq: VideoSequence, i: int) -> np.ndarray:
    """Ground-truth depth of frame ``i`` (metres, 0 = invalid)."""
    p = seq.depths[i]
    if seq.dataset == "sintel":
        d = read_sintel_dpt(p)
        return np.where(np.isfinite(d) & (d > 0), d, 0).astype(np.float32)
    return read_png_depth(p, 5000.0 if seq.dataset == "bonn" else 256.0)


def _pair(
    dataset: str, name: str, img_dir: Path, dep_dir: Path, img_glob: str, dep_glob: str
) -> VideoSequence:
    for d in (img_dir, dep_dir):
        if not d.is_dir():
            raise Tune3DError(f"{d}: folder not found; {dataset} expects {LAYOUTS[dataset]}")
    images, depths = tuple(sorted(img_dir.glob(img_glob))), tuple(sorted(dep_dir.glob(dep_glob)))
    if not images:
        raise Tune3DError(f"{img_dir}: no frames ({img_glob})")
    if len(images) != len(depths):
        raise Tune3DError(f"{dep_dir}: {len(depths)} depth maps for {len(images)} frames in {img_dir}")
    return VideoSequence(dataset, name, images, depths)


def video_depth_sequences(dataset: str, root: str | Path) -> list[VideoSequence]:
    """The evaluated sequences of ``dataset`` (``sintel`` | ``bonn`` | ``kitti``) under ``root``."""
    if dataset not in LAYOUTS:
        raise Tune3DError(f"unknown video-depth dataset {dataset!r}; expected {', '.join(LAYOUTS)}")
    root = Path(root)
    if not root.is_dir():
        raise Tune3DError(f"{root}: dataset root not found; {dataset} expects {LAYOUTS[dataset]}")
    if dataset == "sintel":
        t = root if (root / "final").is_dir() else root / "training"
        return [
            _pair("sintel", s, t / "final" / s, t / "depth" / s, "frame_*.png", "frame_*.dpt")
            for s in SINTEL_SEQUENCES
        ]
    if dataset == "bonn":
        return [
            _pair(
                "bonn",
                s,
                root / f"rgbd_bonn_{s}" / "rgb_110",
                root / f"rgbd_bonn_{s}" / "depth_110",
                "*.png",
                "*.png",
            )
            for s in BONN_SEQUENCES
        ]
    base = root / "depth_selection" / "val_selection_cropped"
    img = base / "image_gathered"
    if not img.is_dir():
        raise Tune3DError(f"{img}: folder not found; kitti expects {LAYOUTS['kitti']}")
    seqs = sorted(p.name for p in img.iterdir() if p.is_dir())
    if not seqs:
        raise Tune3DError(f"{img}: no sequence folders")
    return [
        _pair("kitti", s, img / s, base / "groundtruth_depth_gathered" / s, "*.png", "*.png") for s in seqs
    ]
