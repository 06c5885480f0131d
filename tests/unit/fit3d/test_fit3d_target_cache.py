"""Stage II per-view target cache: memory LRU, reuse across epochs and runs on disk, invalidation."""

from __future__ import annotations

import pytest
import torch

from tune3d.errors import Tune3DError
from tune3d.fit3d.finetune import FinetuneConfig, finetune
from tune3d.fit3d.lifted import open_lifted, write_random_lifted
from tune3d.fit3d.target_cache import TargetCache, scene_fingerprint, target_key

NAME = "dinov2_vits14_tiny"


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    from tune3d.data import write_scene
    from tune3d.data.synth import generate_scene

    root = tmp_path_factory.mktemp("tcache")
    write_scene(generate_scene(0, num_views=4, height=42, width=56, num_points=1000), root / "scene")
    return root


def _cfg(**kw) -> FinetuneConfig:
    base = dict(lr=1e-3, checkpoint_every=100, log_every=1, progress=False, seed=0)
    return FinetuneConfig(**{**base, **kw})


def _count_renders(monkeypatch) -> dict:
    import tune3d.fit3d.finetune as ft

    calls = {"n": 0}
    real = ft.render_grid_target

    def counting(*a, **k):
        calls["n"] += 1
        return real(*a, **k)

    monkeypatch.setattr(ft, "render_grid_target", counting)
    return calls


def test_memory_lru_budget_and_disk_reuse(tmp_path):
    t = [torch.full((2, 3, 4), float(i)) for i in range(3)]
    m = torch.ones(1, 3, 4)
    item = t[0].numel() * 4 + m.numel() * 4
    mem = TargetCache(2 * item)
    for i in range(3):
        mem.put(f"k{i}", t[i], m)
    assert len(mem) == 2 and mem.evictions == 1 and mem.nbytes <= mem.budget_bytes
    assert mem.get("k0") is None and torch.equal(mem.get("k2")[0], t[2]) and mem.hits == 1

    disk = TargetCache(0, tmp_path / "c")  # no memory, only files
    disk.put("a", t[1], m)
    assert len(disk) == 0 and (tmp_path / "c" / "a.safetensors").is_file()
    again = TargetCache(10 * item, tmp_path / "c")  # a new run
    tgt, msk = again.get("a")
    assert torch.equal(tgt, t[1]) and torch.equal(msk, m) and again.disk_hits == 1
    assert again.get("a") is not None and again.hits == 1  # now from memory
    (tmp_path / "c" / "b.safetensors").write_bytes(b"not safetensors")
    assert again.get("b") is None and again.misses == 1  # corrupt file: rendered again, overwritten
    again.put("b", t[2], m)
    assert torch.equal(TargetCache(0, tmp_path / "c").get("b")[0], t[2])
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(Tune3DError, match="cannot create the target cache folder"):
        TargetCache(0, blocker / "sub")


def test_key_covers_everything_that_defines_a_target(scene, tmp_path):
    lifted = write_random_lifted(scene / "scene", tmp_path / "l", 32, backbone=NAME, seed=0)
    fp = scene_fingerprint(lifted)
    vm, K = torch.eye(4), torch.tensor([[50.0, 0, 28], [0, 50, 21], [0, 0, 1]])
    args = dict(size=(42, 56), grid=(3, 4), mask="alpha", threshold=0.5, backend="auto")
    key = target_key(fp, 0, vm, K, **args)
    assert key == target_key(fp, 0, vm.clone(), K.clone(), **args)
    assert key == target_key(fp, 0, vm, K, **{**args, "threshold": 0.7})  # unused by the alpha mask
    vm2 = vm.clone()
    vm2[0, 3] = 1e-3
    changed = [
        target_key(fp, 1, vm, K, **args),
        target_key(fp, 0, vm2, K, **args),
        target_key(fp, 0, vm, K * 1.01, **args),
        target_key(fp, 0, vm, K, **{**args, "size": (28, 56)}),
        target_key(fp, 0, vm, K, **{**args, "grid": (2, 4)}),
        target_key(fp, 0, vm, K, **{**args, "mask": "binary"}),
        target_key(fp, 0, vm, K, **{**args, "backend": "gsplat"}),
        target_key("0" * 32, 0, vm, K, **args),
    ]
    assert len({key, *changed}) == len(changed) + 1
    # re-lifting (new Gaussians or a new decoder) changes the scene fingerprint
    assert scene_fingerprint(lifted) == fp
    write_random_lifted(scene / "scene", lifted, 32, backbone=NAME, seed=1)
    assert scene_fingerprint(lifted) != fp


def test_finetune_reuses_targets_across_epochs_and_runs(scene, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    lifted = write_random_lifted(scene / "scene", tmp_path / "l", 32, backbone=NAME, seed=0)
    assert len(open_lifted(lifted).train_views) == 4  # 2 steps per epoch at batch 2
    ref = finetune(
        [lifted], NAME, _cfg(epochs=2, target_cache_mb=0), tmp_path / "ref", allow_random_init=True
    )
    assert ref["target_cache"] is None

    calls = _count_renders(monkeypatch)
    cache = tmp_path / "targets"
    cfg = _cfg(epochs=2, target_cache_dir=str(cache))
    first = finetune([lifted], NAME, cfg, tmp_path / "r1", allow_random_init=True)
    assert calls["n"] == 4 and first["target_cache"]["misses"] == 4 and first["target_cache"]["hits"] == 4
    assert len(list(cache.glob("*.safetensors"))) == 4
    second = finetune([lifted], NAME, cfg, tmp_path / "r2", allow_random_init=True)
    assert calls["n"] == 4 and second["target_cache"]["disk_hits"] == 4  # nothing rendered again
    # cached targets train exactly as rendered ones
    w = [load_file(tmp_path / d / "backbone.safetensors") for d in ("ref", "r1", "r2")]
    for k in w[0]:
        assert torch.equal(w[1][k], w[0][k]) and torch.equal(w[2][k], w[0][k]), k
    assert first["train_loss_last"] == ref["train_loss_last"]

    # a re-lifted scene (other Gaussians and decoder) is rendered again, not served stale targets
    write_random_lifted(scene / "scene", lifted, 32, backbone=NAME, seed=5)
    third = finetune([lifted], NAME, cfg, tmp_path / "r3", allow_random_init=True)
    assert calls["n"] == 8 and third["target_cache"]["misses"] == 4
    assert third["train_loss_first"] != pytest.approx(first["train_loss_first"])
    # other render settings are other keys too
    finetune(
        [lifted],
        NAME,
        _cfg(epochs=1, target_cache_dir=str(cache), mask="binary"),
        tmp_path / "r4",
        allow_random_init=True,
    )
    assert calls["n"] == 12
