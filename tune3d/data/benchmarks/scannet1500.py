"""ScanNet-1500 two-view pose test set in the LoFTR layout (the 1500 SuperGlue pairs).

``ROOT/test.npz`` holds ``name``: ``N,4`` integers ``(scene, sub_scene, frame0, frame1)``;
``ROOT/intrinsics.npz`` maps ``sceneXXXX_YY`` to the 3x3 colour intrinsics of the 640x480 frames; frames
live in ``ROOT/scannet_test_1500/sceneXXXX_YY/color/<frame>.jpg`` with camera-to-world poses in
``.../pose/<frame>.txt`` (scene folders directly in ROOT are accepted too). The ground-truth relative pose
is LoFTR's ``T_0to1 = inv(c2w_1) @ c2w_0`` (maps camera-0 points into camera 1).

SuperGlue's pair list is read too: ``ROOT/scannet_test_pairs_with_gt.txt`` with lines ``image0 image1
rot0 rot1 K0(9) K1(9) T_0to1(16)`` (images relative to ROOT; EXIF rotations must be 0).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tune3d.errors import Tune3DError

LAYOUT = (
    "ROOT/test.npz ('name': N x 4 ints scene, sub-scene, frame0, frame1), ROOT/intrinsics.npz "
    "(sceneXXXX_YY -> 3x3 K) and ROOT/scannet_test_1500/sceneXXXX_YY/{color/F.jpg,pose/F.txt}"
)


@dataclass(frozen=True)
class PosePair:
    """One test pair: images, intrinsics (3x3 each) and ``T_0to1`` (4x4)."""

    name: str
    image0: Path
    image1: Path
    K0: np.ndarray
    K1: np.ndarray
    T_0to1: np.ndarray


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise Tune3DError(f"{path}: file not found; ScanNet-1500 expects {LAYOUT}")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise Tune3DError(f"{path}: unreadable .npz ({e})") from None


def _read_pose(path: Path) -> np.ndarray:
    if not path.is_file():
        raise Tune3DError(f"{path}: file not found (named by the pair list)")
    try:
        m = np.array([float(x) for x in path.read_text().split()], dtype=np.float64)
    except (ValueError, OSError, UnicodeDecodeError):
        raise Tune3DError(f"{path}: pose is not 16 numbers") from None
    if m.size != 16 or not np.isfinite(m).all():
        raise Tune3DError(f"{path}: pose must be 16 finite numbers (4x4 camera-to-world)")
    return m.reshape(4, 4)


SUPERGLUE_LIST = "scannet_test_pairs_with_gt.txt"


def _read_superglue_list(path: Path, limit: int | None) -> list[PosePair]:
    try:
        lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise Tune3DError(f"{path}: unreadable pair list ({e})") from None
    pairs = []
    for k, tok in enumerate(lines[:limit]):
        if len(tok) != 38:
            raise Tune3DError(
                f"{path}: line {k + 1} has {len(tok)} fields; expected 38 (images, rotations, K0, K1, T_0to1)"
            )
        try:
            v = np.array([float(x) for x in tok[2:]], dtype=np.float64)
        except ValueError:
            raise Tune3DError(f"{path}: line {k + 1} has non-numeric fields") from None
        if v[0] != 0 or v[1] != 0:
            raise Tune3DError(f"{path}: line {k + 1}: rotated images (EXIF rotation != 0) are not supported")
        imgs = [path.parent / tok[0], path.parent / tok[1]]
        for p in imgs:
            if not p.is_file():
                raise Tune3DError(f"{p}: file not found (named by {path})")
        K0, K1, T = v[2:11].reshape(3, 3), v[11:20].reshape(3, 3), v[20:36].reshape(4, 4)
        pairs.append(PosePair(f"{tok[0]}-{Path(tok[1]).name}", imgs[0], imgs[1], K0, K1, T))
    if not pairs:
        raise Tune3DError(f"{path}: lists no pairs")
    return pairs


def read_scannet1500(root: str | Path, limit: int | None = None) -> list[PosePair]:
    """The pairs of ``root/test.npz`` (or SuperGlue's list; first ``limit`` if given), files checked."""
    root = Path(root)
    if not root.is_dir():
        raise Tune3DError(f"{root}: dataset root not found; expected {LAYOUT}")
    if not (root / "test.npz").is_file() and (root / SUPERGLUE_LIST).is_file():
        return _read_superglue_list(root / SUPERGLUE_LIST, limit)
    index = _load_npz(root / "test.npz")
    names = index.get("name")
    if names is None or names.ndim != 2 or names.shape[1] != 4 or not np.issubdtype(names.dtype, np.integer):
        raise Tune3DError(f"{root / 'test.npz'}: 'name' must be an N x 4 integer array")
    intr = _load_npz(root / "intrinsics.npz")
    data = root / "scannet_test_1500" if (root / "scannet_test_1500").is_dir() else root
    pairs = []
    for scene, sub, f0, f1 in names[:limit]:
        sname = f"scene{int(scene):04d}_{int(sub):02d}"
        if sname not in intr:
            raise Tune3DError(f"{root / 'intrinsics.npz'}: no intrinsics for {sname}")
        K = np.asarray(intr[sname], dtype=np.float64).reshape(-1)
        if K.size != 9 or not np.isfinite(K).all():
            raise Tune3DError(f"{root / 'intrinsics.npz'}: intrinsics of {sname} are not a finite 3x3")
        K = K.reshape(3, 3)
        imgs = [data / sname / "color" / f"{int(f)}.jpg" for f in (f0, f1)]
        for p in imgs:
            if not p.is_file():
                raise Tune3DError(f"{p}: file not found (named by {root / 'test.npz'})")
        c2w0 = _read_pose(data / sname / "pose" / f"{int(f0)}.txt")
        c2w1 = _read_pose(data / sname / "pose" / f"{int(f1)}.txt")
        T = np.linalg.inv(c2w1) @ c2w0
        pairs.append(PosePair(f"{sname}/{int(f0)}-{int(f1)}", imgs[0], imgs[1], K, K.copy(), T))
    if not pairs:
        raise Tune3DError(f"{root / 'test.npz'}: lists no pairs")
    return pairs
