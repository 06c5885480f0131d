"""RealEstate10K multi-view pose test sequences (camera txt files + extracted frames).

Camera file ``<seq>.txt`` (the official release): line 1 is the YouTube URL, then one line per frame
``timestamp fx fy cx cy k1 k2 r00 r01 r02 t0 r10 r11 r12 t1 r20 r21 r22 t2`` with intrinsics normalised by
the image size and a 3x4 world-to-camera matrix (OpenCV axes). Camera files are read from
``ROOT/metadata/test/`` (Pi3's preparation) or ``ROOT/test/`` (the release itself).

Frame of line ``i`` with timestamp ``ts``: ``ROOT/<seq>/images/{i:04d}.png`` (Pi3's preparation, frames
renamed in timestamp order), else ``ROOT/<seq>/images/<ts>.png`` (its download before the renaming) or
``ROOT/test/<seq>/<ts>.png|jpg`` (the RealEstate10K downloader's ``dataset/test/<seq>/``).

Sequences: those listed in ``ROOT/re10k_test_1719.txt`` / ``re10k_test_1800.txt`` when present (Pi3 /
PoseDiffusion test lists), else every camera file. Frames: the ids of ``ROOT/*seq-id-map*.json``
(``{seq: [ids]}``, Pi3's pre-sampled maps) when present, else ``num_frames`` (10) ids drawn without
replacement by a seeded generator. pixelSplat's ``.torch`` chunks are pickles and are refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tune3d.errors import Tune3DError

NUM_FRAMES = 10
SEQUENCE_LISTS = ("re10k_test_1719.txt", "re10k_test_1800.txt")
RE10K_LAYOUT = (
    "RealEstate10K: ROOT/{metadata/test,test}/<seq>.txt camera files with frames "
    "ROOT/<seq>/images/{NNNN,<timestamp>}.png or ROOT/test/<seq>/<timestamp>.png"
)


@dataclass(frozen=True)
class PoseSequence:
    """``images`` paths and ``c2w`` ``S,4,4`` (OpenCV camera-to-world) of the sampled frames."""

    name: str
    images: list[Path]
    c2w: np.ndarray


def read_re10k_cameras(path: Path) -> tuple[list[str], np.ndarray]:
    """(timestamps, ``N,4,4`` camera-to-world) of one camera file."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise Tune3DError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError):
        raise Tune3DError(f"{path}: not a RealEstate10K camera text file") from None
    stamps, poses = [], []
    for k, line in enumerate(lines[1:], start=2):
        tok = line.split()
        if not tok:
            continue
        try:
            vals = np.array([float(x) for x in tok[1:]], dtype=np.float64)
        except ValueError:
            vals = np.empty(0)
        if len(tok) != 19 or not np.isfinite(vals).all():
            raise Tune3DError(f"{path}: line {k}: expected 'timestamp fx fy cx cy k1 k2' and a 3x4 matrix")
        w2c = np.eye(4)
        w2c[:3] = vals[6:].reshape(3, 4)
        if abs(np.linalg.det(w2c[:3, :3]) - 1.0) > 1e-3:
            raise Tune3DError(f"{path}: line {k}: the 3x3 block is not a rotation")
        stamps.append(tok[0])
        poses.append(np.linalg.inv(w2c))
    if not poses:
        raise Tune3DError(f"{path}: no camera lines after the URL line")
    return stamps, np.stack(poses)


def _refuse_torch_chunks(root: Path) -> None:
    for folder in (root, root / "test"):
        chunk = next(iter(sorted(folder.glob("*.torch"))), None) if folder.is_dir() else None
        if chunk is not None:
            raise Tune3DError(
                f"{chunk}: pixelSplat .torch chunks are pickles and are not read; give the camera txt + "
                "frames layout"
            )


def _frame(root: Path, seq: str, i: int, stamp: str) -> Path:
    cands = [root / seq / "images" / f"{i:04d}.png", root / seq / "images" / f"{stamp}.png"]
    cands += [root / "test" / seq / f"{stamp}.png", root / "test" / seq / f"{stamp}.jpg"]
    found = next((p for p in cands if p.is_file()), None)
    if found is None:
        raise Tune3DError(
            f"{cands[0]}: frame {i} (timestamp {stamp}) of {seq} not found; expected {RE10K_LAYOUT}"
        )
    return found


def re10k_sequences(
    root: str | Path, num_frames: int = NUM_FRAMES, seed: int = 42, limit: int | None = None
) -> list[PoseSequence]:
    """The test sequences under ``root`` (see the module docstring), each with its sampled frames."""
    root = Path(root)
    if not root.is_dir():
        raise Tune3DError(f"{root}: dataset root not found; expected {RE10K_LAYOUT}")
    _refuse_torch_chunks(root)
    meta = next((d for d in (root / "metadata" / "test", root / "test") if any(d.glob("*.txt"))), None)
    if meta is None:
        raise Tune3DError(f"{root}: no camera files; expected {RE10K_LAYOUT}")
    listing = next((root / n for n in SEQUENCE_LISTS if (root / n).is_file()), None)
    if listing is not None:
        names = [ln.strip().removesuffix(".txt") for ln in listing.read_text().splitlines() if ln.strip()]
    else:
        names = sorted(p.stem for p in meta.glob("*.txt"))
    id_map: dict = {}
    map_file = next(iter(sorted(root.glob("*seq-id-map*.json"))), None)
    if map_file is not None:
        try:
            id_map = json.loads(map_file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            raise Tune3DError(f"{map_file}: not a JSON object of sequence -> frame ids") from None
        if not isinstance(id_map, dict):
            raise Tune3DError(f"{map_file}: not a JSON object of sequence -> frame ids")
    rng = np.random.default_rng(seed)
    out = []
    for seq in names[:limit]:
        stamps, c2w = read_re10k_cameras(meta / f"{seq}.txt")
        if seq in id_map:
            ids = [int(i) for i in id_map[seq]]
            if not ids or min(ids) < 0 or max(ids) >= len(stamps):
                raise Tune3DError(f"{map_file}: frame ids of {seq} outside its {len(stamps)} cameras")
        else:
            ids = sorted(rng.choice(len(stamps), min(num_frames, len(stamps)), replace=False).tolist())
        if len(ids) < 2:
            raise Tune3DError(f"{meta / f'{seq}.txt'}: fewer than 2 frames to pair")
        images = [_frame(root, seq, i, stamps[i]) for i in ids]
        out.append(PoseSequence(seq, images, c2w[ids]))
    return out
