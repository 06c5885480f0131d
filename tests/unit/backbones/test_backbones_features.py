"""Dense features (sizes, prefix tokens, layers, norm, grad mode) and the on-disk feature cache."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tune3d.backbones import (
    FeatureCache,
    create_backbone,
    extract_features,
    image_digest,
    network_input_size,
    open_cache,
)
from tune3d.errors import Tune3DError


@pytest.fixture(scope="module")
def dino():
    return create_backbone("dinov2_vits14_reg_tiny", allow_random_init=True, device="cpu")


def test_network_input_sizes_for_7scenes_resolution():
    assert network_input_size(480, 640, 14, "resize") == (476, 644)  # grid 34x46 (default)
    assert network_input_size(480, 640, 14, "pad") == (490, 644)  # grid 35x46
    assert network_input_size(584, 876, 14, "floor") == (574, 868)  # FiT3D's 876x584 -> 868x574
    assert network_input_size(224, 224, 16, "resize") == (224, 224)
    assert network_input_size(5, 5, 14, "resize") == (14, 14)
    with pytest.raises(Tune3DError, match="unknown resize mode"):
        network_input_size(10, 10, 14, "crop")


@pytest.mark.parametrize("resize,grid", [("resize", (34, 46)), ("pad", (35, 46)), ("floor", (34, 45))])
def test_grid_at_480x640(dino, resize, grid):
    feats = dino.forward_features(torch.rand(1, 3, 480, 640), resize=resize)
    assert feats.patch.shape == (1, dino.width, *grid) and feats.grid_size == grid
    assert feats.input_size == (grid[0] * 14, grid[1] * 14)
    assert feats.cls.shape == (1, dino.width)


def test_matches_timm_forward_features(dino):
    """Last layer + norm equals timm's own forward_features with prefix (cls + 4 registers) removed."""
    x = torch.rand(2, 3, 56, 98)
    feats = dino.forward_features(x)
    with torch.no_grad():
        tokens = dino.timm_model.forward_features(dino.normalize(x))
    assert dino.num_prefix_tokens == 5
    h, w = feats.grid_size
    assert tokens.shape[1] == 5 + h * w
    ref = tokens[:, 5:].reshape(2, h, w, -1).permute(0, 3, 1, 2)
    assert torch.allclose(feats.patch, ref, atol=1e-5)
    assert torch.allclose(feats.cls, tokens[:, 0], atol=1e-5)


def test_layers_and_norm(dino):
    x = torch.rand(1, 3, 42, 56)
    feats = dino.forward_features(x, layers=[0, -1], norm=False)
    assert sorted(feats.layers) == [0, dino.depth - 1]
    assert torch.equal(feats.patch, feats.layers[dino.depth - 1])
    normed = dino.forward_features(x, layers=[0, -1], norm=True)
    ref = dino.final_norm(feats.layers[0].permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    assert torch.allclose(normed.layers[0], ref, atol=1e-6)
    assert not torch.allclose(normed.patch, feats.patch)
    with pytest.raises(Tune3DError, match="layer 7 out of range"):
        dino.forward_features(x, layers=[7])


def test_pad_mode_is_centre_padding_with_mean_colour(dino):
    x = torch.rand(1, 3, 30, 40)  # -> 42x42: 6 rows above/below, 1 column left/right
    prepared = dino.prepare(x, resize="pad")
    assert prepared.shape[-2:] == (42, 42)
    assert torch.equal(prepared[..., 6:36, 1:41], dino.normalize(x))
    assert prepared[..., :6, :].abs().max() == 0 and prepared[..., :, :1].abs().max() == 0


def test_any_aspect_ratio_and_batch_consistency(dino):
    x = torch.rand(3, 3, 70, 154)
    feats = dino.forward_features(x)
    assert feats.patch.shape[-2:] == (5, 11)
    single = dino.forward_features(x[1:2])
    assert torch.allclose(feats.patch[1:2], single.patch, atol=1e-5)


def test_grad_modes(dino):
    x = torch.rand(1, 3, 28, 28)
    assert not dino.forward_features(x).patch.requires_grad
    out = dino.forward_features(x, grad=True).patch
    assert out.requires_grad
    out.sum().backward()
    assert dino.timm_model.patch_embed.proj.weight.grad is not None
    dino.timm_model.zero_grad(set_to_none=True)
    with torch.no_grad():
        assert not dino(x).patch.requires_grad


def test_eva02_uses_fc_norm_as_final_norm():
    eva = create_backbone("eva02_vitb14_tiny", allow_random_init=True, device="cpu")
    assert eva.final_norm is eva.timm_model.fc_norm
    x = torch.rand(1, 3, 42, 42)
    raw = eva.forward_features(x, norm=False).patch
    normed = eva.forward_features(x, norm=True).patch
    assert not torch.allclose(raw, normed)
    ref = eva.timm_model.fc_norm(raw.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    assert torch.allclose(normed, ref, atol=1e-5)


def test_bad_image_shape(dino):
    with pytest.raises(Tune3DError, match="expected images B,3,H,W"):
        dino.forward_features(torch.rand(3, 28, 28))


# ----------------------------------------------------------------------------------------- cache
def _images(n: int, h: int = 42, w: int = 56, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def test_extract_features_batches_mixed_sizes_in_order(dino):
    ims = _images(3) + _images(2, 28, 42, seed=1) + _images(1, seed=2)
    out = list(extract_features(dino, ims, batch_size=2))
    assert [o["patch"].shape[-2:] for o in out] == [(3, 4)] * 3 + [(2, 3)] * 2 + [(3, 4)]
    ref = dino.forward_features(torch.from_numpy(ims[4]).permute(2, 0, 1)[None].float() / 255)
    assert torch.allclose(out[4]["patch"], ref.patch[0], atol=1e-5)


def test_cache_hits_and_truncated_entry(dino, tmp_path):
    ims = _images(4)
    cache = open_cache(tmp_path, dino, resolution=(28, 42))
    first = list(extract_features(dino, ims, resolution=(28, 42), batch_size=3, cache=cache))
    assert (cache.hits, cache.misses) == (0, 4)
    cache2 = open_cache(tmp_path, dino, resolution=(28, 42))
    assert cache2.dir == cache.dir
    second = list(extract_features(dino, ims, resolution=(28, 42), cache=cache2))
    assert (cache2.hits, cache2.misses) == (4, 0)
    for a, b in zip(first, second):
        assert torch.equal(a["patch"], b["patch"]) and torch.equal(a["cls"], b["cls"])

    # a truncated entry is a miss, is recomputed and is replaced by a good one
    entry = cache.path(image_digest(ims[2]))
    entry.write_bytes(entry.read_bytes()[:100])
    cache3 = open_cache(tmp_path, dino, resolution=(28, 42))
    third = list(extract_features(dino, ims, resolution=(28, 42), cache=cache3))
    assert (cache3.hits, cache3.misses) == (3, 1)
    assert torch.allclose(third[2]["patch"], first[2]["patch"], atol=1e-6)
    assert cache3.get(image_digest(ims[2])) is not None

    # other preprocessing -> other entries
    other = open_cache(tmp_path, dino, resolution=(28, 42), norm=False)
    assert other.dir != cache.dir and other.get(image_digest(ims[0])) is None


def test_cache_concurrent_writers_and_readers(tmp_path):
    cache = FeatureCache(tmp_path, "m", "w", {"size": 1})
    payloads = [{"patch": torch.full((8, 16, 16), float(i))} for i in range(4)]
    seen: list[float] = []

    def writer(i: int) -> None:
        for _ in range(10):
            cache.put("abcd", payloads[i])

    def reader() -> None:
        for _ in range(40):
            got = cache.get("abcd")
            if got is not None:  # never a partial tensor: one writer's full payload
                seen.append(float(got["patch"].unique().item()))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)] + [
        threading.Thread(target=reader)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(seen) <= {0.0, 1.0, 2.0, 3.0}
    assert cache.get("abcd") is not None
    assert not list(cache.path("abcd").parent.glob("*.tmp"))


def test_image_digest_sensitivity():
    a = _images(1)[0]
    b = a.copy()
    assert image_digest(a) == image_digest(b)
    b[0, 0, 0] ^= 1
    assert image_digest(a) != image_digest(b)
    assert image_digest(a) != image_digest(a.reshape(56, 42, 3))


def test_resize_mode_resize_is_bilinear(dino):
    x = torch.rand(1, 3, 30, 30)  # -> 28x28
    ref = F.interpolate(
        dino.normalize(x), size=(28, 28), mode="bilinear", align_corners=False, antialias=True
    )
    assert torch.allclose(dino.prepare(x), ref)
