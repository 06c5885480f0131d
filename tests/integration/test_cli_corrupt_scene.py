"""Property: whatever is wrong with a scene, every command either works or says so in one line.

Hypothesis corrupts a valid tiny scene (tune3d or 7-Scenes layout) in random ways -- truncated, deleted
or wrong-size images, NaN/inf/negative depth, NaN/inf or non-rigid poses, garbage intrinsics -- and runs
``data info --check``, ``features``, ``lift`` (2 iterations) and ``reconstruct`` (random tiny model) on
it in-process. Each must exit 0, or exit 2 with exactly one ``tune3d: error:`` line; any other exception
propagates out of the CLI and fails the test with its traceback.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli_inprocess as cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

VIEWS, H, W = 3, 28, 42

BAD_NUMBERS = st.sampled_from([float("nan"), float("inf"), -float("inf"), -1.0, 0.0, 1e30])
CORRUPTION = st.one_of(
    st.tuples(st.just("truncate_image"), st.integers(0, VIEWS - 1), st.integers(0, 120)),
    st.tuples(st.just("delete_image"), st.integers(0, VIEWS - 1)),
    st.tuples(
        st.just("resize_image"), st.integers(0, VIEWS - 1), st.sampled_from([(1, 1), (W, H + 1), (H, W)])
    ),
    st.tuples(st.just("garbage_image"), st.integers(0, VIEWS - 1), st.binary(max_size=64)),
    st.tuples(st.just("depth_value"), st.integers(0, VIEWS - 1), BAD_NUMBERS),
    st.tuples(st.just("delete_depth"), st.integers(0, VIEWS - 1)),
    st.tuples(st.just("pose_value"), st.integers(0, VIEWS - 1), st.integers(0, 15), BAD_NUMBERS),
    st.tuples(st.just("intrinsics_value"), st.integers(0, VIEWS - 1), st.integers(0, 8), BAD_NUMBERS),
    st.tuples(
        st.just("intrinsics_text"), st.integers(0, VIEWS - 1), st.sampled_from(["abc", "", "1 2 3", "[]"])
    ),
)


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> dict[str, Path]:
    """The same tiny scene in the tune3d layout (synthetic room) and in the 7-Scenes layout."""
    from tune3d.data import load_scene
    from tune3d.data.synth import synth_dataset

    root = tmp_path_factory.mktemp("clean")
    native = synth_dataset(root / "native", scenes=1, views=VIEWS, resolution=(H, W), seed=3, num_points=400)[
        0
    ]
    scene = load_scene(native)
    seven = root / "seven"
    seven.mkdir()
    for i, f in enumerate(scene.frames):
        stem = seven / f"frame-{i:06d}"
        Image.fromarray(f.image()).save(f"{stem}.color.png")
        Image.fromarray(np.round(f.depth() * 1000).astype(np.uint16)).save(f"{stem}.depth.png")
        np.savetxt(f"{stem}.pose.txt", f.c2w)
    np.savetxt(seven / "camera-intrinsics.txt", scene[0].K)
    return {"tune3d": native, "7scenes": seven}


def _files(scene: Path, layout: str, i: int) -> dict[str, Path]:
    if layout == "7scenes":
        stem = scene / f"frame-{i:06d}"
        return {
            "image": Path(f"{stem}.color.png"),
            "depth": Path(f"{stem}.depth.png"),
            "pose": Path(f"{stem}.pose.txt"),
        }
    return {"image": scene / "images" / f"{i:06d}.png", "depth": scene / "depth" / f"{i:06d}.npy"}


def _set_matrix_entry(values: list, index: int, value: float) -> None:
    flat = np.asarray(values, dtype=np.float64)
    flat.reshape(-1)[index % flat.size] = value
    values[:] = flat.tolist()


def corrupt(scene: Path, layout: str, how: tuple) -> None:
    """Apply one corruption in place (see ``CORRUPTION``)."""
    kind, i = how[0], how[1]
    files = _files(scene, layout, i)
    if kind == "truncate_image":
        if files["image"].is_file():  # an earlier corruption may have deleted it
            files["image"].write_bytes(files["image"].read_bytes()[: how[2]])
    elif kind == "delete_image":
        files["image"].unlink(missing_ok=True)
    elif kind == "resize_image":
        Image.new("RGB", how[2], (9, 9, 9)).save(files["image"], format="PNG")
    elif kind == "garbage_image":
        files["image"].write_bytes(how[2])
    elif kind == "delete_depth":
        files["depth"].unlink(missing_ok=True)
    elif kind == "depth_value":
        if not files["depth"].is_file():
            return
        if layout == "7scenes":  # 16-bit millimetres: NaN/inf cannot be stored; write 0 (= invalid) or max
            d = np.asarray(Image.open(files["depth"])).copy()
            d[:] = 0 if not np.isfinite(how[2]) or how[2] <= 0 else 65534
            Image.fromarray(d.astype(np.uint16)).save(files["depth"])
        else:
            d = np.load(files["depth"])
            d[H // 2, W // 3] = how[2]
            np.save(files["depth"], d)
    elif kind in ("pose_value", "intrinsics_value", "intrinsics_text"):
        if layout == "7scenes":
            path = files["pose"] if kind == "pose_value" else scene / "camera-intrinsics.txt"
            if kind == "intrinsics_text":
                path.write_text(how[2])
                return
            try:  # an earlier corruption may have left text that is not a matrix
                m = np.atleast_1d(np.loadtxt(path, ndmin=1))
            except ValueError:
                return
            if m.size == 0:
                return
            m.reshape(-1)[how[2] % m.size] = how[3]
            np.savetxt(path, m)
            return
        meta = json.loads((scene / "scene.json").read_text())
        frame = meta["frames"][i]
        if kind == "pose_value":
            _set_matrix_entry(frame["c2w"], how[2], how[3])
        elif kind == "intrinsics_value":
            _set_matrix_entry(frame["K"], how[2], how[3])
        else:
            frame["K"] = how[2]
        (scene / "scene.json").write_text(json.dumps(meta))


def check_outcome(r, what: str) -> None:
    assert "Traceback" not in r.stderr, (what, r.stderr)
    if r.returncode == 0:
        return
    lines = r.stderr.strip().splitlines()
    errors = [x for x in lines if x.startswith("tune3d: error:")]
    assert r.returncode == 2 and len(errors) == 1 and lines[-1] == errors[0], (what, r.returncode, r.stderr)


# derandomize: the same 15 examples every run, so CI is repeatable (a new seed is a new test, run by hand).
@settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(layout=st.sampled_from(["tune3d", "7scenes"]), hows=st.lists(CORRUPTION, min_size=1, max_size=2))
def test_every_command_succeeds_or_fails_in_one_line(clean, layout, hows):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        scene = tmp / "scene"
        shutil.copytree(clean[layout], scene)
        for how in hows:
            corrupt(scene, layout, how)
        images = [_files(scene, layout, i)["image"] for i in range(VIEWS)]
        runs = {
            "data info": ["data", "info", scene, "--check"],
            "features": ["features", scene, "-b", "dinov2_vits14_tiny", "--allow-random-init",
                         "--out", tmp / "feats", "--pca-frames", "1"],
            "lift": ["lift", scene, "--backbone", "dinov2_vits14_tiny", "--allow-random-init",
                     "--latent-dim", "4", "--feature-resolution", "14x28", "--init-points", "100",
                     "--max-gaussians", "200", "--iters", "2", "-q", "--out", tmp / "lift"],
            "reconstruct": ["reconstruct", *images, "--model", "vggt_tiny", "--allow-random-init",
                            "--size", "42", "--no-previews", "--out", tmp / "rec"],
        }  # fmt: skip
        for what, argv in runs.items():
            check_outcome(cli(*argv), f"{what} after {hows} ({layout})")
