"""FiT3D stage I lifting: schedule, gradient split, densification cap, a short lift, skip and resume."""

from __future__ import annotations

import json

import pytest
import torch

from tune3d.errors import Tune3DError
from tune3d.splatting import FeatureGaussians
from tune3d.splatting.lift import View, changed_settings, feature_input_size, lift_losses, lift_scene
from tune3d.splatting.lift_format import LiftConfig, split_views
from tune3d.splatting.lift_many import scene_out_dirs, shard
from tune3d.splatting.strategy import make_optimizers, make_strategy

H, W = 48, 64


@pytest.fixture(scope="module")
def scene():
    from tune3d.data.synth import generate_scene

    return generate_scene(3, num_views=20, height=H, width=W, num_points=1500)


@pytest.fixture(scope="module")
def backbone():
    from tune3d.backbones import create_backbone

    return create_backbone("dinov2_vits14_tiny", allow_random_init=True, device="cpu")


def _cfg(**kw) -> LiftConfig:
    base = dict(
        iters=120,
        holdout_every=5,
        checkpoint_every=40,
        init_points=1500,
        max_gaussians=2500,
        latent_dim=16,
        sh_degree=1,
        feature_resolution=(42, 56),
        num_render_views=2,
        progress=False,
    )
    base.update(kw)
    return LiftConfig(**base)


@pytest.fixture(scope="module")
def lifted(scene, backbone, tmp_path_factory):
    out = tmp_path_factory.mktemp("lift")
    return out, lift_scene(scene, backbone, _cfg(), out)


# ---------------------------------------------------------------------------------------------- pieces
def test_split_views_holds_out_every_kth():
    train, held = split_views(10, 3)
    assert held == [0, 3, 6, 9] and set(train).isdisjoint(held) and sorted(train + held) == list(range(10))
    assert split_views(5, 0) == ([0, 1, 2, 3, 4], [])
    with pytest.raises(Tune3DError):
        LiftConfig(holdout_every=1)


def test_changed_settings_names_lift_fields_and_ignores_run_only_ones():
    import dataclasses

    lift = dataclasses.asdict(LiftConfig())
    scene = {"name": "s", "path": "/a/s", "frames": 4, "fingerprint": "f" * 16}
    old = {"scene": scene, "backbone": {"name": "b", "weights": None}, "lift": lift}
    moved = {**old, "scene": {**scene, "path": "/b/s"}, "lift": {**lift, "device": "cuda", "tile_size": 8}}
    assert changed_settings(old, moved) == []  # same content elsewhere; run-only fields do not count
    new = {**old, "lift": {**lift, "seed": 1, "latent_dim": 6}}
    assert changed_settings(old, new) == ["latent_dim", "seed"]
    other = {**old, "scene": {**scene, "fingerprint": "e" * 16}}
    assert changed_settings(old, other) == ["scene/backbone"]
    legacy = {**old, "scene": {"name": "s", "path": "s", "frames": 4}}  # before fingerprints: name + count
    assert changed_settings(legacy, old) == [] and changed_settings(
        legacy, {**old, "scene": {**scene, "frames": 5}}
    )


def test_feature_input_size_defaults():
    assert feature_input_size(120, 160, 14) == (224, 294)  # scaled up to ~224 short side, patch multiple
    assert feature_input_size(480, 640, 14) == (476, 644)  # never scaled down
    assert feature_input_size(48, 64, 16) == (224, 304)


def test_schedule_is_scaled_to_the_iteration_count():
    cfg = LiftConfig(iters=3000)
    s = make_strategy(cfg)
    assert (s.refine_start_iter, s.refine_stop_iter, s.reset_every) == (50, 1500, 300)
    assert s.refine_every == 10 and cfg.scaled(cfg.sh_up_every) == 100
    assert LiftConfig(iters=30_000).feature_lr_factor == 1.0


def _tiny_gaussians(n: int = 300, seed: int = 0) -> tuple[FeatureGaussians, View, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    xyz = torch.rand(n, 3, generator=g) * torch.tensor([2.0, 1.5, 1.0]) + torch.tensor([-1.0, -0.75, 2.5])
    gs = FeatureGaussians.from_points(
        xyz, torch.rand(n, 3, generator=g), sh_degree=1, feature_dim=8, feature_width=12
    )
    with torch.no_grad():
        gs.params["features"].normal_(generator=g)
    view = View(
        0,
        "v",
        torch.rand(3, 24, 32, generator=g),
        torch.eye(4),
        torch.tensor([[30.0, 0, 16], [0, 30, 12], [0, 0, 1]]),
    )
    return gs, view, torch.randn(12, 4, 5, generator=g)


def test_feature_loss_reaches_only_features_and_decoder():
    gs, view, target = _tiny_gaussians()
    cfg = LiftConfig(sh_degree=1)
    losses, out = lift_losses(gs, view, target, cfg, sh_degree=1, backend="torch")
    out.info["means2d"].retain_grad()
    losses["feature"].backward()
    for k in ("means", "quats", "scales", "opacities", "sh0", "shN"):
        grad = gs.params[k].grad
        assert grad is None or grad.abs().max() == 0, k
    assert out.info["means2d"].grad is None or out.info["means2d"].grad.abs().max() == 0
    assert gs.params["features"].grad.abs().max() > 0 and gs.decoder.weight.grad.abs().max() > 0

    gs.zero_grad(set_to_none=True)
    losses, out = lift_losses(gs, view, target, cfg, sh_degree=1, backend="torch")
    losses["rgb"].backward()
    assert gs.params["features"].grad is None or gs.params["features"].grad.abs().max() == 0
    assert gs.params["means"].grad.abs().max() > 0 and gs.params["opacities"].grad.abs().max() > 0


def test_feature_loss_steps_never_move_geometry():
    """Feature-loss-only steps through the real optimizers leave every geometry/colour key fixed."""
    gs, view, target = _tiny_gaussians(seed=1)
    cfg = LiftConfig(sh_degree=1)
    opts = make_optimizers(gs, cfg, extent=1.0)
    before = {k: v.detach().clone() for k, v in gs.params.items()}
    for _ in range(3):
        losses, _ = lift_losses(gs, view, target, cfg, sh_degree=1, backend="torch")
        losses["feature"].backward()
        for o in opts.values():
            o.step()
            o.zero_grad(set_to_none=True)
    for k in ("means", "quats", "scales", "opacities", "sh0", "shN"):
        assert torch.equal(gs.params[k], before[k]), k
    assert not torch.equal(gs.params["features"], before["features"])


def test_densification_cap_and_opacity_reset():
    gs, view, target = _tiny_gaussians(n=200, seed=2)
    cfg = LiftConfig(iters=3000, sh_degree=1, max_gaussians=260, grow_grad2d=0.0)
    strategy = make_strategy(cfg)  # refine from step 50 to 1500, every 10; opacity reset every 300
    opts = make_optimizers(gs, cfg, extent=1.0)
    params_opts = {k: opts[k] for k in gs.params}
    state = strategy.initialize_state(scene_scale=1.0)
    for step in [*range(48, 72), strategy.reset_every]:
        losses, out = lift_losses(gs, view, target, cfg, sh_degree=1, backend="torch")
        strategy.step_pre_backward(gs.params, params_opts, state, step, out.info)
        losses["total"].backward()
        for o in opts.values():
            o.step()
            o.zero_grad(set_to_none=True)
        strategy.step_post_backward(gs.params, params_opts, state, step, out.info)
        assert len(gs) <= 260
        if step == 71:
            assert torch.sigmoid(gs.params["opacities"]).max() > 0.05
    assert len(gs) == 260  # grew up to the cap, not beyond
    assert strategy.reset_every == 300
    assert torch.sigmoid(gs.params["opacities"]).max() <= 2 * cfg.prune_opa + 1e-6  # the 3DGS reset happened


def test_shard_is_disjoint_and_complete():
    items = [f"s{i}" for i in range(7)]
    for world in (1, 2, 3, 8):
        parts = [shard(items, r, world) for r in range(world)]
        flat = [x for p in parts for x in p]
        assert sorted(flat) == sorted(items) and len(flat) == len(set(flat))
    dirs = scene_out_dirs(["/a/x", "/b/x", "/c/y"], "/out")
    assert len({str(d) for d in dirs}) == 3 and dirs[2].name == "y"
    assert scene_out_dirs(["/a/x"], "/out")[0].as_posix() == "/out"


# ---------------------------------------------------------------------------------------------- lifting
def test_short_lift_improves_held_out_views(lifted):
    out, m = lifted
    assert m["eval_split"] == "held_out" and m["num_eval_views"] == 4 and m["num_train_views"] == 16
    assert m["psnr"] > m["initial_psnr"] + 3.0, m
    assert m["feature_cosine"] > m["initial_feature_cosine"] + 0.4, m
    assert m["feature_l1"] < m["initial_feature_l1"], m
    for name in (
        "gaussians.safetensors",
        "decoder.safetensors",
        "point_cloud.ply",
        "config.yaml",
        "metrics.json",
    ):
        assert (out / name).is_file(), name
    pngs = sorted(p.name for p in (out / "renders").glob("*.png"))
    assert len(pngs) == 6 and any(p.endswith("_features.png") for p in pngs)
    assert not (out / "checkpoints").exists()
    assert json.loads((out / "metrics.json").read_text())["num_gaussians"] == m["num_gaussians"] <= 2500
    gs = FeatureGaussians.load(out)
    assert len(gs) == m["num_gaussians"] and gs.feature_dim == 16 and gs.decoder.out_channels == 32


def test_finished_scene_is_skipped(lifted, scene, backbone, monkeypatch):
    out, m = lifted
    import tune3d.splatting.lift as lift_mod

    def boom(*a, **k):
        raise AssertionError("a finished scene must not be re-optimised")

    monkeypatch.setattr(lift_mod, "lift_losses", boom)
    assert lift_scene(scene, backbone, _cfg(progress=True, checkpoint_every=7), out) == m
    with pytest.raises(Tune3DError, match="different settings"):
        lift_scene(scene, backbone, _cfg(seed=1), out)


def test_resume_reaches_the_uninterrupted_result(lifted, scene, backbone, tmp_path, monkeypatch):
    _, ref = lifted
    import tune3d.splatting.lift as lift_mod

    real = lift_mod.lift_losses
    calls = {"n": 0}

    def interrupt_at_100(*a, **k):
        calls["n"] += 1
        if calls["n"] > 100:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(lift_mod, "lift_losses", interrupt_at_100)
    with pytest.raises(KeyboardInterrupt):
        lift_scene(scene, backbone, _cfg(), tmp_path)
    assert (tmp_path / "checkpoints" / "step_00000080").is_dir() and not (tmp_path / "metrics.json").exists()
    monkeypatch.setattr(lift_mod, "lift_losses", real)
    m = lift_scene(scene, backbone, _cfg(), tmp_path)
    for k in ("psnr", "ssim", "feature_l1", "feature_cosine", "num_gaussians", "initial_psnr"):
        assert m[k] == pytest.approx(ref[k], rel=1e-5, abs=1e-6), k
