"""COLMAP sparse models (text and binary): cameras, images, points3D.

Parsed by hand because the formats are small and fixed (see COLMAP's ``src/colmap/scene/reconstruction_io``)
and pycolmap is a heavy optional dependency. COLMAP's camera axes are OpenCV and its pixel-centre
convention matches ours, so ``K`` is taken as is; world-to-camera ``qvec`` (w, x, y, z) / ``tvec``
become camera-to-world poses. Distortion parameters are recorded per frame; images are not undistorted.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from tune3d.data.scene import Frame, Scene
from tune3d.data.sources import ImageFileSource
from tune3d.data.validate import check_intrinsics, check_poses
from tune3d.errors import Tune3DError

# model id -> (name, parameter names); the first entries are focal(s) and principal point.
CAMERA_MODELS: dict[int, tuple[str, tuple[str, ...]]] = {
    0: ("SIMPLE_PINHOLE", ("f", "cx", "cy")),
    1: ("PINHOLE", ("fx", "fy", "cx", "cy")),
    2: ("SIMPLE_RADIAL", ("f", "cx", "cy", "k1")),
    3: ("RADIAL", ("f", "cx", "cy", "k1", "k2")),
    4: ("OPENCV", ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2")),
    5: ("OPENCV_FISHEYE", ("fx", "fy", "cx", "cy", "k1", "k2", "k3", "k4")),
    6: ("FULL_OPENCV", ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6")),
    7: ("FOV", ("fx", "fy", "cx", "cy", "omega")),
    8: ("SIMPLE_RADIAL_FISHEYE", ("f", "cx", "cy", "k1")),
    9: ("RADIAL_FISHEYE", ("f", "cx", "cy", "k1", "k2")),
    10: ("THIN_PRISM_FISHEYE", ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3", "k4", "sx1", "sy1")),
}
MODEL_IDS = {name: mid for mid, (name, _) in CAMERA_MODELS.items()}


@dataclass
class ColmapCamera:
    id: int
    model: str
    width: int
    height: int
    params: np.ndarray

    def K(self) -> np.ndarray:
        names = CAMERA_MODELS[MODEL_IDS[self.model]][1]
        p = dict(zip(names, self.params))
        fx = p.get("fx", p.get("f"))
        fy = p.get("fy", p.get("f"))
        return np.array([[fx, 0.0, p["cx"]], [0.0, fy, p["cy"]], [0.0, 0.0, 1.0]])

    def distortion(self) -> dict[str, float]:
        names = CAMERA_MODELS[MODEL_IDS[self.model]][1]
        return {n: float(v) for n, v in zip(names, self.params) if n not in ("f", "fx", "fy", "cx", "cy")}


@dataclass
class ColmapImage:
    id: int
    qvec: np.ndarray  # (w, x, y, z), world-to-camera rotation
    tvec: np.ndarray
    camera_id: int
    name: str


def qvec_to_rotmat(q: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) -> 3x3 rotation (normalised first)."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def rotmat_to_qvec(R: np.ndarray) -> np.ndarray:
    """3x3 rotation -> unit quaternion (w, x, y, z) with w >= 0."""
    x, y, z, w = Rotation.from_matrix(R).as_quat()
    q = np.array([w, x, y, z])
    return q if w >= 0 else -q


def image_c2w(img: ColmapImage) -> np.ndarray:
    R = qvec_to_rotmat(img.qvec)
    c2w = np.eye(4)
    c2w[:3, :3] = R.T
    c2w[:3, 3] = -R.T @ img.tvec
    return c2w


# ---------------------------------------------------------------- text


def _text_lines(path: Path) -> list[str]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise Tune3DError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise Tune3DError(f"{path}: unreadable COLMAP text file ({e})") from None
    return [ln for ln in text.splitlines() if not ln.startswith("#")]


def _floats(tokens: list[str], path: Path, lineno: int) -> np.ndarray:
    try:
        vals = np.array([float(t) for t in tokens], dtype=np.float64)
    except ValueError:
        raise Tune3DError(f"{path}: line {lineno}: non-numeric value") from None
    if not np.isfinite(vals).all():
        raise Tune3DError(f"{path}: line {lineno}: NaN or inf value")
    return vals


def _int(token: str, path: Path, lineno: int) -> int:
    try:
        return int(token)
    except ValueError:
        raise Tune3DError(f"{path}: line {lineno}: expected an integer, got {token!r}") from None


def _make_camera(
    cid: int, model: str, width: int, height: int, params: np.ndarray, where: str
) -> ColmapCamera:
    if model not in MODEL_IDS:
        raise Tune3DError(f"{where}: unknown camera model {model!r}")
    need = len(CAMERA_MODELS[MODEL_IDS[model]][1])
    if len(params) != need:
        raise Tune3DError(f"{where}: {model} needs {need} parameters, got {len(params)}")
    if not np.isfinite(params).all():
        raise Tune3DError(f"{where}: camera {cid} has NaN or inf parameters")
    return ColmapCamera(cid, model, width, height, params)


def read_cameras_text(path: Path) -> dict[int, ColmapCamera]:
    cams = {}
    for n, line in enumerate(_text_lines(path), 1):
        tok = line.split()
        if not tok:
            continue
        if len(tok) < 4:
            raise Tune3DError(f"{path}: line {n}: expected 'CAMERA_ID MODEL WIDTH HEIGHT PARAMS...'")
        cid = _int(tok[0], path, n)
        cams[cid] = _make_camera(
            cid,
            tok[1],
            _int(tok[2], path, n),
            _int(tok[3], path, n),
            _floats(tok[4:], path, n),
            f"{path}: line {n}",
        )
    return cams


def read_images_text(path: Path) -> dict[int, ColmapImage]:
    lines = _text_lines(path)
    images: dict[int, ColmapImage] = {}
    i = 0
    while i < len(lines):
        tok = lines[i].split()
        if not tok:  # blank separator lines between records
            i += 1
            continue
        if len(tok) < 10:
            raise Tune3DError(
                f"{path}: image record {i + 1}: expected 'IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME'"
            )
        vals = _floats(tok[1:8], path, i + 1)
        iid = _int(tok[0], path, i + 1)
        # The name may contain spaces; everything after CAMERA_ID is the name.
        images[iid] = ColmapImage(iid, vals[:4], vals[4:7], _int(tok[8], path, i + 1), " ".join(tok[9:]))
        i += 2  # skip the POINTS2D line (possibly empty)
    return images


def read_points_text(path: Path) -> tuple[np.ndarray, np.ndarray]:
    xyz, rgb = [], []
    for n, line in enumerate(_text_lines(path), 1):
        tok = line.split()
        if not tok:
            continue
        if len(tok) < 8:
            raise Tune3DError(f"{path}: line {n}: expected 'POINT3D_ID X Y Z R G B ERROR TRACK...'")
        vals = _floats(tok[1:7], path, n)
        xyz.append(vals[:3])
        rgb.append(vals[3:6])
    pts = np.asarray(xyz, dtype=np.float32).reshape(-1, 3)
    cols = np.clip(np.asarray(rgb), 0, 255).astype(np.uint8).reshape(-1, 3)
    return pts, cols


# ---------------------------------------------------------------- binary


class _Reader:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.data = path.read_bytes()
        except FileNotFoundError:
            raise Tune3DError(f"{path}: file not found") from None
        except OSError as e:
            raise Tune3DError(f"{path}: unreadable ({e})") from None
        self.pos = 0

    def read(self, fmt: str) -> tuple:
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.data):
            raise Tune3DError(f"{self.path}: truncated COLMAP binary file (at byte {self.pos})")
        out = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return out

    def skip(self, nbytes: int) -> None:
        if nbytes < 0 or self.pos + nbytes > len(self.data):
            raise Tune3DError(f"{self.path}: truncated COLMAP binary file (at byte {self.pos})")
        self.pos += nbytes

    def cstring(self) -> str:
        end = self.data.find(b"\x00", self.pos)
        if end < 0:
            raise Tune3DError(f"{self.path}: truncated COLMAP binary file (unterminated image name)")
        raw = self.data[self.pos : end]
        self.pos = end + 1
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Tune3DError(f"{self.path}: image name is not UTF-8") from None

    def count(self, per_item: int) -> int:
        (n,) = self.read("Q")
        if n * per_item > len(self.data) - self.pos:
            raise Tune3DError(f"{self.path}: record count {n} exceeds the file size (truncated or corrupt)")
        return n

    def done(self) -> None:
        if self.pos != len(self.data):
            raise Tune3DError(f"{self.path}: {len(self.data) - self.pos} unexpected trailing bytes")


def read_cameras_binary(path: Path) -> dict[int, ColmapCamera]:
    r = _Reader(path)
    cams = {}
    for _ in range(r.count(24)):
        cid, mid, w, h = r.read("iiQQ")
        if mid not in CAMERA_MODELS:
            raise Tune3DError(f"{path}: unknown camera model id {mid}")
        name, pnames = CAMERA_MODELS[mid]
        params = np.array(r.read("d" * len(pnames)))
        cams[cid] = _make_camera(cid, name, w, h, params, f"{path}: camera {cid}")
    r.done()
    return cams


def read_images_binary(path: Path) -> dict[int, ColmapImage]:
    r = _Reader(path)
    images = {}
    for _ in range(r.count(64)):
        iid, *vals = r.read("i7d")
        (cid,) = r.read("i")
        name = r.cstring()
        (n2d,) = r.read("Q")
        r.skip(24 * n2d)
        v = np.array(vals)
        if not np.isfinite(v).all():
            raise Tune3DError(f"{path}: image {name!r} has NaN or inf pose values")
        images[iid] = ColmapImage(iid, v[:4], v[4:7], cid, name)
    r.done()
    return images


def read_points_binary(path: Path) -> tuple[np.ndarray, np.ndarray]:
    r = _Reader(path)
    n = r.count(43)
    xyz = np.empty((n, 3), np.float32)
    rgb = np.empty((n, 3), np.uint8)
    for k in range(n):
        _, x, y, z, cr, cg, cb, _err, track = r.read("Q3d3BdQ")
        r.skip(8 * track)
        xyz[k] = (x, y, z)
        rgb[k] = (cr, cg, cb)
    r.done()
    if not np.isfinite(xyz).all():
        raise Tune3DError(f"{path}: points have NaN or inf coordinates")
    return xyz, rgb


# ---------------------------------------------------------------- model / scene


def find_model_dir(root: Path) -> Path | None:
    """The folder with cameras.{bin,txt} under ``root``: itself, sparse/0, sparse, colmap/sparse/0, colmap."""
    for sub in ("", "sparse/0", "sparse", "colmap/sparse/0", "colmap/sparse", "colmap"):
        d = root / sub if sub else root
        if (d / "cameras.bin").is_file() or (d / "cameras.txt").is_file():
            return d
    return None


def read_model(model_dir: Path) -> tuple[dict[int, ColmapCamera], dict[int, ColmapImage], tuple | None]:
    """Read cameras/images/points3D, preferring binary files when both exist."""
    ext = ".bin" if (model_dir / "cameras.bin").is_file() else ".txt"
    if ext == ".bin":
        cams = read_cameras_binary(model_dir / "cameras.bin")
        imgs = read_images_binary(model_dir / "images.bin")
        pts_path = model_dir / "points3D.bin"
        pts = read_points_binary(pts_path) if pts_path.is_file() else None
    else:
        cams = read_cameras_text(model_dir / "cameras.txt")
        imgs = read_images_text(model_dir / "images.txt")
        pts_path = model_dir / "points3D.txt"
        pts = read_points_text(pts_path) if pts_path.is_file() else None
    return cams, imgs, pts


def find_image_dir(root: Path, model_dir: Path) -> Path:
    for d in (root / "images", model_dir.parent / "images", model_dir.parent.parent / "images", root):
        if d.is_dir() and d != model_dir:
            return d
    return root


def read_colmap(path: str | Path, *, image_dir: str | Path | None = None, fmt: str = "colmap") -> Scene:
    """Read a COLMAP reconstruction under ``path`` (see :func:`find_model_dir`) into a Scene.

    Frames are sorted by image name; images are looked up under ``image_dir`` (default: ``path/images``).
    """
    root = Path(path)
    model_dir = find_model_dir(root)
    if model_dir is None:
        raise Tune3DError(f"{root}: no COLMAP model (cameras.bin/.txt in ., sparse/0, sparse or colmap)")
    cams, imgs, pts = read_model(model_dir)
    if not imgs:
        raise Tune3DError(f"{model_dir}: COLMAP model has no registered images")
    img_dir = Path(image_dir) if image_dir is not None else find_image_dir(root, model_dir)
    frames = []
    for img in sorted(imgs.values(), key=lambda im: im.name):
        where = f"{model_dir}: image {img.name!r}"
        if img.camera_id not in cams:
            raise Tune3DError(f"{where}: refers to missing camera {img.camera_id}")
        if not np.linalg.norm(img.qvec) > 1e-8:
            raise Tune3DError(f"{where}: zero quaternion")
        cam = cams[img.camera_id]
        K = check_intrinsics(cam.K(), cam.width, cam.height, f"{model_dir}: camera {cam.id}")
        frames.append(
            Frame(
                name=img.name,
                c2w=image_c2w(img),
                K=K,
                width=cam.width,
                height=cam.height,
                image_source=ImageFileSource(img_dir / img.name, (cam.height, cam.width)),
                camera_model=cam.model,
                distortion=cam.distortion(),
            )
        )
    check_poses(np.stack([f.c2w for f in frames]), [f"{model_dir}: image {f.name!r}" for f in frames])
    points, colors = pts if pts is not None and len(pts[0]) else (None, None)
    return Scene(
        name=root.name, frames=frames, points=points, point_colors=colors, format=fmt, path=str(root)
    )


# ---------------------------------------------------------------- writers (fixtures, export)


def write_colmap_model(
    out: str | Path,
    cameras: dict[int, ColmapCamera],
    images: dict[int, ColmapImage],
    points: tuple[np.ndarray, np.ndarray] | None = None,
    binary: bool = True,
) -> None:
    """Write a minimal COLMAP model (no 2D-3D correspondences); used for export and test fixtures."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pts, cols = points if points is not None else (np.zeros((0, 3)), np.zeros((0, 3), np.uint8))
    if binary:
        b = bytearray(struct.pack("<Q", len(cameras)))
        for c in cameras.values():
            b += struct.pack("<iiQQ", c.id, MODEL_IDS[c.model], c.width, c.height)
            b += struct.pack("<" + "d" * len(c.params), *c.params)
        (out / "cameras.bin").write_bytes(bytes(b))
        b = bytearray(struct.pack("<Q", len(images)))
        for im in images.values():
            b += struct.pack("<i7di", im.id, *im.qvec, *im.tvec, im.camera_id)
            b += im.name.encode() + b"\x00" + struct.pack("<Q", 0)
        (out / "images.bin").write_bytes(bytes(b))
        b = bytearray(struct.pack("<Q", len(pts)))
        for k, (p, c) in enumerate(zip(pts, cols)):
            b += struct.pack("<Q3d3BdQ", k + 1, *map(float, p), *map(int, c), 0.5, 0)
        (out / "points3D.bin").write_bytes(bytes(b))
    else:
        lines = ["# Camera list with one line of data per camera:"]
        lines += [
            f"{c.id} {c.model} {c.width} {c.height} " + " ".join(repr(float(v)) for v in c.params)
            for c in cameras.values()
        ]
        (out / "cameras.txt").write_text("\n".join(lines) + "\n")
        lines = ["# Image list with two lines of data per image:"]
        for im in images.values():
            vals = " ".join(repr(float(v)) for v in (*im.qvec, *im.tvec))
            lines += [f"{im.id} {vals} {im.camera_id} {im.name}", ""]
        (out / "images.txt").write_text("\n".join(lines) + "\n")
        lines = ["# 3D point list with one line of data per point:"]
        lines += [
            f"{k + 1} {' '.join(repr(float(v)) for v in p)} {' '.join(str(int(v)) for v in c)} 0.5"
            for k, (p, c) in enumerate(zip(pts, cols))
        ]
        # A track is required by the text format; give each point one dummy observation.
        lines = lines[:1] + [ln + " 1 0" for ln in lines[1:]]
        (out / "points3D.txt").write_text("\n".join(lines) + "\n")
