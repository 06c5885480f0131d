"""MoGe's monocular-geometry evaluation suite (``Ruicheng/monocular-geometry-evaluation``) in its own layout.

``ROOT/<Dataset>/.index.txt`` lists one instance folder per line (relative to ``ROOT/<Dataset>``); each
instance holds ``image.jpg``, ``depth.png`` and ``meta.json``:

- ``depth.png``: 16-bit PNG, log-encoded between the PNG text fields ``near`` and ``far``: stored 0 =
  unknown, 65535 = infinity, ``v`` in 1..65534 -> ``near^(1-u) * far^u`` with ``u = (v - 1) / 65533``;
  a legacy ``unit`` text field multiplies the result.
- ``meta.json``: ``{"intrinsics": 3x3}`` normalised by the image size (``fx / W``, ``cx / W``, ...).

A root may also be one dataset folder (it holds ``.index.txt`` itself). As MoGe's evaluation,
:func:`load_moge_instance` warps a sample to its dataset's fixed viewport (``moge_viewport``) and then drops
depth beyond 1000x the 1% quantile of valid depth.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from tune3d.data.benchmarks.moge_viewport import warp_to_viewport
from tune3d.data.sources import ImageFileSource
from tune3d.errors import Tune3DError

INDEX = ".index.txt"
LAYOUT = (
    "ROOT/<Dataset>/.index.txt listing instance folders, each with image.jpg, depth.png "
    "(MoGe log-encoded 16-bit PNG with near/far text fields) and meta.json ({'intrinsics': normalised 3x3})"
)
DROP_MAX_DEPTH = 1000.0


@dataclass(frozen=True)
class MoGeInstance:
    """One evaluation sample: ``dataset`` name, instance ``name`` and its folder."""

    dataset: str
    name: str
    folder: Path


def moge_dataset_folders(root: str | Path) -> dict[str, Path]:
    """``{dataset name: folder}`` of every folder under ``root`` (or ``root`` itself) with ``.index.txt``."""
    root = Path(root)
    if not root.is_dir():
        raise Tune3DError(f"{root}: dataset root not found; expected {LAYOUT}")
    if (root / INDEX).is_file():
        return {root.name: root}
    found = {p.name: p for p in sorted(root.iterdir()) if p.is_dir() and (p / INDEX).is_file()}
    if not found:
        raise Tune3DError(f"{root}: no dataset folder with {INDEX}; expected {LAYOUT}")
    return found


def list_moge_instances(folder: str | Path, dataset: str | None = None) -> list[MoGeInstance]:
    """Instances listed in ``folder/.index.txt``; a listed folder that is missing is an error."""
    folder = Path(folder)
    index = folder / INDEX
    try:
        names = [ln.strip() for ln in index.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except FileNotFoundError:
        raise Tune3DError(f"{index}: file not found; expected {LAYOUT}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise Tune3DError(f"{index}: unreadable index ({e})") from None
    if not names:
        raise Tune3DError(f"{index}: lists no instances")
    out = []
    for n in names:
        inst = folder / n
        if not inst.is_dir():
            raise Tune3DError(f"{inst}: instance folder not found (listed in {index})")
        out.append(MoGeInstance(dataset or folder.name, n, inst))
    return out


def read_moge_depth(path: str | Path) -> np.ndarray:
    """Decode a MoGe ``depth.png`` -> float32 ``H,W`` with NaN = unknown and inf = infinitely far."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            info, mode, arr = dict(im.info), im.mode, np.array(im)
    except FileNotFoundError:
        raise Tune3DError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise Tune3DError(f"{path}: unreadable depth image ({e})") from None
    if mode not in ("I;16", "I;16B", "I;16L", "I") or arr.ndim != 2:
        raise Tune3DError(f"{path}: MoGe depth must be a single-channel 16-bit PNG, got mode {mode}")
    try:
        near, far = float(info["near"]), float(info["far"])
    except (KeyError, ValueError):
        raise Tune3DError(
            f"{path}: not MoGe's depth encoding (no numeric 'near'/'far' PNG text fields)"
        ) from None
    if not (np.isfinite(near) and np.isfinite(far) and 0 < near < far):
        raise Tune3DError(f"{path}: invalid depth range near={near} far={far}")
    raw = arr.astype(np.int64)
    if raw.max(initial=0) > 65535 or raw.min(initial=0) < 0:
        raise Tune3DError(f"{path}: depth values outside the 16-bit range")
    u = (raw.astype(np.float64) - 1.0) / 65533.0
    depth = near ** (1.0 - u) * far**u
    if "unit" in info:
        try:
            depth = depth * float(info["unit"])
        except ValueError:
            raise Tune3DError(f"{path}: non-numeric 'unit' text field") from None
    depth = depth.astype(np.float32)
    depth[raw == 0] = np.nan
    depth[raw == 65535] = np.inf
    return depth


def read_moge_intrinsics(path: str | Path, width: int, height: int) -> np.ndarray:
    """Pixel ``K`` (3x3 float64) from ``meta.json``'s normalised ``intrinsics``."""
    path = Path(path)
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise Tune3DError(f"{path}: file not found (intrinsics are needed for every sample)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise Tune3DError(f"{path}: unreadable meta.json ({e})") from None
    if not isinstance(meta, dict) or "intrinsics" not in meta:
        raise Tune3DError(f"{path}: no 'intrinsics' entry")
    try:
        Kn = np.asarray(meta["intrinsics"], dtype=np.float64)
    except (TypeError, ValueError):
        raise Tune3DError(f"{path}: 'intrinsics' is not a numeric 3x3 matrix") from None
    if Kn.shape != (3, 3) or not np.isfinite(Kn).all() or Kn[0, 0] <= 0 or Kn[1, 1] <= 0:
        raise Tune3DError(f"{path}: 'intrinsics' must be a finite 3x3 matrix with positive focals")
    return np.diag([float(width), float(height), 1.0]) @ Kn


def load_moge_instance(inst: MoGeInstance, viewport: tuple[int, int] | None = None) -> dict:
    """``{"image": H,W,3 uint8, "depth": H,W float32 (0 = invalid), "mask": H,W bool, "K": 3x3 pixels}``.

    Depth and image must have the same size. ``viewport`` (width, height): warp image, depth, mask and K
    to it as MoGe's evaluation does (``MOGE_VIEWPORTS[dataset]``); None keeps the original frame. The
    mask then keeps finite depth up to 1000x its 1% quantile.
    """
    image = ImageFileSource(inst.folder / "image.jpg").load()
    depth = read_moge_depth(inst.folder / "depth.png")
    H, W = image.shape[:2]
    if depth.shape != (H, W):
        raise Tune3DError(
            f"{inst.folder / 'depth.png'}: depth is {depth.shape[1]}x{depth.shape[0]}, image is {W}x{H}"
        )
    K = read_moge_intrinsics(inst.folder / "meta.json", W, H)
    mask = np.isfinite(depth) & (depth > 0)
    if viewport is not None:
        w = warp_to_viewport(image, depth, mask, np.diag([1.0 / W, 1.0 / H, 1.0]) @ K, *viewport)
        image, depth, mask = w["image"], w["depth"], w["mask"]
        K = np.diag([float(viewport[0]), float(viewport[1]), 1.0]) @ w["Kn"]
    if mask.any():
        mask &= depth <= np.quantile(depth[mask], 0.01) * DROP_MAX_DEPTH
    depth = np.where(mask, depth, 0.0).astype(np.float32)
    return {"image": image, "depth": depth, "mask": mask, "K": K}


def write_moge_depth(path: str | Path, depth: np.ndarray) -> None:
    """Encode ``depth`` (H,W float; NaN unknown, inf infinite) in MoGe's format (fixtures and exports)."""
    d = np.asarray(depth, dtype=np.float64)
    finite = np.isfinite(d) & (d > 0)
    near = max(float(d[finite].min()), 1e-5) if finite.any() else 1.0
    far = max(near * 1.1, float(d[finite].max()) if finite.any() else near * 1.1)
    u = np.log(np.clip(np.where(finite, d, near), near, far) / near) / np.log(far / near)
    v = (1 + np.round(np.clip(u, 0, 1) * 65533)).astype(np.uint16)
    v[np.isnan(d) | (d <= 0)] = 0
    v[np.isinf(d)] = 65535
    info = PngImagePlugin.PngInfo()
    info.add_text("near", repr(near))
    info.add_text("far", repr(far))
    Image.fromarray(v).save(path, pnginfo=info)
