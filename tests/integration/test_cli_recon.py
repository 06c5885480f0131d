"""End-to-end ``tune3d reconstruct`` / ``train-recon`` / ``eval-recon`` on tiny synthetic data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def tune3d(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "tune3d", *args], capture_output=True, text=True, env=env)


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> dict[str, Path]:
    from PIL import Image

    from tune3d.data.synth import synth_dataset

    root = tmp_path_factory.mktemp("recon")
    scenes = synth_dataset(root / "data", scenes=1, views=8, resolution=(48, 64), seed=0, num_points=500)
    from tune3d.data import load_scene

    scene = load_scene(scenes[0])
    images = []
    for k in range(3):
        p = root / f"img{k}.png"
        Image.fromarray(scene[k].image()).save(p)
        images.append(p)
    return {"root": root, "scene": scenes[0], "data": root / "data", "images": images}


@pytest.mark.parametrize("model,size", [("vggt_tiny", "56"), ("dust3r_tiny", "64")])
def test_reconstruct_writes_valid_files(synth, model, size):
    from plyfile import PlyData

    out = synth["root"] / f"rec_{model}"
    imgs = [str(p) for p in synth["images"]]
    # random init: confidences are barely above 1, so keep every point
    flags = ["--model", model, "--allow-random-init", "--size", size, "--conf-threshold", "1"]
    r = tune3d("reconstruct", *imgs, *flags, "--out", str(out))
    assert r.returncode == 0, r.stderr
    pred = np.load(out / "predictions.npz")
    S, H, W, _ = pred["pts3d"].shape
    assert S == 3 and pred["conf"].shape == (S, H, W) and pred["depth"].shape == (S, H, W)
    assert pred["images"].dtype == np.uint8 and np.isfinite(pred["pts3d"]).all()
    assert H % (14 if model == "vggt_tiny" else 16) == 0
    vertex = PlyData.read(str(out / "points.ply"))["vertex"]
    props = {p.name: p.val_dtype for p in vertex.properties}
    assert props == {"x": "f4", "y": "f4", "z": "f4", "red": "u1", "green": "u1", "blue": "u1"}
    assert 0 < vertex.count <= S * H * W
    cams = json.loads((out / "cameras.json").read_text())
    assert len(cams["frames"]) == 3
    np.testing.assert_allclose(cams["frames"][0]["c2w"], np.eye(4), atol=1e-5)
    assert len(list((out / "previews").glob("*.png"))) == 3 * 3 + 1  # image/depth/conf per view + cloud
    cloud = np.asarray(Image.open(out / "previews" / "points.png"))
    assert cloud.shape[-1] == 3 and (cloud != 255).any()  # something was drawn


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--model", "no_such_model", "--allow-random-init"], "unknown reconstruction model"),
        (["--model", "dust3r_tiny", "--allow-random-init", "MISSING"], "image not found"),
        (["--model", "dust3r_tiny"], "no weights given"),
    ],
)
def test_bad_input_exits_2_with_one_line(synth, args, needle, capsys):
    from tune3d.cli import main

    args = [str(synth["root"] / "missing.png") if a == "MISSING" else a for a in args]
    with pytest.raises(SystemExit) as exc:  # in-process: the same entry point as ``python -m tune3d``
        main(["reconstruct", str(synth["images"][0]), *args, "--out", str(synth["root"] / "bad")])
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tune3d: error:") and needle in lines[0]


def test_train_resume_then_eval_and_mismatched_weights(synth):
    out = synth["root"] / "train"
    common = ["--model", "dust3r_tiny", "--allow-random-init", "--data", str(synth["data"]),
              "--out", str(out), "--resolution", "48x64", "--batch-size", "2",
              "--save-every", "2", "--log-every", "1"]  # fmt: skip
    r = tune3d("train-recon", *common, "--steps", "2")
    assert r.returncode == 0, r.stderr
    r = tune3d("train-recon", *common, "--steps", "4")
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["resumed_from"] == 2 and summary["steps"] == 4
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2, 3, 4]  # resumed log keeps steps 1-2, appends 3-4
    assert json.loads((out / "model.json").read_text())["model"] == "dust3r_tiny"

    ev = synth["root"] / "eval"
    r = tune3d("eval-recon", "--weights", str(out / "model.safetensors"), "--data", str(synth["scene"]),
               "--out", str(ev), "--pairs", "2", "--mono-frames", "2", "--size", "64")  # fmt: skip
    assert r.returncode == 0, r.stderr
    m = json.loads((ev / "metrics.json").read_text())
    assert {"abs_rel", "delta1"} <= set(m["mono_depth"]["pts3d_self"])
    assert {"accuracy", "completeness", "nc", "chamfer"} <= set(m["multiview"])
    assert {"auc@5", "auc@10", "auc@20"} <= set(m["pose"]) and m["pose"]["source"] == "procrustes"
    assert (ev / "config.yaml").is_file()

    r = tune3d("eval-recon", "--model", "vggt_tiny", "--weights", str(out / "model.safetensors"),
               "--data", str(synth["scene"]), "--out", str(ev))  # fmt: skip
    assert (
        r.returncode == 2 and "does not match model" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    )


def test_train_vggt_point_gradient_option(synth, capsys):
    from tune3d.cli import main

    out = synth["root"] / "train_vggt"
    common = ["--model", "vggt_tiny", "--allow-random-init", "--data", str(synth["data"]), "--out", str(out),
              "--views", "2", "--resolution", "42x56", "--batch-size", "1", "--steps", "2",
              "--log-every", "1"]  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        main(["train-recon", *common, "--point-gradient", "sobel"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "unknown --point-gradient 'sobel'" in err[0]
    assert not out.exists() or not (out / "model.safetensors").exists()
    with pytest.raises(SystemExit) as exc:
        main(["train-recon", *common, "--point-gradient", "grad"])
    assert exc.value.code == 0
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["point_reg"] > 0 and r["point_grad"] > 0 and r["depth_reg"] > 0 for r in rows)
