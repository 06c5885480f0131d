"""Fin3R training loop: frozen parts untouched, loss goes down, resume is exact, renorm limits norm drift,
saved adapters reproduce the trained model. Tiny random models on a tiny synthetic room (CPU, seconds)."""

from __future__ import annotations

import json

import pytest
import torch

from tune3d.fin3r import load_adapters
from tune3d.fin3r.config import DistillConfig
from tune3d.fin3r.data import MonoImages, ReplayTuples
from tune3d.fin3r.distill import lr_factor, train_adapters
from tune3d.fin3r.teachers import create_teacher
from tune3d.recon import create_model

RES = {"dust3r_tiny": (48, 64), "vggt_tiny": (42, 56)}


@pytest.fixture(scope="module")
def scene():
    synth = pytest.importorskip("tune3d.data.synth")
    return synth.generate_scene(0, num_views=10, height=48, width=64, num_points=0, test_every=5)


def _data(scene, model_name, replay=True):
    H, W = RES[model_name]
    frames = [scene[i] for i in scene.splits["train"]]
    mono = MonoImages(frames, (H, W))
    tuples = ReplayTuples([scene], 2, (H, W)) if replay else None
    return mono, tuples


def _model(name, seed=0):
    torch.manual_seed(seed)
    return create_model(name, allow_random_init=True)


def _cfg(**kw):
    base = dict(
        steps=4, batch_size=2, lr=3e-3, schedule="constant", progress=False, diag_images=2, eval_images=2
    )
    base.update(kw)
    return DistillConfig(**base)


def _frozen_state(model):
    """State dict without adapter tensors, under the base model's key names."""
    return {
        k.replace(".base_layer.", "."): v.clone() for k, v in model.state_dict().items() if ".lora_" not in k
    }


@pytest.mark.parametrize("name", ["dust3r_tiny", "vggt_tiny"])
def test_decoder_and_heads_bit_identical(scene, name, tmp_path):
    model = _model(name)
    before = _frozen_state(model)
    mono, replay = _data(scene, name)
    cfg = _cfg(steps=3, replay_ratio=0.5, lr=1e-2)
    metrics = train_adapters(model, create_teacher("sensor"), mono, replay, cfg, tmp_path)
    after = _frozen_state(model)
    assert before.keys() == after.keys()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert not changed, f"frozen tensors changed: {changed[:3]}"
    lora_b = [v for k, v in model.state_dict().items() if ".lora_B." in k]
    assert lora_b and all(v.abs().max() > 0 for v in lora_b)  # the adapters did train
    assert metrics["n_replay_tuples"] == len(replay) and "replay" in metrics["loss"]


@pytest.fixture(scope="module")
def trained_pair(scene, tmp_path_factory):
    """vggt_tiny trained 30 steps with the sensor teacher, once with plain LoRA, once with renorm."""
    runs = {}
    mono, _ = _data(scene, "vggt_tiny", replay=False)
    for form in ("plain", "renorm"):
        out = tmp_path_factory.mktemp(f"distill_{form}")
        model = _model("vggt_tiny")
        cfg = _cfg(form=form, steps=30, replay_ratio=0.0, diag_images=4)
        runs[form] = (model, train_adapters(model, create_teacher("sensor"), mono, None, cfg, out), out)
    return runs


def test_loss_decreases_with_sensor_teacher(trained_pair):
    for form, (_, metrics, _) in trained_pair.items():
        loss = metrics["loss"]["loss"]
        assert loss["last_mean"] < 0.95 * loss["first_mean"], (form, loss)


def test_renorm_keeps_encoder_norms_closer_to_base(trained_pair):
    # Measured on vggt_tiny after 30 steps: pre-norm token norm drift 0.2 (plain) vs 0.005 (renorm).
    # The output tokens pass a freshly initialised LayerNorm (norm exactly sqrt(C)), so the comparison
    # is made on the residual stream before it.
    plain = trained_pair["plain"][1]["feature_norms"]["plain"]["prenorm"]["drift"]
    renorm = trained_pair["renorm"][1]["feature_norms"]["renorm"]["prenorm"]["drift"]
    assert plain["norm_rel_diff"] > 0.02
    assert renorm["norm_rel_diff"] < 0.5 * plain["norm_rel_diff"]
    assert renorm["cosine_mean"] > plain["cosine_mean"]


def test_outputs_written(trained_pair):
    _, metrics, out = trained_pair["renorm"]
    for f in ("adapter.safetensors", "config.yaml", "metrics.json", "metrics.jsonl"):
        assert (out / f).is_file(), f
    d = out / "diagnostics"
    saved = json.loads((d / "feature_norms.json").read_text())
    assert set(saved["models"]) == {"base", "renorm"}
    for f in ("norms_base.png", "norms_renorm.png", "norms_all.png", "norms_prenorm_all.png"):
        assert (d / f).is_file(), f
    assert metrics["steps"] == 30 and metrics["form"] == "renorm" and metrics["trainable_params"] > 0
    assert {"base", "trained"} <= set(metrics["mono_depth"])


def test_saved_adapter_reproduces_trained_outputs(trained_pair, scene):
    for form, (model, _, out) in trained_pair.items():
        fresh = _model("vggt_tiny")  # same base (same seed)
        info = load_adapters(fresh, out / "adapter.safetensors")
        assert info["form"] == form
        x = torch.rand(1, 2, 3, *RES["vggt_tiny"], generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            a, b = model(x), fresh(x)
        assert torch.equal(a.depth, b.depth) and torch.equal(a.pts3d, b.pts3d)


def test_resume_matches_uninterrupted(scene, tmp_path, monkeypatch):
    import tune3d.fin3r.distill as D

    mono, replay = _data(scene, "dust3r_tiny")
    cfg = _cfg(steps=6, save_every=3, replay_ratio=0.3, schedule="cosine", warmup_steps=2)
    ref = _model("dust3r_tiny")
    train_adapters(ref, create_teacher("sensor"), mono, replay, cfg, tmp_path / "ref")

    real = D.distill_step_loss
    calls = {"n": 0}

    def crash_after_four(*a, **k):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(D, "distill_step_loss", crash_after_four)
    with pytest.raises(KeyboardInterrupt):
        train_adapters(_model("dust3r_tiny"), create_teacher("sensor"), mono, replay, cfg, tmp_path / "run")
    monkeypatch.setattr(D, "distill_step_loss", real)
    resumed = _model("dust3r_tiny", seed=123)  # different init: everything must come from the checkpoint...
    # ...except the frozen base, which the user supplies again; use the same one.
    resumed.load_state_dict(_model("dust3r_tiny").state_dict())
    metrics = train_adapters(resumed, create_teacher("sensor"), mono, replay, cfg, tmp_path / "run")
    assert metrics["steps"] == 6
    sa = {k: v for k, v in ref.state_dict().items() if ".lora_" in k}
    sb = {k: v for k, v in resumed.state_dict().items() if ".lora_" in k}
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    ref_rows = (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines()
    run_rows = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["loss"] for r in ref_rows] == [json.loads(r)["loss"] for r in run_rows]


def test_lr_schedule():
    cfg = DistillConfig(steps=10, warmup_steps=2)
    f = [lr_factor(t, cfg) for t in range(10)]
    assert f[0] == 0.5 and f[1] == 1.0 and f[2] == 1.0 and f[-1] < 0.05
    assert all(a >= b for a, b in zip(f[1:], f[2:]))
