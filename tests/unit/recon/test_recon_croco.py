"""DUSt3R / MASt3R / CUT3R: layers, activations, tiny forward/backward, official-format loading."""

from __future__ import annotations

import argparse
import math
import re

import pytest
import torch
from safetensors.torch import save_model

from tune3d.errors import Tune3DError
from tune3d.recon import ReconOutput, create_model
from tune3d.recon.croco.cut3r_heads import pose_encoding_to_c2w, postprocess_pose
from tune3d.recon.croco.heads import reg_dense_conf, reg_dense_depth
from tune3d.recon.croco.layers import RoPE2D

TINY = ["dust3r_tiny", "mast3r_tiny", "cut3r_tiny"]


def _tiny(name: str, seed: int = 0):
    torch.manual_seed(seed)
    return create_model(name, allow_random_init=True)


def _images(S: int, H: int = 64, W: int = 64, B: int = 1, seed: int = 1) -> torch.Tensor:
    return torch.rand(B, S, 3, H, W, generator=torch.Generator().manual_seed(seed))


def _official_pth(model: torch.nn.Module, path, prefix: str = "") -> None:
    sd = {prefix + k: v for k, v in model.state_dict().items()}
    args = argparse.Namespace(model="AsymmetricCroCo3DStereo(pos_embed='RoPE100', head_type='dpt')")
    torch.save({"model": sd, "args": args, "epoch": 1}, path)


# -- layers and activations ---------------------------------------------------------------------------------


def test_rope2d_is_a_relative_rotation() -> None:
    rope = RoPE2D(100.0)
    q, k = torch.randn(2, 1, 1, 16, dtype=torch.float64).unbind(0)
    pos = torch.tensor([[[3, 5]]])
    shift = torch.tensor([[[-4, 7]]])  # includes a negative position, as CUT3R's pose token has

    def score(pq: torch.Tensor, pk: torch.Tensor) -> torch.Tensor:
        return (rope(q, pq) * rope(k, pk)).sum()

    assert torch.allclose(rope(q, pos).norm(), q.norm())
    assert torch.allclose(score(pos, pos + 2), score(pos + shift, pos + shift + 2))
    assert not torch.allclose(score(pos, pos), score(pos, pos + 2))
    # the first half of the channels follows the row, the second half the column
    moved = rope(q, pos + torch.tensor([[[1, 0]]]))
    assert torch.allclose(moved[..., 8:], rope(q, pos)[..., 8:])
    assert not torch.allclose(moved[..., :8], rope(q, pos)[..., :8])


def test_point_and_conf_activations() -> None:
    raw = torch.tensor([[0.3, -0.4, 1.2], [0.0, 0.0, 0.0]])
    pts = reg_dense_depth(raw)
    d = raw[0].norm()
    assert torch.allclose(pts[0], raw[0] / d * torch.expm1(d))
    assert torch.equal(pts[1], torch.zeros(3))
    assert torch.allclose(reg_dense_conf(torch.tensor([0.0, 1.0])), torch.tensor([2.0, 1 + math.e]))
    assert torch.allclose(reg_dense_depth(-raw[:1], pos_z=True), pts[:1])


def test_pose_encoding_gives_rigid_c2w() -> None:
    enc = postprocess_pose(torch.tensor([[0.1, 0.2, 0.3, -0.5, 0.4, 0.2, 0.1]]))
    assert enc[0, 3] >= 0 and torch.allclose(enc[0, 3:].norm(), torch.tensor(1.0))
    c2w = pose_encoding_to_c2w(enc)[0]
    R = c2w[:3, :3]
    assert torch.allclose(R @ R.T, torch.eye(3), atol=1e-6) and torch.allclose(
        torch.det(R), torch.tensor(1.0)
    )
    assert torch.equal(c2w[3], torch.tensor([0.0, 0.0, 0.0, 1.0]))
    assert torch.allclose(c2w[:3, 3], enc[0, :3])


# -- tiny models --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TINY)
def test_tiny_forward_backward(name: str) -> None:
    model = _tiny(name).train()
    S = 3 if name.startswith("cut3r") else 2
    out = model(_images(S, 64, 48))
    assert isinstance(out, ReconOutput)
    assert out.pts3d.shape == (1, S, 64, 48, 3) and out.pts3d_conf.shape == (1, S, 64, 48)
    assert torch.isfinite(out.pts3d).all() and (out.pts3d_conf >= 1).all()
    assert out.pts3d_self is not None and out.pts3d_self.shape[1] == (S if name.startswith("cut3r") else 1)
    loss = out.pts3d.norm(dim=-1).mean() + out.pts3d_self_conf.mean()
    loss.backward()
    qkv = [m for n, m in model.named_modules() if re.fullmatch(model.encoder_qkv_pattern, n)]
    assert len(qkv) == model.cfg.enc_depth
    assert all(m.weight.grad is not None and m.weight.grad.abs().sum() > 0 for m in qkv)
    assert model.encoder_tokens(_images(S)).shape == (S, 16, model.cfg.enc_embed_dim)
    depth, conf = model.forward_mono(torch.rand(2, 3, 32, 48))
    assert depth.shape == conf.shape == (2, 32, 48)


def test_dust3r_views_and_mast3r_descriptors() -> None:
    out = _tiny("mast3r_tiny")(_images(2))
    assert torch.equal(out.pts3d_self[:, 0], out.pts3d[:, 0])
    desc = out.extras["desc"]
    assert desc.shape == (1, 2, 64, 64, 24)
    assert torch.allclose(desc.norm(dim=-1), torch.ones(1, 2, 64, 64), atol=1e-5)
    assert (out.extras["desc_conf"] > 0).all()
    with pytest.raises(Tune3DError, match="exactly 2 views"):
        _tiny("dust3r_tiny")(_images(3))
    with pytest.raises(Tune3DError, match="multiple of the patch size"):
        _tiny("dust3r_tiny")(_images(2, 60, 64))


def test_cut3r_is_causal_and_poses_are_rigid() -> None:
    model = _tiny("cut3r_tiny")
    images = _images(3)
    with torch.no_grad():
        full, prefix = model(images), model(images[:, :2])
    assert torch.allclose(full.pts3d[:, :2], prefix.pts3d, atol=1e-5)
    assert torch.allclose(full.pts3d_self[:, :2], prefix.pts3d_self, atol=1e-5)
    assert not torch.allclose(full.pts3d[:, 1], full.pts3d[:, 2], atol=1e-3)
    R = full.c2w[..., :3, :3]
    assert torch.allclose(R @ R.transpose(-1, -2), torch.eye(3).expand_as(R), atol=1e-5)
    rgb = full.extras["rgb"]
    assert rgb.shape == (1, 3, 64, 64, 3) and rgb.min() >= 0 and rgb.max() <= 1


def test_cut3r_encoder_excludes_ray_map_branch() -> None:
    model = create_model("cut3r_tiny", device="meta")
    names = [n for n, _ in model.encoder_parameters()]
    assert names and not any("ray_map" in n for n in names)
    assert any(n.startswith("enc_blocks.") for n in names)


# -- loading ------------------------------------------------------------------------------------------------


def test_official_pth_roundtrip_gives_identical_outputs(tmp_path) -> None:
    model = _tiny("dust3r_tiny")
    path = tmp_path / "DUSt3R_tiny.pth"
    _official_pth(model, path, prefix="module.")
    loaded = create_model("dust3r_tiny", weights=path)
    images = _images(2)
    with torch.no_grad():
        assert torch.equal(model(images).pts3d, loaded(images).pts3d)
    # the DPT alias stays tied after loading onto the meta-built model
    scratch = loaded.downstream_head1.dpt.scratch
    assert scratch.layer_rn[0].weight is scratch.layer1_rn.weight


def test_safetensors_folder_without_alias_keys(tmp_path) -> None:
    model = _tiny("cut3r_tiny")
    folder = tmp_path / "hf"
    folder.mkdir()
    save_model(model, str(folder / "model.safetensors"))  # drops the tied layer_rn.* names
    loaded = create_model("cut3r_tiny", weights=folder)
    images = _images(2)
    with torch.no_grad():
        a, b = model(images), loaded(images)
    # same weights (checked exactly); outputs may differ in the last bit because safetensors tensors are not
    # 64-byte aligned, which changes the CPU kernels' summation order
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    assert torch.allclose(a.pts3d, b.pts3d, atol=1e-6) and torch.allclose(a.c2w, b.c2w, atol=1e-6)


def test_mismatched_checkpoint_names_the_file(tmp_path) -> None:
    path = tmp_path / "dust3r_tiny.pth"
    _official_pth(_tiny("dust3r_tiny"), path)
    with pytest.raises(
        Tune3DError, match=r"dust3r_tiny\.pth: checkpoint does not match model 'mast3r_tiny'.*missing"
    ):
        create_model("mast3r_tiny", weights=path)
    with pytest.raises(Tune3DError, match="shape mismatches"):
        create_model("dust3r_tiny", weights=path, dec_embed_dim=32)


class _Payload:
    pass


def test_arbitrary_pickled_class_is_refused(tmp_path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"model": _tiny("dust3r_tiny").state_dict(), "args": _Payload()}, path)
    with pytest.raises(Tune3DError, match="evil.pth"):
        create_model("dust3r_tiny", weights=path)


def test_weights_required_unless_random_init_allowed() -> None:
    with pytest.raises(Tune3DError) as err:
        create_model("dust3r_vitl_512_dpt")
    assert str(err.value) == (
        "no weights given for dust3r_vitl_512_dpt; pass --weights FILE "
        "(official file: DUSt3R_ViTLarge_BaseDecoder_512_dpt.pth) or --allow-random-init"
    )
    with pytest.raises(Tune3DError, match="unknown reconstruction model"):
        create_model("dust3r_huge")
