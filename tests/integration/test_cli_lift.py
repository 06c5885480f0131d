"""``tune3d lift`` end to end: sharding by rank over synthetic scenes, a 7-Scenes lift, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TINY = [
    "--backbone", "dinov2_vits14_tiny", "--allow-random-init", "--latent-dim", "8",
    "--feature-resolution", "28x42", "--init-points", "800", "--max-gaussians", "1200", "-q",
]  # fmt: skip


def _run(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "tune3d", *args], capture_output=True, text=True, env=full_env, timeout=300
    )


@pytest.fixture(scope="module")
def synth_scenes(tmp_path_factory) -> list[Path]:
    from tune3d.data.synth import synth_dataset

    return synth_dataset(
        tmp_path_factory.mktemp("synth"), scenes=2, views=10, resolution=(32, 48), num_points=800
    )


def test_lift_shards_scenes_by_rank_and_skips_finished(synth_scenes, tmp_path):
    out = tmp_path / "out"
    args = [
        "lift",
        *map(str, synth_scenes),
        *TINY,
        "--iters",
        "20",
        "--holdout-every",
        "5",
        "--out",
        str(out),
    ]
    r0 = _run(args, {"RANK": "0", "WORLD_SIZE": "2"})
    assert r0.returncode == 0, r0.stderr
    assert (out / "scene_000" / "metrics.json").is_file()
    assert not (out / "scene_001").exists()  # rank 1's scene
    r1 = _run(args, {"RANK": "1", "WORLD_SIZE": "2"})
    assert r1.returncode == 0, r1.stderr
    m = json.loads((out / "scene_001" / "metrics.json").read_text())
    for key in ("psnr", "ssim", "feature_l1", "feature_cosine", "initial_psnr", "num_gaussians", "seconds"):
        assert key in m
    assert m["iterations"] == 20 and m["backend"] == "torch" and m["weights"] == "random-init"
    for name in ("gaussians.safetensors", "decoder.safetensors", "point_cloud.ply", "config.yaml"):
        assert (out / "scene_001" / name).is_file()
    stamp = (out / "scene_000" / "metrics.json").stat().st_mtime_ns
    again = _run(args)  # one process, both scenes: both finished, so both are skipped
    assert again.returncode == 0, again.stderr
    assert (out / "scene_000" / "metrics.json").stat().st_mtime_ns == stamp
    assert len(again.stdout.strip().splitlines()) == 2


def test_lift_seven_scenes_improves_psnr(seven_scenes, tmp_path):
    out = tmp_path / "7s"
    r = _run(
        ["lift", str(seven_scenes), *TINY, "--frames", "0:60:3", "--holdout-every", "4",
         "--resolution", "36x48", "--iters", "100", "--out", str(out)]
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["init_source"] == "depth" and m["num_eval_views"] == 5
    assert m["psnr"] > m["initial_psnr"] + 2.0, m


@pytest.mark.parametrize(
    "args, message",
    [
        (["--backbone", "no_such_net", "--allow-random-init"], "unknown backbone"),
        (["--backbone", "dinov2_vits14_tiny", "--allow-random-init", "--resolution", "12by"], "--resolution"),
    ],
)
def test_lift_bad_input_exits_2(synth_scenes, tmp_path, args, message):
    r = _run(["lift", str(synth_scenes[0]), *args, "--out", str(tmp_path / "o")])
    assert r.returncode == 2 and message in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr


def test_lift_missing_scene_exits_2(tmp_path):
    r = _run(
        ["lift", str(tmp_path / "nope"), "--backbone", "dinov2_vits14_tiny", "--out", str(tmp_path / "o")]
    )
    assert r.returncode == 2 and "no such file" in r.stderr and "Traceback" not in r.stderr
