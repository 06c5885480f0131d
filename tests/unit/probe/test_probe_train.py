"""Probe training/evaluation on cached features: learnability, determinism, feature bank, run folder."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from tune3d.data import Scene, in_memory_frame
from tune3d.errors import Tune3DError
from tune3d.fit3d import AssembledBackbone
from tune3d.probe import (
    FeatureBank,
    ProbeConfig,
    SceneSamples,
    evaluate_depth_probe,
    evaluate_seg_probe,
    run_probe,
    train_depth_probe,
    train_seg_probe,
)


def synth_bank(n: int, seed: int, num_classes: int = 4, depth: bool = False, C: int = 16) -> FeatureBank:
    """Patch features that linearly encode a piecewise-constant label map (8x8 patches, 32x32 targets)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, num_classes, (n, 4, 4), generator=g)
    patch_lab = coarse.repeat_interleave(2, 1).repeat_interleave(2, 2)
    codes = torch.randn(num_classes, C, generator=torch.Generator().manual_seed(123))
    feats = codes[patch_lab].permute(0, 3, 1, 2) + 0.1 * torch.randn(n, C, 8, 8, generator=g)
    labels = patch_lab.repeat_interleave(4, 1).repeat_interleave(4, 2)
    if depth:
        levels = torch.linspace(1.0, 4.0, num_classes)
        return FeatureBank(patch=feats, cls=torch.randn(n, 8, generator=g), targets=levels[labels])
    labels[:, :2] = 255  # some ignored pixels
    return FeatureBank(patch=feats, targets=labels)


SEG_CFG = ProbeConfig(iters=150, batch_size=8, progress=False, seed=0)
DEPTH_CFG = ProbeConfig(
    iters=200, batch_size=8, lr=5e-2, num_bins=16, min_depth=0.5, max_depth=5.0, progress=False, seed=0
)


def test_seg_probe_learns_linear_labels():
    train, test = synth_bank(32, 0), synth_bank(8, 1)
    untrained = train_seg_probe(train, 4, ProbeConfig(iters=1, lr=1e-9, progress=False))
    base = evaluate_seg_probe(untrained, test, 4, SEG_CFG)
    head = train_seg_probe(train, 4, SEG_CFG)
    m = evaluate_seg_probe(head, test, 4, SEG_CFG, class_names=["a", "b", "c", "d"])
    assert m["mIoU"] > 0.9 and m["aAcc"] > 0.95, m
    assert base["mIoU"] < 0.5
    assert set(m["per_class_iou"]) == {"a", "b", "c", "d"} and m["num_images"] == 8
    assert head.history[0]["loss"] > head.history[-1]["loss"]


def test_depth_probe_learns_linear_depth():
    train, test = synth_bank(32, 0, num_classes=6, depth=True), synth_bank(8, 1, num_classes=6, depth=True)
    head = train_depth_probe(train, DEPTH_CFG)
    assert head.cls_channels == 8 and head.conv_depth.in_channels == 24  # CLS appended to every patch
    m = evaluate_depth_probe(head, test, DEPTH_CFG)
    assert m["abs_rel"] < 0.1 and m["delta1"] > 0.9, m
    untrained = evaluate_depth_probe(
        train_depth_probe(train, ProbeConfig(**{**DEPTH_CFG.__dict__, "iters": 1, "lr": 1e-9})),
        test,
        DEPTH_CFG,
    )
    assert untrained["abs_rel"] > 3 * m["abs_rel"]
    assert {"rmse", "abs_rel", "delta1", "delta2", "delta3", "silog", "sq_rel", "log10"} <= set(m)


def test_probes_deterministic_from_seed():
    train = synth_bank(12, 0)
    cfg = ProbeConfig(iters=15, batch_size=4, progress=False, seed=3)
    a, b = train_seg_probe(train, 4, cfg), train_seg_probe(train, 4, cfg)
    c = train_seg_probe(train, 4, ProbeConfig(**{**cfg.__dict__, "seed": 4}))
    for k, v in a.state_dict().items():
        torch.testing.assert_close(v, b.state_dict()[k], rtol=0, atol=0)
    assert not torch.equal(a.conv_seg.weight, c.conv_seg.weight)
    dbank = synth_bank(12, 0, depth=True)
    dcfg = ProbeConfig(**{**DEPTH_CFG.__dict__, "iters": 10})
    d1, d2 = train_depth_probe(dbank, dcfg), train_depth_probe(dbank, dcfg)
    torch.testing.assert_close(d1.conv_depth.weight, d2.conv_depth.weight, rtol=0, atol=0)


def test_probe_target_type_checks():
    with pytest.raises(Tune3DError, match="floating point"):
        train_seg_probe(synth_bank(4, 0, depth=True), 4, SEG_CFG)
    with pytest.raises(Tune3DError, match="integer labels"):
        train_depth_probe(synth_bank(4, 0), DEPTH_CFG)
    with pytest.raises(Tune3DError, match="num_classes"):
        train_seg_probe(synth_bank(4, 0, num_classes=4), 3, ProbeConfig(iters=2, progress=False))


@dataclass
class Feats:
    patch: torch.Tensor
    cls: torch.Tensor


class PatchConv(nn.Module):
    """Stand-in backbone: a 14x14/stride-14 conv "ViT" with mean-pooled CLS; same interface as Backbone."""

    def __init__(self, seed: int = 0, width: int = 8) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv, self.norm = nn.Conv2d(3, width, 14, stride=14), nn.GroupNorm(1, width)
        self.width, self.patch_size, self.name, self.weights = width, 14, "patchconv", f"seed{seed}"
        self.calls = 0

    def forward_features(self, images, layers=None, norm=True, resize="resize"):
        self.calls += 1
        h, w = (max(1, round(s / 14)) * 14 for s in images.shape[-2:])
        x = self.conv(F.interpolate(images, size=(h, w), mode="bilinear", align_corners=False))
        x = self.norm(x) if norm else x
        return Feats(patch=x, cls=x.mean((2, 3)))


def tiny_scene(n: int, seed: int, H: int = 28, W: int = 42) -> Scene:
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        lab = np.zeros((H, W), np.int64)
        lab[:, W // 2 :] = 1
        lab[:3] = 255
        img = rng.integers(0, 60, (H, W, 3)).astype(np.uint8)
        img[lab == 1] += 150
        depth = np.where(lab == 1, 3.0, 1.5).astype(np.float32)
        depth[0, 0] = 0.0
        frames.append(in_memory_frame(f"f{i}", np.eye(4), np.eye(3), img, depth=depth, semantics=lab))
    return Scene(name=f"tiny{seed}", frames=frames, class_names=["left", "right"])


def test_feature_bank_build_flip_and_roundtrip(tmp_path):
    bb = AssembledBackbone(PatchConv(0), PatchConv(1), mode="assembled")
    samples = SceneSamples(tiny_scene(5, 0), "semseg")
    bank = FeatureBank.build(
        bb, samples, norm=True, batch_size=2, image_size=[28, 56], keep_images=2, progress=False
    )
    assert bank.patch.shape == (5, 16, 2, 4) and bank.cls.shape == (5, 8)
    assert bank.targets.shape == (5, 28, 56) and bank.targets.dtype == torch.uint8
    assert bank.images.shape == (2, 3, 28, 56) and bb.original.calls == 3  # ceil(5 / 2) forward passes
    patch, cls, tgt = bank.batch(torch.tensor([0, 1]), flip=torch.tensor([True, False]))
    assert tgt.dtype == torch.int64
    torch.testing.assert_close(patch[0], bank.patch[0].flip(-1))
    torch.testing.assert_close(patch[1], bank.patch[1])
    assert torch.equal(tgt[0], bank.targets[0].long().flip(-1))
    torch.testing.assert_close(cls, bank.cls[:2])

    bank.save(tmp_path / "bank.safetensors")
    loaded = FeatureBank.load(tmp_path / "bank.safetensors")
    for name in ("patch", "cls", "targets", "images"):
        assert torch.equal(getattr(loaded, name), getattr(bank, name))
    assert loaded.meta == bank.meta and loaded.meta["norm"] == "True"

    depth = FeatureBank.build(bb, SceneSamples(tiny_scene(2, 0), "depth"), norm=False, progress=False)
    assert depth.targets.dtype == torch.float32 and depth.targets[0, 0, 0] == 0.0


def test_feature_bank_rejects_mixed_sizes():
    samples = [(np.zeros((28, 28, 3), np.uint8), None), (np.zeros((28, 42, 3), np.uint8), None)]
    with pytest.raises(Tune3DError, match="image_size"):
        FeatureBank.build(PatchConv(), samples, progress=False)
    bank = FeatureBank.build(PatchConv(), samples, image_size=[28, 28], progress=False)
    assert bank.patch.shape == (2, 8, 2, 2) and bank.targets is None


@pytest.mark.parametrize("task", ["semseg", "depth"])
def test_run_probe_writes_run_folder(tmp_path, task):
    bb = AssembledBackbone(PatchConv(0), PatchConv(1), mode="assembled")
    scene = tiny_scene(6, 0)
    train, test = SceneSamples(scene, task, [0, 1, 2, 3]), SceneSamples(scene, task, [4, 5])
    cfg = ProbeConfig(iters=20, batch_size=2, num_vis=2, max_depth=5.0, cache_features=True, progress=False)
    out = tmp_path / task
    m = run_probe(task, bb, train, test, cfg, out, class_names=scene.class_names, run_info={"train": "tiny"})
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["mode"] == "assembled" and on_disk["task"] == task
    key = "mIoU" if task == "semseg" else "abs_rel"
    assert np.isfinite(m[key]) and on_disk[key] == pytest.approx(m[key])
    conf = yaml.safe_load((out / "config.yaml").read_text())
    assert conf["feature_width"] == 16 and conf["train"] == "tiny" and conf["probe"]["iters"] == 20
    assert conf["probe"]["lr"] == (1e-3 if task == "semseg" else 1e-4)  # resolved protocol value recorded
    assert sorted(p.name for p in (out / "predictions").iterdir()) == ["0000.png", "0001.png"]
    assert (out / "head.safetensors").is_file() and (out / "cache" / "train.safetensors").is_file()
    # a rerun reuses the cached features: the backbone is not called again, the metrics repeat
    calls = bb.original.calls
    m2 = run_probe(task, bb, train, test, cfg, out, class_names=scene.class_names)
    assert bb.original.calls == calls and m2[key] == pytest.approx(m[key])
