"""``tune3d data synth | info | convert`` end to end, with exit code 2 on user errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from conftest import run_cli_inprocess


def run(*args, check=True, subprocess_run=False):
    """``tune3d data ARGS``: in-process by default (see conftest), as a real subprocess when asked."""
    if subprocess_run:
        r = subprocess.run(
            [sys.executable, "-m", "tune3d", "data", *map(str, args)], capture_output=True, text=True
        )
    else:
        r = run_cli_inprocess("data", *args)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def test_synth_info_convert(tmp_path):
    out = tmp_path / "syn"
    r = run(
        "synth",
        out,
        "--scenes",
        2,
        "--views",
        3,
        "--resolution",
        "24x32",
        "--seed",
        5,
        "--points",
        300,
        subprocess_run=True,
    )
    assert "wrote 2 scene(s)" in r.stdout
    infos = [json.loads(line) for line in run("info", out, "--json").stdout.splitlines()]
    assert [i["name"] for i in infos] == ["scene_000", "scene_001"]
    for i in infos:
        assert (i["num_frames"], i["width"], i["height"]) == (3, 32, 24)
        assert i["has_depth"] and i["has_semantics"] and i["num_points"] > 0 and i["num_classes"] >= 10
        assert set(i["splits"]) == {"train", "test"}
    run("convert", out / "scene_000", tmp_path / "conv", "--frames", "0:3:2")
    from tune3d.data import load_scene

    assert len(load_scene(tmp_path / "conv")) == 2
    a, b = load_scene(out / "scene_000"), load_scene(tmp_path / "conv")
    assert np.array_equal(a[2].depth(), b[1].depth()) and np.array_equal(a[2].c2w, b[1].c2w)
    # refuses to overwrite without --overwrite; user errors exit 2 without a traceback
    r = run("convert", out / "scene_000", tmp_path / "conv", check=False)
    assert r.returncode == 2 and "not empty" in r.stderr and "Traceback" not in r.stderr
    run("convert", out / "scene_001", tmp_path / "conv", "--overwrite", "--resolution", "12x16")
    c = load_scene(tmp_path / "conv")
    assert (len(c), c[0].width, c[0].height) == (3, 16, 12)


def test_info_seven_scenes(seven_scenes):
    info = json.loads(run("info", seven_scenes, "--json").stdout)
    assert info["num_frames"] == 1000 and (info["width"], info["height"]) == (640, 480)
    assert info["fx"] == info["fy"] == 585.0 and info["has_depth"] and info["format"] == "7scenes"
