"""VGGT family: official key layout, tiny-model forward/backward, safetensors round trip, meta build."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_model

from tune3d.geometry import is_rigid
from tune3d.recon.interface import ReconOutput
from tune3d.recon.vggt import VGGT, vggt_1b, vggt_tiny

MANIFEST = Path(__file__).resolve().parents[4] / "shared" / "reference" / "manifests" / "vggt_1b.json"


def _tiny(seed: int = 0) -> VGGT:
    torch.manual_seed(seed)
    return vggt_tiny().eval()


def _images(S: int = 2, H: int = 56, W: int = 70, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, S, 3, H, W, generator=g)


def test_vggt_1b_meta_matches_official_manifest():
    if not MANIFEST.is_file():
        pytest.skip(f"manifest not found at {MANIFEST}")
    manifest = json.loads(MANIFEST.read_text())
    model = vggt_1b(device="meta")
    sd = model.state_dict()
    assert all(t.is_meta for t in sd.values())
    expected = manifest["state_dict"]
    assert list(sd) == list(expected)  # same keys in the same order
    for k, t in sd.items():
        assert list(t.shape) == expected[k]["shape"], k
        assert str(t.dtype).removeprefix("torch.") == expected[k]["dtype"], k
    assert sum(t.numel() for t in sd.values()) == manifest["num_params"]
    buffers = {n for n, _ in model.named_buffers()}
    assert buffers == set(manifest["non_persistent_buffers_excluded"])
    assert not model.aggregator.patch_embed.mask_token.requires_grad


def test_vggt_1b_interface_attributes():
    model = vggt_1b(device="meta")
    assert model.family == "vggt" and model.per_view_head == "depth" and model.patch_size == 14
    assert model.num_views == 0 and model.metric is False
    qkv = [n for n, m in model.named_modules() if re.fullmatch(model.encoder_qkv_pattern, n)]
    assert len(qkv) == 24 and all(isinstance(model.get_submodule(n), torch.nn.Linear) for n in qkv)
    enc = model.encoder_parameters()
    assert enc and all(n.startswith("aggregator.patch_embed.") for n, _ in enc)
    assert not any("frame_blocks" in n or "global_blocks" in n for n, _ in enc)


def test_registry_entries():
    from tune3d.recon import get_entry

    entry = get_entry("vggt_1b")
    assert entry.family == "vggt" and entry.official
    assert isinstance(entry.factory(device="meta"), VGGT)
    assert not get_entry("vggt_tiny").official


def test_tiny_forward_shapes_and_geometry():
    model = _tiny()
    x = _images()
    with torch.no_grad():
        out = model(x)
    assert isinstance(out, ReconOutput)
    B, S, H, W = 1, 2, 56, 70
    assert out.pts3d.shape == (B, S, H, W, 3) and out.pts3d_conf.shape == (B, S, H, W)
    assert out.depth.shape == (B, S, H, W) and out.depth_conf.shape == (B, S, H, W)
    assert out.pts3d_self.shape == (B, S, H, W, 3)
    assert out.c2w.shape == (B, S, 4, 4) and out.K.shape == (B, S, 3, 3)
    assert out.extras["pose_enc"].shape == (B, S, 9)
    assert out.extras["pose_enc_iters"].shape == (4, B, S, 9)
    for t in (out.pts3d, out.depth, out.pts3d_self, out.c2w):
        assert torch.isfinite(t).all()
    # random weights can predict a zero FoV (ReLU), i.e. an infinite focal length, as in the official code
    fov = out.extras["pose_enc"][..., 7:]
    assert torch.isfinite(out.K[..., 1, 1][fov[..., 0] > 0]).all()
    assert (out.depth > 0).all()  # exp activation
    assert (out.depth_conf > 1).all() and (out.pts3d_conf > 1).all()  # 1 + exp
    assert is_rigid(out.c2w.double())
    assert torch.allclose(out.K[..., 0, 2], torch.full((B, S), W / 2.0))
    assert torch.allclose(out.K[..., 1, 2], torch.full((B, S), H / 2.0))
    assert torch.equal(out.pts3d_self[..., 2], out.depth)
    # c2w inverts the predicted world-to-camera extrinsics
    w2c = out.extras["w2c"]
    eye = out.c2w[..., :3, :3] @ w2c[..., :3, :3]
    assert torch.allclose(eye, torch.eye(3).expand_as(eye), atol=1e-5)


def test_tiny_first_frame_is_reference_and_others_are_exchangeable():
    model = _tiny()
    with torch.no_grad():  # make the special tokens large enough to matter at random init
        model.aggregator.camera_token.normal_()
        model.aggregator.register_token.normal_()
        x = _images(S=3, H=42, W=56)
        out = model(x)
        # swapping the two non-reference views permutes every per-view output
        swapped = model(x[:, [0, 2, 1]])
        assert torch.allclose(swapped.depth, out.depth[:, [0, 2, 1]], atol=1e-5)
        assert torch.allclose(swapped.extras["pose_enc"], out.extras["pose_enc"][:, [0, 2, 1]], atol=1e-5)
        # making another view the reference changes its prediction (its camera token is the other variant)
        rolled = model(x[:, [1, 0, 2]])
        assert not torch.allclose(rolled.extras["pose_enc"][:, 0], out.extras["pose_enc"][:, 1], atol=1e-3)


def test_tiny_backward_reaches_encoder():
    model = _tiny().train()
    out = model(_images())
    loss = out.pts3d.abs().mean() + out.depth.mean() + out.extras["pose_enc"].abs().mean()
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    missing = [n for n, g in grads.items() if g is None and not n.startswith("track_head")]
    assert missing == []
    qkv = model.aggregator.patch_embed.blocks[0].attn.qkv.weight.grad
    assert qkv is not None and qkv.abs().sum() > 0


def test_tiny_grad_checkpointing_matches():
    model = _tiny().train()
    x = _images(S=2, H=56, W=56)
    ref = model(x).depth
    model.set_grad_checkpointing(True)
    out = model(x).depth
    assert torch.allclose(out, ref, atol=1e-6)
    out.mean().backward()


def test_tiny_safetensors_round_trip(tmp_path):
    model = _tiny(seed=0)
    path = tmp_path / "model.safetensors"
    save_model(model, str(path))
    other = _tiny(seed=123)
    other.load_state_dict(load_file(str(path)), strict=True)
    x = _images(S=3, H=42, W=56)
    with torch.no_grad():
        a, b = model(x), other(x)
    for name in ("pts3d", "pts3d_conf", "depth", "depth_conf", "c2w", "K"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


@pytest.mark.parametrize("assign", [False, True])
def test_meta_build_then_materialise_matches_cpu_model(assign):
    ref = _tiny(seed=0)
    model = vggt_tiny(device="meta")
    if not assign:
        model.to_empty(device="cpu")
    model.load_state_dict(ref.state_dict(), strict=True, assign=assign)
    model.reset_non_persistent_buffers()  # checkpoints do not hold the normalisation constants
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])
    x = _images(S=1, H=56, W=56)
    with torch.no_grad():
        assert torch.equal(model.eval()(x).depth, ref(x).depth)


def test_encoder_tokens_and_mono():
    model = _tiny()
    x = _images(S=2, H=56, W=70)
    with torch.no_grad():
        tokens = model.encoder_tokens(x)
        assert tokens.shape == (2, (56 // 14) * (70 // 14), 64)
        depth, conf = model.forward_mono(x[:, 0])
    assert depth.shape == (1, 56, 70) and conf.shape == (1, 56, 70)


def test_position_embedding_interpolation():
    enc = _tiny().aggregator.patch_embed
    native = enc.interpolate_pos_encoding(16, 56, 56, torch.float32)
    assert native is enc.pos_embed  # the trained grid is used as is
    resized = enc.interpolate_pos_encoding(15, 42, 70, torch.float32)
    assert resized.shape == (1, 1 + 3 * 5, 64)
    assert torch.equal(resized[:, 0], enc.pos_embed[:, 0])  # class token position is not resampled


def test_track_head_keeps_query_frame():
    model = _tiny()
    x = _images(S=3, H=56, W=56)
    query = torch.tensor([[[10.5, 20.5], [30.0, 40.25]]])
    with torch.no_grad():
        tracks, vis, conf = model.track(x, query)
    assert tracks.shape == (1, 3, 2, 2) and vis.shape == (1, 3, 2) and conf.shape == (1, 3, 2)
    assert torch.allclose(tracks[:, 0], query, atol=1e-5)
    assert torch.isfinite(tracks).all() and ((vis >= 0) & (vis <= 1)).all()
