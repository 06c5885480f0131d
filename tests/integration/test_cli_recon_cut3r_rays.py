"""``tune3d reconstruct --model cut3r_* --poses``: known cameras go into CUT3R's ray-map input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from cli_helpers import one_error_line as _one_error_line
from data_helpers import synth_image_folder


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("recon_cut3r_rays")
    sc, folder = synth_image_folder(root, views=4, seed=2)
    cams = root / "known.json"
    frames = [
        {"c2w": f.c2w.tolist(), "K": f.K.tolist(), "width": f.width, "height": f.height} for f in sc.frames
    ]
    cams.write_text(json.dumps({"frames": frames}))
    return {"root": root, "folder": folder, "scene": sc, "cams": cams}


FAST = ["--allow-random-init", "--size", "64", "--conf-threshold", "1", "--no-previews"]


def test_cut3r_takes_known_cameras(scene, cli):
    sc = scene["scene"]
    plain, known = scene["root"] / "plain", scene["root"] / "known"
    r = cli("reconstruct", scene["folder"], "--model", "cut3r_tiny", *FAST, "--out", plain)
    assert r.returncode == 0, r.stderr
    r = cli(
        "reconstruct",
        scene["folder"],
        "--model",
        "cut3r_tiny",
        *FAST,
        "--poses",
        scene["cams"],
        "--out",
        known,
    )
    assert r.returncode == 0, r.stderr
    cfg = yaml.safe_load((known / "config.yaml").read_text())
    assert cfg["camera_source"] == "known" and cfg["poses"] == str(scene["cams"])
    got = json.loads((known / "cameras.json").read_text())["frames"]
    np.testing.assert_allclose([f["c2w"] for f in got], sc.c2w, atol=1e-6)
    np.testing.assert_allclose([f["K"] for f in got], [f.K for f in sc.frames], atol=1e-5)
    # the model saw the cameras: its own-frame depth differs from the image-only run (same random init)
    a, b = np.load(plain / "predictions.npz"), np.load(known / "predictions.npz")
    assert np.isfinite(b["pts3d"]).all() and np.abs(a["depth"] - b["depth"]).max() > 1e-4

    # --intrinsics replaces the file's K
    fx, fy, cx, cy = sc.frames[0].K[[0, 1, 0, 1], [0, 1, 2, 2]]
    (scene["root"] / "K.txt").write_text(f"{fx * 1.1} {fy * 1.1} {cx} {cy}\n")
    out = scene["root"] / "known_K"
    r = cli("reconstruct", scene["folder"], "--model", "cut3r_tiny", *FAST, "--poses", scene["cams"],
            "--intrinsics", scene["root"] / "K.txt", "--out", out)  # fmt: skip
    assert r.returncode == 0, r.stderr
    got = json.loads((out / "cameras.json").read_text())["frames"]
    np.testing.assert_allclose(got[2]["K"][0][0], fx * 1.1, rtol=1e-6)


def test_cut3r_known_camera_bad_input(scene, cli, tmp_path):
    folder, out = scene["folder"], tmp_path / "out"
    three = tmp_path / "three.json"
    frames = json.loads(scene["cams"].read_text())["frames"]
    three.write_text(json.dumps({"frames": frames[:3]}))
    _one_error_line(
        cli("reconstruct", folder, "--model", "cut3r_tiny", *FAST, "--poses", three, "--out", out),
        "has 3 views but 4 images",
    )
    no_k = tmp_path / "no_k.json"
    no_k.write_text(json.dumps({"frames": [{"c2w": f["c2w"]} for f in frames]}))
    _one_error_line(
        cli("reconstruct", folder, "--model", "cut3r_tiny", *FAST, "--poses", no_k, "--out", out),
        "needs intrinsics",
    )
    k_txt = tmp_path / "K.txt"
    k_txt.write_text("50 50 32 24\n")
    _one_error_line(
        cli("reconstruct", folder, "--model", "cut3r_tiny", *FAST, "--intrinsics", k_txt, "--out", out),
        "needs --poses as well",
    )
    _one_error_line(
        cli(
            "reconstruct",
            folder,
            "--model",
            "vggt_tiny",
            "--allow-random-init",
            "--size",
            "56",
            "--poses",
            scene["cams"],
            "--out",
            out,
        ),  # fmt: skip
        "known cameras are used by",
    )
    assert not out.exists()
