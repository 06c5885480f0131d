"""``tune3d reconstruct`` on many images: global alignment, pair graphs, known cameras, COLMAP/glb export."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml
from cli_helpers import one_error_line as _one_error_line
from data_helpers import synth_image_folder
from PIL import Image


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("recon_global")
    sc, folder = synth_image_folder(root, views=5, seed=1)
    return {"root": root, "folder": folder, "scene": sc}


FAST = ["--allow-random-init", "--size", "64", "--conf-threshold", "1", "--no-previews"]


def test_global_alignment_route_and_exports_read_back(scene, cli):
    import trimesh

    from tune3d.data.readers.colmap import read_colmap

    out = scene["root"] / "dust3r_global"
    r = cli("reconstruct", scene["folder"], "--model", "dust3r_tiny", *FAST, "--graph", "swin-2",
            "--niter", "20", "--export", "colmap,glb", "--out", out)  # fmt: skip
    assert r.returncode == 0, r.stderr
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["camera_source"] == "global_alignment" and cfg["graph"] == "swin-2"
    assert len(cfg["pairs"]) == 2 * 10  # 5 views, window 2, cyclic: 10 unordered pairs, both orders
    pred = np.load(out / "predictions.npz")
    S, H, W, _ = pred["pts3d"].shape
    assert S == 5 and np.isfinite(pred["pts3d"]).all() and pred["c2w"].shape == (5, 4, 4)
    frames = json.loads((out / "cameras.json").read_text())["frames"]
    assert len(frames) == 5
    c2w = np.array([f["c2w"] for f in frames])
    K = np.array([f["K"] for f in frames])
    np.testing.assert_allclose(c2w[0], np.eye(4), atol=1e-5)
    rot = c2w[:, :3, :3]
    np.testing.assert_allclose(rot @ rot.transpose(0, 2, 1), np.broadcast_to(np.eye(3), (5, 3, 3)), atol=1e-5)

    # the COLMAP model reads back (binary, then text alone) with the same cameras
    info = cli("data", "info", "--json", out / "colmap")
    assert info.returncode == 0, info.stderr
    s = json.loads(info.stdout.strip().splitlines()[0])
    assert s["num_frames"] == 5 and (s["width"], s["height"]) == (W, H) and s["num_points"] > 0
    text_only = scene["root"] / "colmap_text"
    shutil.copytree(out / "colmap", text_only)
    for p in (text_only / "sparse" / "0").glob("*.bin"):
        p.unlink()
    for folder in (out / "colmap", text_only):
        sc = read_colmap(folder)
        assert [f.name for f in sc.frames] == [f"view{k}.png" for k in range(5)]
        np.testing.assert_allclose(np.stack([f.c2w for f in sc.frames]), c2w, atol=1e-6)
        np.testing.assert_allclose(np.stack([f.K for f in sc.frames]), K, atol=1e-6)
        assert sc.frames[2].image().shape == (H, W, 3)  # images referenced by name, next to the model

    glb = trimesh.load(out / "scene.glb")
    kinds = sorted(type(g).__name__ for g in glb.geometry.values())
    assert kinds.count("Trimesh") == 5 and kinds.count("PointCloud") == 1

    lift = scene["root"] / "lift"
    r = cli("lift", out / "colmap", "--backbone", "dinov2_vits14_tiny", "--allow-random-init",
            "--latent-dim", "8", "--feature-resolution", "28x42", "--init-points", "400",
            "--max-gaussians", "600", "-q", "--iters", "3", "--holdout-every", "2",
            "--out", lift)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads((lift / "metrics.json").read_text())["num_gaussians"] > 0


@pytest.mark.parametrize("model", ["vggt_tiny", "mast3r_tiny"])
def test_every_family_writes_the_same_outputs(scene, cli, model):
    out = scene["root"] / f"fam_{model}"
    size = "56" if model == "vggt_tiny" else "64"
    args = [*FAST[:1], "--size", size, *FAST[3:]]
    r = cli("reconstruct", *sorted(scene["folder"].iterdir())[:3], "--model", model, *args,
            "--niter", "5", "--export", "colmap,glb", "--out", out)  # fmt: skip
    assert r.returncode == 0, r.stderr
    frames = json.loads((out / "cameras.json").read_text())["frames"]
    # a random-init camera head may predict an infinite focal: then K is named invalid instead of written
    assert len(frames) == 3 and all(
        np.shape(f["c2w"]) == (4, 4) and (np.shape(f.get("K")) == (3, 3) or f.get("invalid") == ["K"])
        for f in frames
    )
    for name in ("predictions.npz", "points.ply", "scene.glb", "colmap/sparse/0/images.bin"):
        assert (out / name).is_file(), name


def test_known_cameras_are_kept(scene, cli):
    sc = scene["scene"]
    cams = scene["root"] / "known.json"
    frames = [
        {"c2w": f.c2w.tolist(), "K": f.K.tolist(), "width": f.width, "height": f.height} for f in sc.frames
    ]
    cams.write_text(json.dumps({"frames": frames}))
    out = scene["root"] / "known"
    r = cli("reconstruct", scene["folder"], "--model", "dust3r_tiny", *FAST, "--graph", "oneref-0",
            "--niter", "5", "--poses", cams, "--out", out)  # fmt: skip
    assert r.returncode == 0, r.stderr
    got = json.loads((out / "cameras.json").read_text())["frames"]
    np.testing.assert_allclose([f["c2w"] for f in got], sc.c2w, atol=1e-6)
    # 64x48 input from 64x48 frames: the intrinsics carry over unchanged
    np.testing.assert_allclose([f["K"] for f in got], [f.K for f in sc.frames], atol=1e-5)

    fx, fy, cx, cy = sc.frames[0].K[[0, 1, 0, 1], [0, 1, 2, 2]]
    (scene["root"] / "K.txt").write_text(f"{fx} {fy} {cx} {cy}\n")
    out = scene["root"] / "known_K"
    r = cli("reconstruct", scene["folder"], "--model", "dust3r_tiny", *FAST, "--graph", "swin-1",
            "--niter", "5", "--intrinsics", scene["root"] / "K.txt", "--out", out)  # fmt: skip
    assert r.returncode == 0, r.stderr
    got = json.loads((out / "cameras.json").read_text())["frames"]
    np.testing.assert_allclose([f["K"] for f in got], [sc.frames[0].K] * 5, atol=1e-5)


def test_bad_input_is_one_line_and_writes_nothing(scene, cli, tmp_path):
    folder, out = scene["folder"], tmp_path / "out"
    one = folder / "view0.png"
    _one_error_line(
        cli("reconstruct", one, "--model", "dust3r_tiny", *FAST, "--out", out), "at least two images"
    )
    _one_error_line(
        cli("reconstruct", folder, "--model", "dust3r_tiny", *FAST, "--graph", "ring", "--out", out),
        "--graph",
    )
    _one_error_line(
        cli("reconstruct", folder, "--model", "dust3r_tiny", *FAST, "--export", "obj", "--out", out),
        "--export",
    )
    cams = tmp_path / "three.json"
    cams.write_text(json.dumps({"frames": [{"c2w": np.eye(4).tolist()}] * 3}))
    _one_error_line(
        cli("reconstruct", folder, "--model", "dust3r_tiny", *FAST, "--poses", cams, "--out", out),
        "has 3 views but 5 images",
    )
    bad_k = tmp_path / "K.txt"
    bad_k.write_text("500 500 320\n")
    _one_error_line(
        cli("reconstruct", folder, "--model", "dust3r_tiny", *FAST, "--intrinsics", bad_k, "--out", out),
        "expected a 3x3 matrix",
    )
    wide = tmp_path / "wide.png"
    Image.fromarray(np.zeros((32, 96, 3), np.uint8)).save(wide)
    _one_error_line(
        cli("reconstruct", one, wide, "--model", "dust3r_tiny", *FAST, "--out", out), "one aspect ratio"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_error_line(cli("reconstruct", empty, "--model", "dust3r_tiny", *FAST, "--out", out), "no images")
    assert not out.exists()


def _hub_cache(root, repo_id: str, files: dict[str, bytes]):
    """A Hugging Face hub cache laid out as ``huggingface_hub`` writes it: blobs by sha256, a snapshot
    folder of relative symlinks, ``refs/main`` naming the snapshot's commit."""
    import hashlib

    repo = root / ("models--" + repo_id.replace("/", "--"))
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    snap = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True)
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for name, data in files.items():
        blob = hashlib.sha256(data).hexdigest()
        (repo / "blobs" / blob).write_bytes(data)
        (snap / name).symlink_to(f"../../blobs/{blob}")
    return snap


def test_weights_as_hugging_face_id_from_the_cache(scene, cli, tmp_path, monkeypatch):
    from safetensors.torch import save_model

    from tune3d.recon import create_model

    local = tmp_path / "local"
    local.mkdir()
    save_model(create_model("dust3r_tiny", allow_random_init=True), str(local / "model.safetensors"))
    files = {
        "model.safetensors": (local / "model.safetensors").read_bytes(),
        "model.json": b'{"model": "dust3r_tiny"}',
    }
    _hub_cache(tmp_path / "hub", "tune3d-test/dust3r-tiny", files)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    images = sorted(scene["folder"].iterdir())[:2]
    args = ["--size", "64", "--conf-threshold", "1", "--no-previews", "--align", "none"]
    r = cli(
        "reconstruct", *images, "--weights", "tune3d-test/dust3r-tiny", *args, "--out", tmp_path / "hub_run"
    )
    assert r.returncode == 0, r.stderr
    assert yaml.safe_load((tmp_path / "hub_run" / "config.yaml").read_text())["model"] == "dust3r_tiny"
    r = cli("reconstruct", *images, "--model", "dust3r_tiny", "--weights", local / "model.safetensors", *args,
            "--out", tmp_path / "file_run")  # fmt: skip
    assert r.returncode == 0, r.stderr
    a, b = (
        np.load(tmp_path / "hub_run" / "predictions.npz"),
        np.load(tmp_path / "file_run" / "predictions.npz"),
    )
    np.testing.assert_array_equal(a["pts3d"], b["pts3d"])  # the same weights either way
    _one_error_line(
        cli(
            "reconstruct",
            *images,
            "--model",
            "dust3r_vitl_512_dpt",
            "--weights",
            "naver/not-cached",
            *args,
            "--out",
            tmp_path / "x",
        ),  # fmt: skip
        "not in the Hugging Face cache",
    )
