"""DTU and ETH3D multi-view pointmap test sequences of Pi3's evaluation (Fin3R Table 6).

DTU (Spann3R's preprocessed test set; ``ROOT`` = the folder of scans, or one scan): the 22 test scans
``scan{1,4,9,...,118}``, each ``images/{id:08d}.jpg`` (ids 0..n-1), ``depths/{id:08d}.npy`` (float, DTU
units = mm, NaN/0 invalid), ``binary_masks/{id:08d}.png`` (object mask, > 0.5 after /255; eroded by a
10x10 box before use), ``cams/{id:08d}_cam.txt`` (MVSNet text: ``extrinsic`` + 4x4 world-to-camera,
``intrinsic`` + 3x3, optional depth range).

ETH3D (Pi3's preparation; ``ROOT`` = the folder of scenes): ``<scene>/images/custom_undistorted/*.JPG``,
``<scene>/ground_truth_depth/custom_undistorted/<name>.JPG`` (raw little-endian float32, image size,
non-finite invalid, metres), ``<scene>/custom_undistorted_cam/<name>.npz`` (``intrinsics`` 3x3,
``extrinsics`` world-to-camera 3x4 or 4x4).

Both take every 5th frame (Pi3's stride seq-id maps). ``icp_threshold`` is in the dataset's units: 100
(mm) for DTU, 0.1 (m) for ETH3D, as Pi3.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import binary_erosion

from tune3d.data.sources import ImageFileSource, _load_npy, resize_array
from tune3d.errors import Tune3DError

log = logging.getLogger(__name__)

DTU_TEST_SCANS = (1, 4, 9, 10, 11, 12, 13, 15, 23, 24, 29, 32, 33, 34, 48, 49, 62, 75, 77, 110, 114, 118)
PI3_KF_EVERY = 5
DTU_ICP_THRESHOLD = 100.0
ETH3D_ICP_THRESHOLD = 0.1
MASK_ERODE = 10
DTU_LAYOUT = (
    "DTU: ROOT/scanN/{images/NNNNNNNN.jpg, depths/NNNNNNNN.npy, binary_masks/NNNNNNNN.png, "
    "cams/NNNNNNNN_cam.txt}"
)
ETH3D_LAYOUT = (
    "ETH3D: ROOT/<scene>/{images/custom_undistorted/*.JPG, "
    "ground_truth_depth/custom_undistorted/*.JPG, custom_undistorted_cam/*.npz}"
)


@dataclass(frozen=True)
class Pi3Frame:
    """One frame: ``c2w`` 4x4 OpenCV camera-to-world and ``K`` 3x3 pixels at the depth map's size."""

    name: str
    image: Path
    depth: Path
    c2w: np.ndarray
    K: np.ndarray
    kind: str  # "dtu" | "eth3d"
    mask: Path | None = None


@dataclass
class Pi3Sequence:
    name: str
    icp_threshold: float
    frames: list[Pi3Frame] = field(default_factory=list)


def read_mvsnet_cam(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(``K`` 3x3, world-to-camera 4x4) of an MVSNet ``*_cam.txt``."""
    try:
        words = path.read_text().split()
    except FileNotFoundError:
        raise Tune3DError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError):
        raise Tune3DError(f"{path}: not an MVSNet camera text file") from None
    try:
        if words[0] != "extrinsic" or words[17] != "intrinsic":
            raise ValueError
        w2c = np.array([float(x) for x in words[1:17]]).reshape(4, 4)
        K = np.array([float(x) for x in words[18:27]]).reshape(3, 3)
    except (IndexError, ValueError):
        raise Tune3DError(f"{path}: expected 'extrinsic' + 16 numbers and 'intrinsic' + 9 numbers") from None
    if not (np.isfinite(w2c).all() and np.isfinite(K).all()) or abs(np.linalg.det(w2c[:3, :3]) - 1) > 1e-3:
        raise Tune3DError(f"{path}: the extrinsic is not a finite rigid transform")
    return K, w2c


def _dtu_scan(folder: Path) -> Pi3Sequence:
    names = sorted(p.name for p in (folder / "images").glob("*.jpg"))
    ids = [int(n[:-4]) for n in names if re.fullmatch(r"\d{8}\.jpg", n)]
    if not ids:
        raise Tune3DError(f"{folder / 'images'}: no NNNNNNNN.jpg images; expected {DTU_LAYOUT}")
    if ids != list(range(len(ids))):
        raise Tune3DError(f"{folder / 'images'}: image ids are not 0..{len(ids) - 1}")
    seq = Pi3Sequence(folder.name, DTU_ICP_THRESHOLD)
    for i in ids[::PI3_KF_EVERY]:
        K, w2c = read_mvsnet_cam(folder / "cams" / f"{i:08d}_cam.txt")
        paths = (folder / "images" / f"{i:08d}.jpg", folder / "depths" / f"{i:08d}.npy")
        mask = folder / "binary_masks" / f"{i:08d}.png"
        for p in (*paths, mask):
            if not p.is_file():
                raise Tune3DError(f"{p}: file not found; expected {DTU_LAYOUT}")
        seq.frames.append(Pi3Frame(f"{i:08d}", *paths, np.linalg.inv(w2c), K, "dtu", mask))
    return seq


def dtu_sequences(root: str | Path) -> list[Pi3Sequence]:
    """The DTU test scans present under ``root`` (or ``root`` itself when it is one scan)."""
    root = Path(root)
    if not root.is_dir():
        raise Tune3DError(f"{root}: dataset root not found; expected {DTU_LAYOUT}")
    if (root / "images").is_dir() and (root / "cams").is_dir():
        return [_dtu_scan(root)]
    scans = [root / f"scan{n}" for n in DTU_TEST_SCANS if (root / f"scan{n}").is_dir()]
    if not scans:
        raise Tune3DError(f"{root}: none of the 22 DTU test scans (scan1, scan4, ...); expected {DTU_LAYOUT}")
    if len(scans) < len(DTU_TEST_SCANS):
        log.warning("%s: %d of the %d DTU test scans present", root, len(scans), len(DTU_TEST_SCANS))
    return [_dtu_scan(s) for s in scans]


def _npz_matrix(path: Path, key: str) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as z:
            return np.asarray(z[key], dtype=np.float64)
    except FileNotFoundError:
        raise Tune3DError(f"{path}: file not found; expected {ETH3D_LAYOUT}") from None
    except KeyError:
        raise Tune3DError(f"{path}: no {key!r} array") from None
    except (OSError, ValueError, EOFError):
        raise Tune3DError(f"{path}: not a readable .npz") from None


def eth3d_sequences(root: str | Path) -> list[Pi3Sequence]:
    """Every ETH3D scene under ``root`` (or ``root`` itself), frames every 5th."""
    root = Path(root)
    if not root.is_dir():
        raise Tune3DError(f"{root}: dataset root not found; expected {ETH3D_LAYOUT}")
    sub = Path("images") / "custom_undistorted"
    scenes = [root] if (root / sub).is_dir() else sorted(p for p in root.iterdir() if (p / sub).is_dir())
    if not scenes:
        raise Tune3DError(f"{root}: no scene with images/custom_undistorted/; expected {ETH3D_LAYOUT}")
    out = []
    for scene in scenes:
        names = sorted(p.name for p in (scene / sub).glob("*.JPG"))
        if not names:
            raise Tune3DError(f"{scene / sub}: no .JPG images; expected {ETH3D_LAYOUT}")
        seq = Pi3Sequence(scene.name, ETH3D_ICP_THRESHOLD)
        for name in names[::PI3_KF_EVERY]:
            cam = scene / "custom_undistorted_cam" / name.replace("JPG", "npz")
            K, E = _npz_matrix(cam, "intrinsics"), _npz_matrix(cam, "extrinsics")
            if K.shape != (3, 3) or E.shape not in ((3, 4), (4, 4)) or not np.isfinite(E).all():
                raise Tune3DError(f"{cam}: expected intrinsics 3x3 and extrinsics 3x4 or 4x4")
            w2c = np.eye(4)
            w2c[:3] = E[:3]
            depth = scene / "ground_truth_depth" / "custom_undistorted" / name
            if not depth.is_file():
                raise Tune3DError(f"{depth}: file not found; expected {ETH3D_LAYOUT}")
            seq.frames.append(Pi3Frame(name, scene / sub / name, depth, np.linalg.inv(w2c), K, "eth3d"))
        out.append(seq)
    return out


def _erode(mask: np.ndarray, k: int = MASK_ERODE) -> np.ndarray:
    # border_value=1: the image border does not erode the mask (OpenCV's default border for erode)
    return binary_erosion(mask, structure=np.ones((k, k), bool), border_value=1)


def load_pi3_frame(frame: Pi3Frame) -> tuple[np.ndarray, np.ndarray]:
    """(image H,W,3 uint8 at the depth's size, depth H,W float32 with 0 = invalid / masked out)."""
    image = ImageFileSource(frame.image).load()
    if frame.kind == "dtu":
        depth = _load_npy(frame.depth, "depth")
        if depth.ndim != 2 or depth.dtype.kind not in "fiu":
            raise Tune3DError(f"{frame.depth}: expected a 2-D depth array, got shape {depth.shape}")
        depth = np.nan_to_num(depth.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        mask = ImageFileSource(frame.mask).load().mean(-1) / 255.0 > 0.5
        mask = resize_array(mask.astype(np.uint8), *depth.shape, "depth").astype(bool)
        depth = depth * _erode(mask)
    else:
        h, w = image.shape[:2]
        raw = np.fromfile(frame.depth, dtype="<f4")
        if raw.size != h * w:
            raise Tune3DError(f"{frame.depth}: {raw.size} float32 values; expected {h}x{w} (the image size)")
        depth = raw.reshape(h, w).astype(np.float32)
        depth[~np.isfinite(depth)] = 0.0
    depth[depth <= 1e-4] = 0.0
    H, W = depth.shape
    if image.shape[:2] != (H, W):
        image = np.asarray(Image.fromarray(image).resize((W, H), Image.Resampling.BICUBIC))
    return image, depth
