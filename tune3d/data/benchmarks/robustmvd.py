"""RobustMVD's multi-view depth test samples of ETH3D and Tanks and Temples (the ``robustmvd`` split).

The samples (a key view and 10 source views each) are defined only by RobustMVD's sample lists,
``rmvd/data/sample_lists/{eth3d,tanks_and_temples}.robustmvd.mvd.pickle``: copy that file into the dataset
root (or ``ROOT/sample_lists/``). It is read with :mod:`~tune3d.data.benchmarks.safe_pickle` (a parser, never
unpickled): a list of ``rmvd.data.<dataset>.<Sample>`` records with ``base`` (scene folder), ``name`` and
``data = {images: [<Image>(path)], depth: <Depth>(path), poses: [4x4 float32], intrinsics: [3x3 float32],
keyview_idx: int}``; paths are relative to ``ROOT/<base>``.

- ETH3D (104 samples, 13 scenes; ``ROOT/<scene>/images/dslr_images/DSC_XXXX.JPG``): the key view's depth
  ``ROOT/<scene>/ground_truth_depth/dslr_images/DSC_XXXX.JPG`` is raw little-endian float32, row-major, at
  the image's size (6048x4032 for the real data; rmvd hard-codes that size, here the key image's size is
  used and the file length checked against it).
- Tanks and Temples (69 samples, 4 scenes; ``ROOT/<scene>/images/XXXXXXXX.jpg``): depth
  ``ROOT/<scene>/depth/XXXXXX.npz`` holds the HxW float map as ``arr_0`` (read without pickle).

Non-finite depth becomes 0; depth <= 0 is invalid. ``poses[i]`` maps reference coordinates into view
``i``'s camera (``p_view = poses[i] @ p_ref``, metres); ``intrinsics[i]`` is ``[[fx,0,cx],[0,fy,cy],[0,0,1]]``
in pixels. Neither is needed to score depth (the models see images only); both are validated and kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tune3d.data.benchmarks.safe_pickle import PickledObject, parse_pickle
from tune3d.errors import Tune3DError

RMVD_CLASSES = {  # dataset -> (module, sample class, image class, depth class) named in the sample list
    "eth3d": ("rmvd.data.eth3d", "ETH3DSample", "ETH3DImage", "ETH3DDepth"),
    "tanks_and_temples": (
        "rmvd.data.tanks_and_temples",
        "TanksAndTemplesSample",
        "TanksAndTemplesImage",
        "TanksAndTemplesDepth",
    ),
}
LAYOUTS = {
    "eth3d": "ROOT/eth3d.robustmvd.mvd.pickle (from rmvd/data/sample_lists) + "
    "ROOT/<scene>/{images,ground_truth_depth}/dslr_images/",
    "tanks_and_temples": "ROOT/tanks_and_temples.robustmvd.mvd.pickle (from rmvd/data/sample_lists) + "
    "ROOT/<scene>/{images/*.jpg,depth/*.npz}",
}


@dataclass(frozen=True)
class MVDSample:
    """One key view with its source views. ``images[keyview_idx]`` is the key view; ``depth`` its GT."""

    dataset: str
    name: str
    images: tuple[Path, ...]
    depth: Path
    intrinsics: np.ndarray  # V,3,3 float32, pixels
    poses: np.ndarray  # V,4,4 float32, reference -> view
    keyview_idx: int

    @property
    def ordered_images(self) -> tuple[Path, ...]:
        """The key view first, then the source views in list order (the models' reference frame first)."""
        k = self.keyview_idx
        return (self.images[k],) + self.images[:k] + self.images[k + 1 :]


def sample_list_path(dataset: str, root: str | Path) -> Path:
    root = Path(root)
    fname = f"{dataset}.robustmvd.mvd.pickle"
    for p in (root / fname, root / "sample_lists" / fname):
        if p.is_file():
            return p
    raise Tune3DError(
        f"{root / fname}: RobustMVD sample list not found; {dataset} expects {LAYOUTS[dataset]}"
    )


def _path_of(rec: Any, cls: tuple[str, str], what: str, fail) -> str:
    if not (isinstance(rec, PickledObject) and (rec.module, rec.name) == cls):
        raise fail(f"{what} is not a {cls[0]}.{cls[1]} record")
    p = rec.state.get("path") if isinstance(rec.state, dict) else None
    if not isinstance(p, str) or not p or Path(p).is_absolute() or ".." in Path(p).parts:
        raise fail(f"{what} has no relative 'path'")
    return p


def _arrays(v: Any, n: int, shape: tuple[int, int], what: str, fail) -> np.ndarray:
    if not isinstance(v, list) or len(v) != n:
        raise fail(f"'{what}' must list {n} arrays (one per view)")
    for a in v:
        if not isinstance(a, np.ndarray) or a.shape != shape or not np.isfinite(a).all():
            raise fail(
                f"'{what}' holds a {getattr(a, 'shape', type(a).__name__)} entry, expected finite {shape}"
            )
    return np.stack(v).astype(np.float32)


def robustmvd_samples(dataset: str, root: str | Path, limit: int | None = None) -> list[MVDSample]:
    """The ``robustmvd`` split's samples of ``dataset`` (``eth3d`` | ``tanks_and_temples``) under ``root``,
    every named file checked to exist (one-line error naming the first problem)."""
    if dataset not in RMVD_CLASSES:
        raise Tune3DError(f"unknown RobustMVD dataset {dataset!r}; expected {', '.join(RMVD_CLASSES)}")
    root = Path(root)
    if not root.is_dir():
        raise Tune3DError(f"{root}: dataset root not found; {dataset} expects {LAYOUTS[dataset]}")
    lst = sample_list_path(dataset, root)
    module, sample_cls, image_cls, depth_cls = RMVD_CLASSES[dataset]
    parsed = parse_pickle(lst)
    if not isinstance(parsed, list) or not parsed:
        raise Tune3DError(f"{lst}: expected a non-empty list of {module}.{sample_cls} records")
    out = []
    for i, rec in enumerate(parsed[:limit]):

        def fail(msg: str, i: int = i) -> Tune3DError:
            return Tune3DError(f"{lst}: sample {i}: {msg}")

        if not (isinstance(rec, PickledObject) and (rec.module, rec.name) == (module, sample_cls)):
            raise fail(f"not a {module}.{sample_cls} record (a sample list of another dataset?)")
        st = rec.state if isinstance(rec.state, dict) else {}
        base, name, data = st.get("base"), st.get("name"), st.get("data")
        if not isinstance(base, str) or not base or ".." in Path(base).parts or not isinstance(data, dict):
            raise fail("missing 'base' scene folder or 'data'")
        images_v = data.get("images")
        if not isinstance(images_v, list) or len(images_v) < 2:
            raise fail("'images' must list the key view and at least one source view")
        n = len(images_v)
        images = tuple(
            root / base / _path_of(v, (module, image_cls), f"image {j}", fail) for j, v in enumerate(images_v)
        )
        depth = root / base / _path_of(data.get("depth"), (module, depth_cls), "depth", fail)
        k = data.get("keyview_idx")
        if isinstance(k, np.integer):
            k = int(k)
        if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k < n:
            raise fail(f"keyview_idx {k!r} is not an index into its {n} images")
        intr = _arrays(data.get("intrinsics"), n, (3, 3), "intrinsics", fail)
        poses = _arrays(data.get("poses"), n, (4, 4), "poses", fail)
        for p in (*images, depth):
            if not p.is_file():
                raise Tune3DError(f"{p}: file not found (named by {lst.name}, sample {name or i})")
        out.append(MVDSample(dataset, str(name or f"{base}/{i}"), images, depth, intr, poses, k))
    return out


def load_mvd_depth(sample: MVDSample) -> np.ndarray:
    """Ground-truth depth of the key view: float32 ``H,W`` metres, 0 = invalid."""
    p = sample.depth
    if sample.dataset == "eth3d":
        with Image.open(sample.images[sample.keyview_idx]) as im:
            w, h = im.size
        n = p.stat().st_size
        if n != 4 * h * w:
            raise Tune3DError(
                f"{p}: raw float32 depth of {n} bytes, expected {4 * h * w} for the key image's {w}x{h}"
            )
        depth = np.fromfile(p, dtype="<f4").reshape(h, w)
    else:
        try:
            with np.load(p, allow_pickle=False) as z:
                if "arr_0" not in z.files:
                    raise Tune3DError(f"{p}: no 'arr_0' depth array (has {', '.join(z.files) or 'none'})")
                depth = z["arr_0"]
        except (ValueError, OSError, EOFError) as e:
            raise Tune3DError(f"{p}: unreadable .npz depth ({e})") from None
        if depth.ndim == 3 and depth.shape[0] == 1:
            depth = depth[0]
        if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.floating):
            raise Tune3DError(f"{p}: expected an HxW float depth map, got {depth.dtype} {depth.shape}")
    depth = np.nan_to_num(depth.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    return np.where(depth > 0, depth, 0.0).astype(np.float32)
