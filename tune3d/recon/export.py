"""Write a :class:`~tune3d.recon.inference.Reconstruction` to disk.

- ``predictions.npz``: ``pts3d`` (S,H,W,3, image 1's camera frame), ``conf`` (S,H,W), ``images`` (S,H,W,3
  uint8, the model inputs), ``valid`` (S,H,W, False on padding), and where available ``depth``/``depth_conf``
  (S,H,W, own-frame z), ``c2w`` (S,4,4 OpenCV camera-to-world, image 1 = identity) and ``K`` (S,3,3 pixels).
- ``points.ply``: the confident points coloured by their pixels (binary PLY; x, y, z float32 and red,
  green, blue uchar), which MeshLab/CloudCompare/Open3D open.
- ``cameras.json``: per image ``name``, ``c2w``, ``K``, ``width``, ``height`` and the source of the cameras.
- ``previews/``: per image the input, its depth (turbo) and confidence (gray) as PNG.

Units are the model's: metres for metric models (MASt3R), an arbitrary common scale otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tune3d.data.ply import write_points_ply
from tune3d.errors import Tune3DError
from tune3d.io import atomic_path, write_json, write_yaml
from tune3d.recon.export_colmap import export_colmap
from tune3d.recon.export_glb import export_glb
from tune3d.recon.reconstruct_config import ReconstructConfig, run_record
from tune3d.viz.images import colorize, colorize_depth, save_png
from tune3d.viz.points import render_points


def confidence_mask(conf: np.ndarray, threshold: float, valid: np.ndarray | None = None) -> np.ndarray:
    """``conf > threshold`` (and finite, and not padding)."""
    m = np.isfinite(conf) & (conf > threshold)
    if valid is not None:
        m &= valid.astype(bool)
    return m


def sparse_cloud_warning(
    conf: np.ndarray, valid: np.ndarray | None, threshold: float, min_fraction: float = 0.01
) -> str | None:
    """One line saying so when under ``min_fraction`` of the (valid) points pass ``conf > threshold``,
    with the confidence range seen and a threshold that keeps half of them; ``None`` otherwise."""
    keep = confidence_mask(conf, threshold, valid)
    c = conf[valid.astype(bool)] if valid is not None else conf.reshape(-1)
    c = c[np.isfinite(c)]
    if c.size == 0 or keep.sum() >= min_fraction * c.size:
        return None
    return (
        f"only {int(keep.sum())} of {c.size} points have confidence > {threshold:g} (confidences seen: "
        f"{c.min():.3g} to {c.max():.3g}); lower --conf-threshold, e.g. --conf-threshold {np.median(c):.3g} "
        "keeps half"
    )


def write_predictions(path: str | os.PathLike, recon, images: np.ndarray, valid: np.ndarray) -> Path:
    arrays = {"pts3d": recon.pts3d, "conf": recon.conf, "images": images, "valid": valid.astype(bool)}
    for key in ("depth", "depth_conf", "c2w", "K"):
        value = getattr(recon, key)
        if value is not None:
            arrays[key] = value
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # np.savez would append ".npz" to a temporary name without it
            np.savez_compressed(f, **arrays)
    return path


def write_point_cloud(
    path: str | os.PathLike,
    recon,
    images: np.ndarray,
    valid: np.ndarray,
    conf_threshold: float = 3.0,
) -> int:
    """Coloured PLY of the points with ``conf > conf_threshold``; returns the number of points written."""
    mask = confidence_mask(recon.conf, conf_threshold, valid) & np.isfinite(recon.pts3d).all(-1)
    write_points_ply(path, recon.pts3d[mask], images[mask])
    return int(mask.sum())


def write_point_cloud_preview(
    path: str | os.PathLike, recon, images: np.ndarray, valid: np.ndarray, conf_threshold: float = 3.0
) -> Path:
    """PNG of the confidence-filtered coloured point cloud from an oblique virtual camera."""
    mask = confidence_mask(recon.conf, conf_threshold, valid) & np.isfinite(recon.pts3d).all(-1)
    return save_png(render_points(recon.pts3d[mask], images[mask]), path)


def nonfinite_cameras(recon) -> list[int]:
    """Views whose predicted ``c2w`` or ``K`` has a NaN or infinite entry."""
    bad: set[int] = set()
    for m in (recon.c2w, recon.K):
        if m is not None:
            bad |= {int(i) for i in np.flatnonzero(~np.isfinite(np.asarray(m)).reshape(len(m), -1).all(1))}
    return sorted(bad)


def write_cameras(path: str | os.PathLike, recon, names: list[str], height: int, width: int) -> None:
    """``cameras.json``. A predicted ``c2w`` or ``K`` that is not finite (an untrained camera head can give
    an infinite focal; see :func:`nonfinite_cameras`) is left out and named in the view's ``"invalid"``
    list: JSON has no Infinity, and readers of the file (``--poses``, the viewer) then see it is missing."""
    cams = []
    for i, name in enumerate(names):
        cam: dict = {"name": name, "width": width, "height": height}
        for key, mats in (("c2w", recon.c2w), ("K", recon.K)):
            if mats is None:
                continue
            m = np.asarray(mats[i], dtype=np.float64)
            if np.isfinite(m).all():
                cam[key] = m.tolist()
            else:
                cam.setdefault("invalid", []).append(key)
        cams.append(cam)
    write_json(path, {"convention": "opencv_c2w", "source": recon.camera_source, "frames": cams})


def write_previews(folder: str | os.PathLike, recon, images: np.ndarray, names: list[str]) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i, name in enumerate(names):
        stem = f"{i:03d}_{name}"
        written.append(save_png(images[i], folder / f"{stem}_image.png"))
        depth = recon.depth[i] if recon.depth is not None else recon.pts3d[i, ..., 2]
        written.append(
            save_png(colorize_depth(np.where(np.isfinite(depth), depth, 0)), folder / f"{stem}_depth.png")
        )
        written.append(save_png(colorize(np.log(recon.conf[i]), cmap="gray"), folder / f"{stem}_conf.png"))
    return written


def export_reconstruction(
    out: str | os.PathLike,
    recon,
    images: np.ndarray,
    valid: np.ndarray,
    names: list[str],
    conf_threshold: float = 3.0,
    previews: bool = True,
) -> dict:
    """Write every output file into ``out``; returns a summary (counts and file names)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    S, H, W = recon.conf.shape
    write_predictions(out / "predictions.npz", recon, images, valid)
    n_points = write_point_cloud(out / "points.ply", recon, images, valid, conf_threshold)
    files = ["predictions.npz", "points.ply"]
    if recon.c2w is not None or recon.K is not None:
        write_cameras(out / "cameras.json", recon, names, H, W)
        files.append("cameras.json")
    if previews:
        write_previews(out / "previews", recon, images, names)
        write_point_cloud_preview(out / "previews" / "points.png", recon, images, valid, conf_threshold)
        files.append("previews/")
    return {"views": S, "height": H, "width": W, "points": n_points, "files": files}


def write_reconstruct_run(
    out: str | os.PathLike,
    recon,
    prep,
    cfg: ReconstructConfig,
    conf_threshold: float,
    *,
    model: str,
    num_views: int,
    images: list[str | os.PathLike],
    weights: str | os.PathLike | None = None,
    adapter: str | os.PathLike | None = None,
    poses: str | os.PathLike | None = None,
    intrinsics: str | os.PathLike | None = None,
) -> dict:
    """Every file of one ``tune3d reconstruct`` run in ``out``: :func:`export_reconstruction`, the
    ``cfg.export`` extras, then ``config.yaml`` (what ``--config`` reads back: the inputs, what was run and
    ``cfg`` with the threshold applied). ``prep``: the :class:`~tune3d.recon.inference.Prepared` inputs;
    ``num_views``: the model's (2 = pairwise); ``images``: the input paths. Returns the summary of
    :func:`export_reconstruction` (with the extras in ``files``)."""
    valid = prep.valid.numpy()
    summary = export_reconstruction(out, recon, prep.colors, valid, prep.names, conf_threshold, cfg.previews)
    summary["files"] += export_extras(
        out, recon, prep.colors, valid, prep.names, conf_threshold, parse_exports(cfg.export)
    )
    record = run_record(
        cfg,
        conf_threshold,
        model=model,
        weights=str(weights) if weights else None,
        adapter=str(adapter) if adapter else None,
        images=[str(p) for p in images],
        camera_source=recon.camera_source,
        pairs=[list(p) for p in recon.pairs],
        alignment=cfg.align if num_views == 2 else "one_forward",  # what was run
        poses=str(poses) if poses else None,
        intrinsics=str(intrinsics) if intrinsics else None,
    )
    write_yaml(Path(out) / "config.yaml", record)
    return summary


EXPORTS = ("colmap", "glb")


def parse_exports(spec: str) -> list[str]:
    """``"colmap,glb"`` -> ``["colmap", "glb"]``; an unknown name is a user error."""
    names = [s.strip().lower() for s in spec.split(",") if s.strip()]
    bad = [n for n in names if n not in EXPORTS]
    if bad:
        raise Tune3DError(f"--export {spec!r}: unknown export {bad[0]!r}; expected {', '.join(EXPORTS)}")
    return list(dict.fromkeys(names))


def export_extras(
    out: str | os.PathLike,
    recon,
    images: np.ndarray,
    valid: np.ndarray,
    names: list[str],
    conf_threshold: float,
    exports: list[str],
) -> list[str]:
    """``colmap`` -> ``out/colmap/`` (:mod:`tune3d.recon.export_colmap`), ``glb`` -> ``out/scene.glb``
    (:mod:`tune3d.recon.export_glb`), from the confident points; returns the names written."""
    if not exports:
        return []
    if recon.c2w is None or recon.K is None:
        raise Tune3DError(f"{out}: this model predicts no cameras; --export needs them")
    out = Path(out)
    S, H, W = recon.conf.shape
    mask = confidence_mask(recon.conf, conf_threshold, valid) & np.isfinite(recon.pts3d).all(-1)
    points, colors = recon.pts3d[mask], images[mask]
    written = []
    if "colmap" in exports:
        export_colmap(out / "colmap", recon.c2w, recon.K, images, names, points, colors)
        written.append("colmap/")
    if "glb" in exports:
        export_glb(out / "scene.glb", points, colors, recon.c2w, recon.K, H, W)
        written.append("scene.glb")
    return written
