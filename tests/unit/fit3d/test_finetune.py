"""FiT3D stage II: target reduction, masked L1, flips, the lazy scene cache, fitting, resume and export."""

from __future__ import annotations

import pytest
import torch

from tune3d.errors import Tune3DError
from tune3d.fit3d.finetune import FinetuneConfig, finetune, global_batch
from tune3d.fit3d.lifted import LiftedCache, module_nbytes, open_lifted, write_random_lifted
from tune3d.fit3d.targets import hflip, masked_l1, reduce_to_grid, render_target, valid_mask

NAME = "dinov2_vits14_tiny"  # width 32, patch 14


@pytest.fixture(scope="module")
def lifted(tmp_path_factory) -> dict:
    """Two tiny scenes (6 views, 42x56 -> 3x4 tokens) and their random lifted feature Gaussians."""
    from tune3d.data import write_scene
    from tune3d.data.synth import generate_scene

    root = tmp_path_factory.mktemp("fit3d")
    out = {}
    for i in range(2):
        write_scene(generate_scene(i, num_views=6, height=42, width=56, num_points=1500), root / f"scene{i}")
        out[i] = write_random_lifted(root / f"scene{i}", root / f"lifted{i}", 32, backbone=NAME, seed=i)
    out["root"] = root
    return out


def _cfg(**kw) -> FinetuneConfig:
    base = dict(lr=1e-3, checkpoint_every=2, log_every=1, progress=False, seed=0)
    return FinetuneConfig(**{**base, **kw})


# ---------------------------------------------------------------------------------------------- targets
def test_reduce_to_grid_matches_hand_calculation():
    # 4x4 -> 2x2: each token centre sits between 2x2 pixels, so bilinear = the block mean
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert torch.equal(reduce_to_grid(x, (2, 2)), torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]]))
    # 1x3 -> 1x2: sample points at 0.25 and 1.75 (align_corners=False, no antialias)
    y = torch.tensor([0.0, 4.0, 8.0]).view(1, 1, 1, 3)
    assert torch.allclose(reduce_to_grid(y, (1, 2)), torch.tensor([[[[1.0, 7.0]]]]))
    # the mask is reduced the same way: a binary edge becomes fractional weights
    m = torch.tensor([1.0, 1.0, 0.0]).view(1, 1, 1, 3)
    assert torch.allclose(reduce_to_grid(m, (1, 2)), torch.tensor([[[[1.0, 0.25]]]]))
    assert reduce_to_grid(x, (4, 4)) is x


def test_masked_l1_formula():
    out = torch.tensor([[[[1.0, 5.0]], [[2.0, -1.0]]]])  # B=1, C=2, 1x2
    tgt = torch.tensor([[[[0.0, 0.0]], [[4.0, 0.0]]]])
    mask = torch.tensor([[[[1.0, 0.0]]]])
    # sum |d| m = |1| + |-2| = 3 over sum(m) * C = 2
    assert masked_l1(out, tgt, mask).item() == pytest.approx(1.5)
    soft = torch.tensor([[[[0.5, 0.25]]]])
    expected = (0.5 * 3 + 0.25 * 6) / (0.75 * 2)
    assert masked_l1(out, tgt, soft).item() == pytest.approx(expected)
    assert valid_mask(torch.tensor([0.2, 0.7]), "binary").tolist() == [0.0, 1.0]
    assert valid_mask(torch.tensor([0.2, 0.7]), "none").tolist() == [1.0, 1.0]


def test_flip_applies_to_image_target_and_mask_together():
    img, tgt, msk = torch.rand(2, 3, 5, 7), torch.rand(2, 4, 2, 3), torch.rand(2, 1, 2, 3)
    fi, ft, fm = hflip(img, tgt, msk, flip=torch.tensor([True, False]))
    assert torch.equal(fi[0], img[0].flip(-1)) and torch.equal(fi[1], img[1])
    assert torch.equal(ft[0], tgt[0].flip(-1)) and torch.equal(ft[1], tgt[1])
    assert torch.equal(fm[0], msk[0].flip(-1)) and torch.equal(fm[1], msk[1])
    # flipping the reduced target equals reducing the flipped full-resolution one
    full = torch.rand(1, 4, 42, 56)
    assert torch.allclose(
        reduce_to_grid(full.flip(-1), (3, 4)), reduce_to_grid(full, (3, 4)).flip(-1), atol=1e-6
    )


def test_sampling_is_a_seeded_permutation_split_into_global_batches():
    seen = torch.cat([global_batch(3, s, 10, 4, 0.5)[0] for s in range(2)])  # 10 // 4 = 2 steps/epoch
    assert len(set(seen.tolist())) == 8
    a, fa = global_batch(3, 5, 10, 4, 0.5)
    b, fb = global_batch(3, 5, 10, 4, 0.5)
    assert torch.equal(a, b) and torch.equal(fa, fb)
    assert not torch.equal(global_batch(3, 0, 10, 4, 0.5)[0], global_batch(3, 2, 10, 4, 0.5)[0])


def test_render_target_shapes_and_views(lifted):
    scene = open_lifted(lifted[0])
    assert scene.resolution == (42, 56) and scene.width == 32 and scene.train_views == list(range(6))
    gs = LiftedCache(1 << 30).get(scene)
    image, viewmat, K = scene.view(0)
    feats, alpha = render_target(gs, viewmat, K, 42, 56, backend="torch")
    assert image.shape == (3, 42, 56) and feats.shape == (1, 32, 42, 56) and alpha.shape == (1, 1, 42, 56)
    assert not feats.requires_grad and alpha.mean() > 0.5  # opaque random Gaussians cover most pixels


# ---------------------------------------------------------------------------------------------- cache
def test_cache_respects_byte_budget_and_reloads(lifted):
    a, b = open_lifted(lifted[0]), open_lifted(lifted[1])
    one = module_nbytes(LiftedCache(1 << 30).get(a))
    cache = LiftedCache(int(one * 1.5))
    ga = cache.get(a)
    first = ga.features.clone()
    assert cache.get(a) is ga and cache.hits == 1
    cache.get(b)
    assert a not in cache and b in cache and cache.evictions == 1 and cache.nbytes <= cache.budget_bytes
    again = cache.get(a)
    assert again is not ga and torch.equal(again.features, first) and cache.misses == 3
    big = LiftedCache(10 * one)
    big.get(a), big.get(b)
    assert len(big) == 2 and big.evictions == 0


# ---------------------------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def trained(lifted):
    out = lifted["root"] / "run"
    m = finetune(
        [lifted[0]], NAME, _cfg(max_steps=24, epochs=8, checkpoint_every=24), out, allow_random_init=True
    )
    return out, m


def test_loss_decreases_on_one_scene(trained):
    out, m = trained
    assert m["steps"] == 24 and m["global_batch"] == 2
    assert m["train_loss_last_mean"] < 0.85 * m["train_loss_first"], m
    for f in ("backbone.safetensors", "backbone.json", "config.yaml", "metrics.json", "metrics.jsonl", "tb"):
        assert (out / f).exists(), f


def test_export_loads_into_plain_timm_with_identical_features(trained):
    import timm
    from safetensors.torch import load_file

    from tune3d.backbones import create_backbone
    from tune3d.engine import CheckpointManager
    from tune3d.fit3d.export import load_exported_timm
    from tune3d.io import read_json

    out, _ = trained
    cfg = read_json(out / "backbone.json")
    assert cfg["name"] == NAME and cfg["base_weights"] == "random-init" and cfg["patch_size"] == 14
    sd = load_file(out / "backbone.safetensors")
    plain = timm.create_model(
        cfg["timm_name"], pretrained=False, num_classes=0, dynamic_img_size=True, **cfg["model_kwargs"]
    )
    plain.load_state_dict(sd, strict=True)
    via_overlay = load_exported_timm(out)  # timm's own pretrained loader (pretrained_cfg_overlay=file)
    tuned = create_backbone(NAME, allow_random_init=True, device="cpu")
    tuned.timm_model.load_state_dict(CheckpointManager(out).load()[0], strict=True)  # the trained state
    exported = create_backbone(NAME, weights=out / "backbone.safetensors", device="cpu")

    x = torch.rand(2, 3, 42, 56)
    ref = tuned.forward_features(x, resize="floor").patch
    assert torch.equal(exported.forward_features(x, resize="floor").patch, ref)
    xn = exported.prepare(x, resize="floor")
    for model in (plain.eval(), via_overlay):
        with torch.no_grad():
            tokens = model.forward_features(xn)[:, model.num_prefix_tokens :]
        assert torch.allclose(tokens.transpose(1, 2).reshape(ref.shape), ref, atol=1e-6)
    base = create_backbone(NAME, allow_random_init=True, device="cpu", seed=0)
    assert not torch.allclose(base.forward_features(x, resize="floor").patch, ref)  # it did change


def test_resume_after_interruption_matches_uninterrupted(lifted, monkeypatch):
    from safetensors.torch import load_file

    import tune3d.fit3d.finetune as ft

    # no target cache: every sample renders, so the crash lands on a known render
    cfg = _cfg(max_steps=6, epochs=4, checkpoint_every=2, target_cache_mb=0)
    ref = finetune([lifted[0]], NAME, cfg, lifted["root"] / "full", allow_random_init=True)

    calls = {"n": 0}
    real = ft.render_grid_target

    def crashing(*a, **k):
        calls["n"] += 1
        if calls["n"] == 9:  # first sample of step 5 (2 renders per step): after the step-4 checkpoint
            raise RuntimeError("simulated crash")
        return real(*a, **k)

    out = lifted["root"] / "crashed"
    monkeypatch.setattr(ft, "render_grid_target", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        finetune([lifted[0]], NAME, cfg, out, allow_random_init=True)
    assert (out / "checkpoints" / "step_00000004").is_dir() and not (out / "backbone.safetensors").exists()
    monkeypatch.setattr(ft, "render_grid_target", real)
    res = finetune([lifted[0]], NAME, cfg, out, allow_random_init=True)

    assert res["train_loss_first"] == pytest.approx(ref["train_loss_first"], abs=1e-6)
    assert res["train_loss_last"] == pytest.approx(ref["train_loss_last"], abs=1e-6)
    a, b = (
        load_file(out / "backbone.safetensors"),
        load_file(lifted["root"] / "full" / "backbone.safetensors"),
    )
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
    steps = [r for r in (out / "metrics.jsonl").read_text().splitlines() if "train_loss" in r]
    assert len(steps) == 6  # rows after the checkpoint were replaced, not duplicated


def test_bad_inputs_raise_one_clear_error(lifted, tmp_path):
    with pytest.raises(Tune3DError, match="not found"):
        finetune([tmp_path / "nope"], NAME, _cfg(), tmp_path / "o1", allow_random_init=True)
    wide = write_random_lifted(lifted["root"] / "scene0", tmp_path / "wide", 48, backbone="other")
    with pytest.raises(Tune3DError, match="48-d but dinov2_vits14_tiny has width 32"):
        finetune([wide], NAME, _cfg(), tmp_path / "o2", allow_random_init=True)
    with pytest.raises(Tune3DError, match="mask must be"):
        FinetuneConfig(mask="bogus")


def test_prefetching_targets_on_a_worker_thread_changes_nothing(lifted, monkeypatch):
    import threading

    from safetensors.torch import load_file

    import tune3d.fit3d.finetune as ft

    where = []
    real = ft.render_grid_target

    def recording(*a, **k):
        where.append(threading.current_thread().name)
        return real(*a, **k)

    monkeypatch.setattr(ft, "render_grid_target", recording)
    root = lifted["root"]
    runs = {}
    for prefetch in (False, True):
        cfg = _cfg(max_steps=4, epochs=2, target_cache_mb=0, prefetch=prefetch)
        where.clear()
        runs[prefetch] = finetune([lifted[0]], NAME, cfg, root / f"pf{prefetch}", allow_random_init=True)
        threads = set(where)
        assert len(where) == 8 and (threads == {"MainThread"}) != prefetch, threads
    assert runs[True]["train_loss_last"] == runs[False]["train_loss_last"]
    a, b = (load_file(root / f"pf{p}" / "backbone.safetensors") for p in (True, False))
    assert all(torch.equal(a[k], b[k]) for k in a)
