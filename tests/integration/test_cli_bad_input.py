"""Issue 13: bad input and wrong defaults a new user meets, each checked where the user meets it (the CLI).

Every user error must end with one ``tune3d: error: ...`` line and exit code 2, never a traceback.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from cli_helpers import one_error_line as _one_error_line
from conftest import run_cli_inprocess as cli

LIFT_TINY = [
    "--backbone", "dinov2_vits14_tiny", "--allow-random-init", "--latent-dim", "8",
    "--feature-resolution", "28x42", "--init-points", "300", "--max-gaussians", "400", "-q",
]  # fmt: skip


def one_error_line(r, needle: str) -> str:
    """The single ``tune3d: error:`` line of a failed run (progress bars may precede it)."""
    return _one_error_line(r, needle, only_line=False)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    """Two tiny synthetic scenes (4 views at 32x48) in ``ROOT/data/scene_00{0,1}``."""
    from tune3d.data.synth import synth_dataset

    root = tmp_path_factory.mktemp("badinput")
    synth_dataset(root / "data", scenes=2, views=4, resolution=(32, 48), seed=0, num_points=300)
    return root


# 1. Lifted scenes work from any folder: absolute source paths, a content fingerprint, --scene-root.
def test_lifted_scene_relocates_with_scene_root(scenes, tmp_path, monkeypatch):
    shutil.copytree(scenes / "data", tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    r = cli("lift", "data/scene_000", *LIFT_TINY, "--iters", "2", "--out", "lifted/s0")
    assert r.returncode == 0, r.stderr
    rec = yaml.safe_load((tmp_path / "lifted" / "s0" / "config.yaml").read_text())["scene"]
    assert Path(rec["path"]).is_absolute() and Path(rec["path"]) == tmp_path / "data" / "scene_000"
    assert isinstance(rec["fingerprint"], str) and len(rec["fingerprint"]) == 16

    (tmp_path / "data").rename(tmp_path / "moved")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    ft = ["finetune", "--lifted", str(tmp_path / "lifted" / "s0"), "-b", "dinov2_vits14_tiny",
          "--allow-random-init", "--max-steps", "1", "--no-progress"]  # fmt: skip
    one_error_line(cli(*ft, "--out", "o1"), "pass --scene-root")
    # another scene under the same folder name is refused by its fingerprint
    (tmp_path / "other").mkdir()
    shutil.copytree(tmp_path / "moved" / "scene_001", tmp_path / "other" / "scene_000")
    one_error_line(cli(*ft, "--out", "o2", "--scene-root", "../other"), "not the scene that was lifted")
    r = cli(*ft, "--out", "o3", "--scene-root", "../moved")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "elsewhere" / "o3" / "backbone.safetensors").is_file()


def test_lifts_recorded_before_fingerprints_still_count_as_finished(scenes, tmp_path):
    from types import SimpleNamespace

    from tune3d.data import load_scene
    from tune3d.io import write_json, write_yaml
    from tune3d.splatting.lift import is_finished
    from tune3d.splatting.lift_format import CONFIG_FILE, METRICS_FILE, LiftConfig, config_record

    backbone = SimpleNamespace(name="dinov2_vits14_tiny", weights=None)
    record = config_record(LiftConfig(), load_scene(scenes / "data" / "scene_000"), backbone)
    old = {**record, "scene": {"name": "scene_000", "path": "data/scene_000", "frames": 4}}  # as typed
    write_yaml(tmp_path / CONFIG_FILE, old)
    write_json(tmp_path / METRICS_FILE, {})
    assert is_finished(tmp_path, record)
    other = config_record(LiftConfig(), load_scene(scenes / "data" / "scene_001"), backbone)
    assert not is_finished(tmp_path, other)
    write_yaml(tmp_path / CONFIG_FILE, {**record, "scene": {**record["scene"], "path": "/elsewhere"}})
    assert is_finished(tmp_path, record)  # the same content at another path is the same scene


@pytest.fixture(scope="module")
def trained(scenes, tmp_path_factory) -> Path:
    """A dust3r_tiny trained for one step at 32x48 (its model.json records that resolution)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    r = cli("train-recon", "--model", "dust3r_tiny", "--allow-random-init", "--data", scenes / "data",
            "--out", out, "--resolution", "32x48", "--batch-size", "1", "--steps", "1")  # fmt: skip
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def images(scenes) -> list[Path]:
    from PIL import Image

    from tune3d.data import load_scene

    scene = load_scene(scenes / "data" / "scene_000")
    paths = []
    for k in range(3):
        paths.append(scenes / f"img{k}.png")
        Image.fromarray(scene[k].image()).save(paths[-1])
    return paths


# 2. An (almost) empty point cloud is reported with the confidences seen and the option to lower.
def test_reconstruct_says_when_the_threshold_drops_every_point(images, tmp_path):
    r = cli("reconstruct", *images, "--model", "dust3r_tiny", "--allow-random-init", "--size", "32",
            "--no-previews", "--out", tmp_path / "rec")  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.startswith("tune3d:")]  # (progress bars aside)
    assert len(lines) == 1 and lines[0].startswith("tune3d: warning: only 0 of"), r.stderr
    assert "confidences seen:" in lines[0] and "--conf-threshold" in lines[0]
    r = cli("reconstruct", *images, "--model", "dust3r_tiny", "--allow-random-init", "--size", "32",
            "--no-previews", "--conf-threshold", "1", "--out", tmp_path / "rec1")  # fmt: skip
    assert r.returncode == 0 and "tune3d: warning" not in r.stderr, r.stderr


# 3. The default input size is the one recorded with the weights, in reconstruct and eval-recon.
def test_default_size_is_the_training_resolution(trained, images, scenes, tmp_path):
    import json

    import numpy as np

    w = trained / "model.safetensors"
    r = cli("reconstruct", *images, "--weights", w, "--no-previews", "--conf-threshold", "0",
            "--out", tmp_path / "rec")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert np.load(tmp_path / "rec" / "predictions.npz")["conf"].shape == (3, 32, 48)
    r = cli("eval-recon", "--weights", w, "--data", scenes / "data" / "scene_000", "--out", tmp_path / "ev",
            "--pairs", "1", "--mono-frames", "1")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["meta"]["input_size"] == [32, 48]
    one_error_line(
        cli("reconstruct", *images, "--weights", w, "--size", "0", "--out", tmp_path / "z"), "--size 0"
    )
    assert not (tmp_path / "z").exists()


# 7. Option checks: one clear line, exit 2, nothing written.
@pytest.mark.parametrize(
    "argv, needle",
    [
        (["train-recon", "--lr", "-1"], "--lr -1"),
        (["train-recon", "--lr", "nan"], "--lr nan"),
        (["train-recon", "--steps", "0"], "--steps 0"),
        (["reconstruct", "--size", "-5"], "--size -5"),
        (["reconstruct", "--conf-threshold", "nan"], "--conf-threshold nan"),
        (["eval-recon", "--views", "20"], "need at least 20 frames"),
        (["eval-recon", "--size", "-5"], "--size -5"),
    ],
)
def test_option_checks(argv, needle, scenes, images, tmp_path):
    cmd, *opts = argv
    out = tmp_path / "out"
    common = {
        "train-recon": ["--model", "dust3r_tiny", "--allow-random-init", "--data", scenes / "data",
                        "--resolution", "32x48", "--batch-size", "1", "--steps", "1"],
        "reconstruct": [*images, "--model", "dust3r_tiny", "--allow-random-init"],
        "eval-recon": ["--model", "vggt_tiny", "--allow-random-init", "--data", scenes / "data" / "scene_000",
                       "--mono-frames", "1"],
    }[cmd]  # fmt: skip
    one_error_line(cli(cmd, *common, *opts, "--out", out), needle)
    assert not out.exists()


def test_eval_recon_without_any_covisible_tuple_is_an_error(scenes, tmp_path):
    import dataclasses

    import numpy as np

    from tune3d.data import load_scene, write_scene

    scene = load_scene(scenes / "data" / "scene_000")
    frames = []
    for i, f in enumerate(scene.frames):  # cameras 1 km apart: no two frames see the same surface
        c2w = f.c2w.copy()
        c2w[:3, 3] += np.array([1000.0 * i, 0, 0])
        frames.append(dataclasses.replace(f, c2w=c2w))
    write_scene(dataclasses.replace(scene, frames=frames, points=None), tmp_path / "apart")
    r = cli("eval-recon", "--model", "dust3r_tiny", "--allow-random-init", "--data", tmp_path / "apart",
            "--mono-frames", "1", "--pairs", "2", "--size", "48", "--out", tmp_path / "ev")  # fmt: skip
    one_error_line(r, "no tuple of 2 co-visible frames")
    assert not (tmp_path / "ev").exists()


def test_finetune_config_with_an_unknown_yaml_tag(tmp_path):
    cfg = tmp_path / "ft.yaml"
    cfg.write_text("lr: !!python/object/apply:os.system ['echo hi']\n")
    r = cli(
        "finetune", "--lifted", tmp_path, "-b", "dinov2_vits14_tiny", "--config", cfg, "--out", tmp_path / "o"
    )
    one_error_line(r, "malformed YAML")
    cfg.write_text("- 1\n- 2\n")
    one_error_line(
        cli("finetune", "--lifted", tmp_path, "-b", "x", "--config", cfg, "--out", tmp_path / "o"), "mapping"
    )


def write_seven_scenes(
    folder: Path, frames: int = 3, hw: tuple[int, int] = (24, 32), intrinsics: bool = True
):
    """A tiny 7-Scenes sequence folder: colour PNGs, 16-bit depth in mm, 4x4 poses."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    H, W = hw
    for i in range(frames):
        stem = folder / f"frame-{i:06d}"
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(f"{stem}.color.png")
        Image.fromarray(np.full((H, W), 1500 + 10 * i, dtype=np.uint16)).save(f"{stem}.depth.png")
        pose = np.eye(4)
        pose[0, 3] = 0.05 * i
        np.savetxt(f"{stem}.pose.txt", pose)
    if intrinsics:
        np.savetxt(folder / "camera-intrinsics.txt", [[30.0, 0, W / 2], [0, 30.0, H / 2], [0, 0, 1]])
    return folder


DISTILL_TINY = ["distill", "--model", "dust3r_tiny", "--allow-random-init", "--resolution", "32x32",
                "--steps", "1", "--batch-size", "1", "--quiet"]  # fmt: skip


# 4. distill reports a scene's own error instead of re-reading it as an image folder.
def test_distill_reports_the_scenes_own_error(tmp_path):
    scene = write_seven_scenes(tmp_path / "seq")
    (scene / "frame-000001.pose.txt").write_text("1 0 0 nan\n0 1 0 0\n0 0 1 0\n0 0 0 1\n")
    r = cli(*DISTILL_TINY, "--teacher", "sensor", "--mono", scene, "--out", tmp_path / "o")
    one_error_line(r, "frame-000001.pose.txt: pose has NaN or inf values")
    assert not (tmp_path / "o").exists()


# 8. Mixed image sizes: the error names the file (reconstruct), distill refuses mixed aspect ratios.
def test_mixed_sizes_name_the_file(images, tmp_path):
    from PIL import Image

    tall = tmp_path / "tall.png"
    Image.new("RGB", (32, 48), (10, 20, 30)).save(tall)
    r = cli("reconstruct", images[0], tall, "--model", "dust3r_tiny", "--allow-random-init", "--size", "48",
            "--out", tmp_path / "rec")  # fmt: skip
    one_error_line(r, f"{tall}: 32x48 gives a 32x48 model input but {images[0]} (48x32) gives 48x32")
    folder = tmp_path / "imgs"
    folder.mkdir()
    for k, size in enumerate([(48, 32), (48, 32), (32, 48)]):
        Image.new("RGB", size, (k, 0, 0)).save(folder / f"im{k}.png")
    r = cli(*DISTILL_TINY, "--teacher", "recon:dust3r_tiny", "--mono", folder, "--out", tmp_path / "d")
    one_error_line(r, f"{folder / 'im2.png'}: 32x48 has another aspect ratio than im0.png (48x32)")
    assert not (tmp_path / "d").exists()


# 5. demo checks every name and option before its first stage: it fails at once and writes nothing.
@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--backbone", "foo"], "unknown backbone 'foo'"),
        (["--method", "fin3r", "--base-model", "foo"], "unknown reconstruction model 'foo'"),
        (["--method", "fin3r", "--teacher", "dpt"], "--teacher 'dpt'"),
        (["--method", "fin3r", "--teacher", "recon:foo"], "unknown reconstruction model 'foo'"),
        (["--method", "fit3d", "--data", "NOT_A_SCENE"], "unknown scene layout"),
        (["--method", "fit3d", "--train-frames", "0-10"], "--train-frames '0-10'"),
    ],
)
def test_demo_checks_names_before_any_work(argv, needle, tmp_path):
    (tmp_path / "empty").mkdir()
    argv = [str(tmp_path / "empty") if a == "NOT_A_SCENE" else a for a in argv]
    one_error_line(cli("demo", *argv, "--out", tmp_path / "demo"), needle)
    assert not (tmp_path / "demo").exists()  # failed before the first stage (it creates OUT)


def _corrupt(scene: Path, how: str) -> Path:
    """Break one file of a synthetic scene; returns the file broken."""
    import numpy as np
    from PIL import Image

    if how == "truncated":
        f = scene / "images" / "000001.png"
        f.write_bytes(f.read_bytes()[:200])
    elif how == "missing":
        f = scene / "images" / "000002.png"
        f.unlink()
    elif how == "wrong_size":
        f = scene / "images" / "000001.png"
        Image.new("RGB", (20, 10)).save(f)
    elif how == "nan_depth":
        f = scene / "depth" / "000002.npy"
        d = np.load(f)
        d[3, 4] = np.nan
        np.save(f, d)
    return f


# 6. `data info` opens every file of small scenes (--check) and reports the first bad one.
@pytest.mark.parametrize(
    "how, needle",
    [
        ("truncated", "unreadable image"),
        ("missing", "file not found"),
        ("wrong_size", "image is 20x10 but the camera says 48x32"),
        ("nan_depth", "depth has NaN or inf values"),
    ],
)
def test_data_info_checks_every_file(scenes, tmp_path, how, needle):
    import json

    scene = tmp_path / "scene"
    shutil.copytree(scenes / "data" / "scene_000", scene)
    r = cli("data", "info", scene, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["checked"] is True, r.stderr
    bad = _corrupt(scene, how)
    assert one_error_line(cli("data", "info", scene), needle).startswith(f"tune3d: error: {bad}: ")
    one_error_line(cli("data", "info", scene, "--check"), needle)
    if how != "missing":  # a missing file is found when the scene loads; the others only when read
        r = cli("data", "info", scene, "--no-check", "--json")
        assert r.returncode == 0 and json.loads(r.stdout)["checked"] is False


def test_data_info_warns_when_seven_scenes_intrinsics_are_assumed(tmp_path, caplog):
    import json
    import logging

    write_seven_scenes(tmp_path / "a_calibrated")
    write_seven_scenes(tmp_path / "b_bare", intrinsics=False)
    # Without a logging set-up (the CLI has none) Python prints a warning record as its message alone on
    # stderr; in-process pytest captures the records instead.
    with caplog.at_level(logging.WARNING):
        r = cli("data", "info", tmp_path, "--json")
    assert r.returncode == 0, r.stderr
    assert [json.loads(x)["fx"] for x in r.stdout.splitlines()] == [30.0, 585.0]
    warnings = [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "b_bare: no camera-intrinsics.txt; assuming" in warnings[0], warnings
    assert "fx = fy = 585" in warnings[0] and "\n" not in warnings[0]


# 9. Each family reads images as its official loader does: alpha and EXIF orientation.
@pytest.mark.parametrize(
    "model, size, rgb", [("dust3r_tiny", "64", (200, 10, 10)), ("vggt_tiny", "56", (255, 255, 255))]
)
def test_reconstruct_transparent_pixels_follow_the_family_loader(model, size, rgb, tmp_path):
    import numpy as np
    from PIL import Image

    rgba = np.zeros((48, 64, 4), np.uint8)
    rgba[..., :3] = (200, 10, 10)  # fully transparent red: DUSt3R keeps the red, VGGT lays it onto white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    r = cli("reconstruct", tmp_path / "a.png", tmp_path / "a.png", "--model", model, "--allow-random-init",
            "--size", size, "--conf-threshold", "0", "--no-previews", "--out", tmp_path / "rec")  # fmt: skip
    assert r.returncode == 0, r.stderr
    images = np.load(tmp_path / "rec" / "predictions.npz")["images"]
    assert (np.abs(images.astype(int) - rgb) <= 1).all()


@pytest.mark.parametrize("model, size, hw", [("dust3r_tiny", "64", (64, 48)), ("vggt_tiny", "56", (42, 56))])
def test_reconstruct_exif_orientation_follows_the_family_loader(model, size, hw, tmp_path):
    import numpy as np
    from PIL import Image

    img = Image.fromarray(np.full((48, 64, 3), 90, np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees to display (a portrait photo stored landscape)
    img.save(tmp_path / "rot.png", exif=exif)
    rot = tmp_path / "rot.png"
    r = cli("reconstruct", rot, rot, "--model", model, "--allow-random-init",
            "--size", size, "--conf-threshold", "0", "--no-previews", "--out", tmp_path / "rec")  # fmt: skip
    assert r.returncode == 0, r.stderr
    # DUSt3R's load_images applies exif_transpose (portrait input); VGGT's loader does not (landscape)
    assert np.load(tmp_path / "rec" / "predictions.npz")["images"].shape[1:3] == hw


# 10. VGGT's depth unprojection matches the released depth_to_cam_coords_points (integer u, cx = W/2).
def test_vggt_pts3d_self_matches_the_official_unprojection(monkeypatch):
    import numpy as np
    import torch

    import tune3d.recon.vggt.model as vggt_model
    from tune3d.recon import create_model

    decode = vggt_model.decode_pose

    def fixed_focal(pose_enc, hw):  # a random camera head predicts near-zero fields of view (inf focal)
        w2c, K = decode(pose_enc, hw)
        K = K.clone()
        K[..., 0, 0], K[..., 1, 1] = 30.0, 25.0
        return w2c, K

    monkeypatch.setattr(vggt_model, "decode_pose", fixed_focal)
    torch.manual_seed(0)
    net = create_model("vggt_tiny", allow_random_init=True, device="cpu")
    with torch.no_grad():
        out = net(torch.rand(1, 2, 3, 28, 42))
    depth, K = out.depth[0].double().numpy(), out.K[0].double().numpy()
    assert np.allclose(K[:, 0, 2], 21.0) and np.allclose(K[:, 1, 2], 14.0)  # principal point at W/2, H/2
    u, v = np.meshgrid(np.arange(42), np.arange(28))
    for s in range(2):
        ref = np.stack([(u - 21.0) * depth[s] / 30.0, (v - 14.0) * depth[s] / 25.0, depth[s]], -1)
        half_pixel = 0.5 * np.abs(depth[s]).max() / 30.0  # the shift pixel centres at u + 0.5 would give
        err = np.abs(out.pts3d_self[0, s].double().numpy() - ref).max()
        assert half_pixel > 1e-3 and err < 1e-3 * half_pixel, (err, half_pixel)
