"""``tune3d view``: loading run folders into arrays, serving the page, and what headless Chromium shows."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tune3d.errors import Tune3DError
from tune3d.viz.viewer import RunView, load_run, serve, url

CHROMIUM = Path("/usr/bin/chromium")
S, H, W = 3, 24, 32


def _reconstruction(out: Path) -> Path:
    """A tiny reconstruction written by the real writer: a wavy wall 2 units ahead of three cameras."""
    from tune3d.recon.export import export_reconstruction
    from tune3d.recon.inference import Reconstruction

    u, v = np.meshgrid(np.arange(W), np.arange(H))
    K = np.array([[30.0, 0, W / 2], [0, 30.0, H / 2], [0, 0, 1]])
    c2w = np.repeat(np.eye(4)[None], S, 0)
    c2w[:, 0, 3] = [0.0, 0.2, 0.4]
    depth = np.broadcast_to(2.0 + 0.3 * np.sin(u / 5.0), (S, H, W))
    pts = np.stack([(u - K[0, 2]) / K[0, 0] * depth, (v - K[1, 2]) / K[1, 1] * depth, depth], -1)
    pts = pts + c2w[:, None, None, :3, 3]
    images = np.zeros((S, H, W, 3), np.uint8)
    images[..., 0] = 255 * (u % 8 < 4)
    images[..., 1] = 200
    conf = np.where(v < H // 2, 5.0, 2.0)[None].repeat(S, 0)  # bottom half under the PLY's threshold 3
    recon = Reconstruction(
        pts.astype(np.float32), conf.astype(np.float32), depth.astype(np.float32), None, c2w,
        np.repeat(K[None], S, 0), "model", [],
    )  # fmt: skip
    export_reconstruction(out, recon, images, np.ones((S, H, W), bool), [f"im{i}.png" for i in range(S)])
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    from tune3d.data import write_scene
    from tune3d.data.synth import generate_scene
    from tune3d.fit3d.lifted import write_random_lifted

    root = tmp_path_factory.mktemp("view")
    out = {"recon": _reconstruction(root / "recon")}
    write_scene(generate_scene(0, num_views=4, height=24, width=32, num_points=600), root / "scene")
    out["scene"] = root / "scene"
    out["lifted"] = write_random_lifted(root / "scene", root / "lifted", 16, num_gaussians=300)
    many = root / "many"
    for i in range(2):
        write_random_lifted(root / "scene", many / f"s{i}", 16, num_gaussians=100 + 50 * i, seed=i)
    out["many"] = many
    (root / "empty").mkdir()
    (root / "empty" / "notes.txt").write_text("nothing to see")
    out["empty"] = root / "empty"
    return out


# ------------------------------------------------------------------------------------------------ loading
def test_reconstruction_folder_loads_ply_cameras_and_panels(runs):
    run = load_run(runs["recon"])
    (cloud,) = run.clouds
    assert len(cloud.points) == S * H * W // 2  # the confident top halves the writer put in points.ply
    assert cloud.points.dtype == np.float32 and cloud.colors.dtype == np.uint8
    assert {tuple(c) for c in cloud.colors} == {(255, 200, 0), (0, 200, 0)}
    np.testing.assert_allclose(np.median(cloud.points[:, 2]), 2.0, atol=0.35)
    assert [c.name for c in run.cameras] == ["im0.png", "im1.png", "im2.png"]
    np.testing.assert_allclose(run.cameras[2].c2w[:3, 3], [0.4, 0, 0])
    assert run.cameras[0].K[0, 0] == 30.0 and (run.cameras[0].width, run.cameras[0].height) == (W, H)
    assert run.cameras[1].image.shape == (H, W, 3)  # the input image is drawn on the frustum
    assert [(p.view, p.kind) for p in run.panels[:2]] == [("im0.png", "depth"), ("im0.png", "confidence")]
    assert len(run.panels) == 2 * S and run.panels[0].image.shape == (H, W, 3)
    assert len(np.unique(run.panels[0].image.reshape(-1, 3), axis=0)) > 3  # the wavy depth is coloured


def test_predictions_only_folder_uses_pointmaps_and_cameras(runs, tmp_path):
    shutil.copy(runs["recon"] / "predictions.npz", tmp_path / "predictions.npz")
    run = load_run(tmp_path, max_points=100)
    assert len(run.clouds[0].points) == 100  # subsampled from the points at or above median confidence
    assert len(run.cameras) == S and run.cameras[0].image is not None
    np.testing.assert_allclose(run.cameras[1].c2w[:3, 3], [0.2, 0, 0])
    assert any("predictions.npz" in n for n in run.notes)


def test_lifted_folder_gives_rgb_and_feature_pca_layers(runs):
    from safetensors.numpy import load_file

    run = load_run(runs["lifted"])
    rgb, pca = run.clouds
    assert (rgb.name, pca.name) == ("gaussians_rgb", "gaussians_feature_pca") and not pca.visible
    t = load_file(str(runs["lifted"] / "gaussians.safetensors"))
    np.testing.assert_allclose(rgb.points, t["means"], atol=1e-6)  # all opaque (logit 2): none dropped
    expected = np.clip(0.5 + 0.28209479 * t["sh0"][:, 0], 0, 1) * 255
    assert np.abs(rgb.colors.astype(float) - expected).max() <= 1.0
    assert len(np.unique(pca.colors, axis=0)) > 50  # random latents spread over the PCA colour cube
    assert len(run.cameras) == 4  # the source scene is still on disk


def test_folder_of_lifted_scenes_and_missing_source_scene(runs, tmp_path):
    run = load_run(runs["many"])
    assert [c.name for c in run.clouds] == [
        "s0/gaussians_rgb", "s0/gaussians_feature_pca", "s1/gaussians_rgb", "s1/gaussians_feature_pca",
    ]  # fmt: skip
    assert [len(c.points) for c in run.clouds] == [100, 100, 150, 150]
    moved = tmp_path / "lifted"
    shutil.copytree(runs["lifted"], moved)
    cfg = (moved / "config.yaml").read_text().replace(str(runs["scene"].resolve()), str(tmp_path / "gone"))
    (moved / "config.yaml").write_text(cfg)
    run = load_run(moved)
    assert run.cameras == [] and any("not on disk" in n for n in run.notes) and len(run.clouds) == 2


def test_folder_without_geometry_is_one_line_exit_2(runs, cli):
    with pytest.raises(Tune3DError, match="no geometry to view"):
        load_run(runs["empty"])
    r = cli("view", str(runs["empty"]), "--port", "0")
    assert r.returncode == 2
    assert r.stderr.startswith("tune3d: error:") and r.stderr.count("\n") == 1 and "no geometry" in r.stderr
    assert cli("view", str(runs["empty"] / "nope")).returncode == 2


def test_malformed_cameras_json_is_a_user_error(tmp_path):
    frame = {"name": "a.png", "width": 4, "height": 3, "c2w": [[1, 0]], "K": np.eye(3).tolist()}
    (tmp_path / "cameras.json").write_text(json.dumps({"frames": [frame]}))
    with pytest.raises(Tune3DError, match=r"cameras.json: frame 0: expected a 4x4 matrix"):
        load_run(tmp_path)


def test_non_finite_cameras_are_listed_not_drawn(runs, tmp_path):
    # an untrained model's camera head can predict an infinite focal length
    shutil.copytree(runs["recon"], tmp_path / "run")
    cams = json.loads((tmp_path / "run" / "cameras.json").read_text())
    cams["frames"][1]["K"][0][0] = float("inf")
    (tmp_path / "run" / "cameras.json").write_text(json.dumps(cams))
    run = load_run(tmp_path / "run")
    assert [c.drawable for c in run.cameras] == [True, False, True]
    assert any("1 camera(s) with non-finite" in n for n in run.notes)
    server = serve(run, port=0)
    try:
        assert url(server).startswith("http://127.0.0.1:")
    finally:
        server.stop()


# ------------------------------------------------------------------------------------------------ serving
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_serves_the_page_until_ctrl_c(runs):
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    cmd = [sys.executable, "-m", "tune3d", "view", str(runs["recon"]), "--port", str(port)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = []
        while not any(line.startswith("open http") for line in lines):
            line = p.stdout.readline()
            assert line, f"viewer exited early: {p.stderr.read()}"
            lines.append(line)
        page = lines[-1].split()[1]  # the port asked for, or the next free one if it was taken meanwhile
        assert page.startswith("http://127.0.0.1:") and int(page.rsplit(":", 1)[1]) >= port
        with urllib.request.urlopen(page + "/", timeout=10) as resp:
            assert resp.status == 200 and b"<html" in resp.read().lower()
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=20) == 130
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def _screenshots(pages: dict[str, str], folder: Path) -> dict[str, np.ndarray]:
    """Headless-Chromium screenshots (800x600) of several pages, taken concurrently."""
    from PIL import Image

    procs = {}
    for name, page in pages.items():
        cmd = [
            str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={folder / (name + '_profile')}", f"--screenshot={folder / (name + '.png')}",
            "--window-size=800,600", "--virtual-time-budget=8000", page,
        ]  # fmt: skip
        procs[name] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shots = {}
    for name, p in procs.items():
        try:
            p.wait(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        out = folder / (name + ".png")
        assert out.is_file(), f"chromium wrote no screenshot of {pages[name]}"
        shots[name] = np.asarray(Image.open(out).convert("RGB")).astype(np.int16)
    return shots


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_headless_chromium_screenshot_shows_the_scene(runs, tmp_path):
    scene = serve(load_run(runs["recon"]), port=_free_port())
    empty = serve(RunView(tmp_path), port=_free_port())
    try:
        shots = _screenshots({"scene": url(scene), "empty": url(empty)}, tmp_path)
    finally:
        scene.stop()
        empty.stop()
    shot, blank = shots["scene"], shots["empty"]
    assert shot.shape == blank.shape == (600, 800, 3)
    changed = np.abs(shot - blank).max(-1) > 40
    changed[:, 460:] = False  # the control panel (with its coloured depth images) sits on the right
    assert changed.mean() > 0.02, f"only {changed.mean():.4f} of the pixels differ from an empty scene"
    # the wall's stripes, green (0,200,0) and yellow (255,200,0), where the empty scene is not; by hue,
    # since a screenshot can catch the scene fading in (washed-out colours)
    r, g, b = shot[..., 0], shot[..., 1], shot[..., 2]
    green = changed & (g - r > 30) & (g - b > 30)
    yellow = changed & (r - b > 60) & (g - b > 40) & (np.abs(r - g) < 60)
    assert green.sum() > 200 and yellow.sum() > 200, (green.sum(), yellow.sum())
