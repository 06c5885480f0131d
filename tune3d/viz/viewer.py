"""``tune3d view``: a local web viewer (viser) for tune3d run folders.

:func:`load_run` turns a run folder into plain arrays (:class:`RunView`), with no server involved;
:func:`serve` puts them in a viser scene. A run folder is any of:

- a ``tune3d reconstruct`` output: ``points.ply`` (coloured cloud), ``cameras.json`` (OpenCV ``c2w`` 4x4
  and ``K`` 3x3 per view) and ``predictions.npz`` (input images, depth, confidence; its ``pts3d`` give
  the cloud when ``points.ply`` is absent);
- a ``tune3d lift`` output (``gaussians.safetensors`` + ``config.yaml``): the Gaussian means coloured by
  their SH colour and, as a second layer, by a PCA of their latent features; the source scene's cameras
  when it is still where the lift recorded it;
- a folder whose sub-folders are lifted scenes (one layer pair per scene).

All geometry stays in the run's own world frame (OpenCV: x right, y down, z forward), so the viewer's up
direction is -y.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors import SafetensorError
from safetensors.numpy import load_file
from scipy.spatial.transform import Rotation

from tune3d.data import load_scene
from tune3d.data.ply import read_points_ply
from tune3d.errors import Tune3DError
from tune3d.fit3d.lifted import is_lifted_dir
from tune3d.splatting.gaussians import GAUSSIANS_FILE
from tune3d.viz.images import colorize, colorize_depth
from tune3d.viz.pca import fit_pca

POINTS_FILE = "points.ply"
CAMERAS_FILE = "cameras.json"
PREDICTIONS_FILE = "predictions.npz"
_SH_C0 = 0.28209479177387814  # degree-0 SH basis: rgb = 0.5 + C0 * sh0


@dataclass
class Cloud:
    """A point layer: ``points (N,3)`` float32 in the run's world frame, ``colors (N,3)`` uint8."""

    name: str
    points: np.ndarray
    colors: np.ndarray
    visible: bool = True


@dataclass
class Camera:
    """One view: ``c2w (4,4)`` OpenCV camera-to-world, pixel ``K (3,3)`` for a ``height x width`` image,
    and that image ``(H,W,3)`` uint8 when the run kept it."""

    name: str
    c2w: np.ndarray
    K: np.ndarray
    width: int
    height: int
    image: np.ndarray | None = None

    @property
    def drawable(self) -> bool:
        """Finite pose and intrinsics with a positive focal length (an untrained model can predict inf)."""
        return bool(np.isfinite(self.c2w).all() and np.isfinite(self.K).all() and self.K[1, 1] > 0)


@dataclass
class Panel:
    """A per-view 2D image shown in the side panel (``image (H,W,3)`` uint8), e.g. depth or confidence."""

    view: str
    kind: str
    image: np.ndarray


@dataclass
class RunView:
    """Everything :func:`serve` shows for one run folder."""

    path: Path
    clouds: list[Cloud] = field(default_factory=list)
    cameras: list[Camera] = field(default_factory=list)
    panels: list[Panel] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def extent(self) -> tuple[np.ndarray, float]:
        """Centre ``(3,)`` and radius of the geometry (95th percentile distance), for camera placement."""
        pts = [c.points for c in self.clouds if len(c.points)]
        cams = [cam.c2w[:3, 3] for cam in self.cameras if cam.drawable]
        pts += [np.stack(cams)] if cams else []
        if not pts:
            return np.zeros(3), 1.0
        xyz = np.concatenate(pts).astype(np.float64)
        centre = np.median(xyz, axis=0)
        radius = float(np.percentile(np.linalg.norm(xyz - centre, axis=1), 95))
        return centre, radius if radius > 1e-9 else 1.0

    def summary(self) -> str:
        n = sum(len(c.points) for c in self.clouds)
        layers, cams, images = len(self.clouds), len(self.cameras), len(self.panels)
        return f"{n} points in {layers} layer(s), {cams} camera(s), {images} image(s)"


def _subsample(n: int, max_points: int, seed: int = 0) -> np.ndarray:
    if max_points <= 0 or n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))


def _cloud(name: str, points: np.ndarray, colors: np.ndarray | None, max_points: int, **kw) -> Cloud:
    pts = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    keep = np.isfinite(pts).all(1)
    pts = pts[keep]
    cols = np.full((len(pts), 3), 160, np.uint8) if colors is None else np.asarray(colors)[keep]
    pick = _subsample(len(pts), max_points)
    return Cloud(name, pts[pick], np.ascontiguousarray(cols[pick], dtype=np.uint8), **kw)


def _matrix(value, shape: tuple[int, int], where: str) -> np.ndarray:
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        m = None
    if m is None or m.shape != shape:
        raise Tune3DError(f"{where}: expected a {shape[0]}x{shape[1]} matrix")
    return m


def _read_cameras(path: Path) -> list[Camera]:
    """``cameras.json`` as written by :func:`tune3d.recon.export.write_cameras` (views without both
    ``c2w`` and ``K`` are skipped: a model that predicts neither has nothing to draw)."""
    try:
        frames = json.loads(path.read_text())["frames"]
        if not isinstance(frames, list):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError):
        raise Tune3DError(f"{path}: not a tune3d cameras.json (needs a 'frames' list)") from None
    cams = []
    for i, f in enumerate(frames):
        if not isinstance(f, dict) or "c2w" not in f or "K" not in f:
            continue
        where = f"{path}: frame {i}"
        try:
            w, h = int(f["width"]), int(f["height"])
        except (KeyError, TypeError, ValueError):
            raise Tune3DError(f"{where}: needs integer width and height") from None
        name = str(f.get("name", f"view{i}"))
        cams.append(Camera(name, _matrix(f["c2w"], (4, 4), where), _matrix(f["K"], (3, 3), where), w, h))
    return cams


def _load_predictions(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as e:
        raise Tune3DError(f"{path}: unreadable predictions file ({e})") from None
    conf = arrays.get("conf")
    if conf is None or conf.ndim != 3:
        raise Tune3DError(f"{path}: needs 'conf' of shape (S,H,W)")
    S, H, W = conf.shape
    for key, tail in (("pts3d", (3,)), ("images", (3,)), ("depth", ()), ("valid", ())):
        if key in arrays and arrays[key].shape != (S, H, W, *tail):
            raise Tune3DError(f"{path}: '{key}' has shape {arrays[key].shape}, expected {(S, H, W, *tail)}")
    return arrays


def _add_reconstruction(run: RunView, root: Path, max_points: int, max_panels: int) -> None:
    pred = _load_predictions(root / PREDICTIONS_FILE) if (root / PREDICTIONS_FILE).is_file() else None
    if (root / POINTS_FILE).is_file():
        pts, cols = read_points_ply(root / POINTS_FILE)
        run.clouds.append(_cloud("points", pts, cols, max_points))
    elif pred is not None and "pts3d" in pred:
        # no confidence-filtered PLY: keep the valid, finite points at or above the median confidence
        conf, valid = pred["conf"], pred.get("valid", np.ones(pred["conf"].shape, bool)).astype(bool)
        mask = valid & np.isfinite(conf) & np.isfinite(pred["pts3d"]).all(-1)
        if mask.any():
            mask &= conf >= np.median(conf[mask])
        cols = pred["images"][mask] if "images" in pred else None
        run.clouds.append(_cloud("points", pred["pts3d"][mask], cols, max_points))
        run.notes.append(f"{POINTS_FILE} absent: points from {PREDICTIONS_FILE} (confidence >= median)")
    if (root / CAMERAS_FILE).is_file():
        run.cameras.extend(_read_cameras(root / CAMERAS_FILE))
    elif pred is not None and "c2w" in pred and "K" in pred:
        S, H, W = pred["conf"].shape
        where = str(root / PREDICTIONS_FILE)
        for i in range(S):
            run.cameras.append(
                Camera(
                    f"view{i}",
                    _matrix(pred["c2w"][i], (4, 4), where),
                    _matrix(pred["K"][i], (3, 3), where),
                    W,
                    H,
                )
            )
    if pred is None:
        return
    S = pred["conf"].shape[0]
    images = pred.get("images")
    if images is not None and len(run.cameras) == S:
        for cam, im in zip(run.cameras, images):
            if im.shape[:2] == (cam.height, cam.width):
                cam.image = np.ascontiguousarray(im, dtype=np.uint8)
    names = [c.name for c in run.cameras] if len(run.cameras) == S else [f"view{i}" for i in range(S)]
    depth = (
        pred["depth"] if "depth" in pred else pred.get("pts3d", np.zeros((*pred["conf"].shape, 3)))[..., 2]
    )
    for i in range(min(S, max_panels) if max_panels > 0 else S):
        d = np.where(np.isfinite(depth[i]), depth[i], 0.0)
        run.panels.append(Panel(names[i], "depth", colorize_depth(d)))
        c = pred["conf"][i].astype(np.float64)
        c = np.log(np.clip(np.where(np.isfinite(c), c, 1.0), 1e-6, None))
        run.panels.append(Panel(names[i], "confidence", colorize(c, cmap="gray")))


def _is_lifted(path: Path) -> bool:
    return is_lifted_dir(path)


def _lift_cameras(folder: Path) -> list[Camera]:
    """The lift's source-scene cameras when that scene is still on disk; else none."""
    try:
        cfg = yaml.safe_load((folder / "config.yaml").read_text()) or {}
        src = Path(cfg["scene"]["path"])
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return []
    if not src.exists():
        return []
    scene = load_scene(src)
    cams = []
    for i in range(len(scene)):
        frame = scene[i]
        c2w = np.linalg.inv(np.asarray(frame.viewmat, dtype=np.float64))
        cams.append(
            Camera(f"{folder.name}/{i}", c2w, np.asarray(frame.K, np.float64), frame.width, frame.height)
        )
    return cams


def _add_lifted(run: RunView, folder: Path, prefix: str, max_points: int) -> None:
    """Gaussian means coloured by SH degree-0 colour and by a 3-component PCA of their latent features."""
    path = folder / GAUSSIANS_FILE
    try:
        t = load_file(str(path))
        means, sh0, feats, opac = t["means"], t["sh0"], t["features"], t["opacities"]
    except (OSError, SafetensorError, KeyError) as e:
        raise Tune3DError(f"{path}: not a feature-Gaussians file ({e})") from None
    n = len(means)
    if means.shape != (n, 3) or sh0.shape != (n, 1, 3) or feats.ndim != 2 or len(feats) != n:
        raise Tune3DError(f"{path}: means/sh0/features shapes disagree")
    keep = 1.0 / (1.0 + np.exp(-opac.astype(np.float64))) > 0.05  # nearly transparent ones draw nothing
    pick = np.flatnonzero(keep)[_subsample(int(keep.sum()), max_points)]
    rgb = np.clip(0.5 + _SH_C0 * sh0[pick, 0], 0.0, 1.0)
    run.clouds.append(_cloud(f"{prefix}gaussians_rgb", means[pick], (rgb * 255 + 0.5).astype(np.uint8), 0))
    if len(pick) >= 2:
        f = torch.from_numpy(np.ascontiguousarray(feats[pick], dtype=np.float32))
        pca = fit_pca(f)
        pc = pca.transform(f.T[None, :, :, None])[0, :, :, 0].T.numpy()  # N,3 in [0,1]
        cols = (pc * 255 + 0.5).astype(np.uint8)
        run.clouds.append(_cloud(f"{prefix}gaussians_feature_pca", means[pick], cols, 0, visible=False))
    cams = _lift_cameras(folder)
    if not cams:
        run.notes.append(f"{folder}: the lift's source scene is not on disk; no cameras shown")
    run.cameras.extend(cams)


def load_run(path: str | os.PathLike, max_points: int = 300_000, max_panels: int = 64) -> RunView:
    """Read a run folder (see the module docstring) into a :class:`RunView`.

    Each cloud keeps at most ``max_points`` points (a seeded random subset; 0 = all); depth/confidence
    panels are made for the first ``max_panels`` views. A folder with no points and no cameras is a
    user error.
    """
    root = Path(path)
    if not root.is_dir():
        raise Tune3DError(f"{root}: run folder not found")
    run = RunView(root)
    if any((root / f).is_file() for f in (POINTS_FILE, CAMERAS_FILE, PREDICTIONS_FILE)):
        _add_reconstruction(run, root, max_points, max_panels)
    if _is_lifted(root):
        _add_lifted(run, root, "", max_points)
    else:
        for sub in sorted(d for d in root.iterdir() if d.is_dir() and _is_lifted(d)):
            _add_lifted(run, sub, f"{sub.name}/", max_points)
    bad = [c.name for c in run.cameras if not c.drawable]
    if bad:
        run.notes.append(f"{len(bad)} camera(s) with non-finite pose or intrinsics not drawn ({bad[0]}, ...)")
    if not any(len(c.points) for c in run.clouds) and not any(c.drawable for c in run.cameras):
        raise Tune3DError(
            f"{root}: no geometry to view (expected {POINTS_FILE}, {CAMERAS_FILE} or {PREDICTIONS_FILE} from "
            "`tune3d reconstruct`, or gaussians.safetensors from `tune3d lift`)"
        )
    return run


def _wxyz(R: np.ndarray) -> np.ndarray:
    x, y, z, w = Rotation.from_matrix(R).as_quat()
    return np.array([w, x, y, z])


def serve(run: RunView, port: int = 8080, host: str = "127.0.0.1"):
    """Start a viser server showing ``run``; returns it (``get_port()`` is the port bound: viser moves
    up from ``port`` when it is taken, ``0`` lets the OS choose). Stop it with ``server.stop()``."""
    import viser

    server = viser.ViserServer(host=host, port=port, verbose=False)
    server.scene.set_up_direction("-y")
    centre, radius = run.extent()
    server.initial_camera.look_at = centre
    server.initial_camera.position = centre + radius * np.array([0.6, -0.9, -2.2])
    server.initial_camera.up = (0.0, -1.0, 0.0)
    # about the spacing of N points spread over the scene's (2 radius)^2 cross-section, within bounds
    n = max(sum(len(c.points) for c in run.clouds), 1)
    point_size = radius * float(np.clip(2.0 / np.sqrt(n), 1 / 400, 1 / 60))
    layers = {}
    for cloud in run.clouds:
        layers[cloud.name] = server.scene.add_point_cloud(
            f"/clouds/{cloud.name}",
            points=cloud.points,
            colors=cloud.colors,
            point_size=point_size,
            point_shape="rounded",
            visible=cloud.visible,
        )
    frusta = []
    for i, cam in enumerate(run.cameras):
        if not cam.drawable:
            continue
        fy = cam.K[1, 1]
        frusta.append(
            server.scene.add_camera_frustum(
                f"/cameras/{i:04d}",
                fov=float(2 * np.arctan2(cam.height / 2, fy)),
                aspect=cam.width / cam.height,
                scale=radius / 10.0,
                thickness=radius / 400.0,
                image=cam.image,
                wxyz=_wxyz(cam.c2w[:3, :3]),
                position=cam.c2w[:3, 3],
                color=(230, 60, 40),
            )
        )
    with server.gui.add_folder("Layers"):
        server.gui.add_markdown(f"**{run.path.name}**: {run.summary()}")
        for name, handle in layers.items():
            box = server.gui.add_checkbox(name, initial_value=handle.visible)
            box.on_update(lambda ev, h=handle: setattr(h, "visible", ev.target.value))
        if frusta:
            box = server.gui.add_checkbox("cameras", initial_value=True)

            @box.on_update
            def _(ev) -> None:
                for f in frusta:
                    f.visible = ev.target.value

        for note in run.notes:
            server.gui.add_markdown(f"_{note}_")
    if run.panels:
        views = list(dict.fromkeys(p.view for p in run.panels))
        by = {(p.view, p.kind): p.image for p in run.panels}
        with server.gui.add_folder("Depth / confidence"):
            pick = server.gui.add_dropdown("view", tuple(views), initial_value=views[0])
            shown = {
                k: server.gui.add_image(by[(views[0], k)], label=k)
                for k in ("depth", "confidence")
                if (views[0], k) in by
            }

            @pick.on_update
            def _(ev) -> None:
                for k, h in shown.items():
                    if (ev.target.value, k) in by:
                        h.image = by[(ev.target.value, k)]

    return server


def url(server) -> str:
    return f"http://{server.get_host()}:{server.get_port()}"
