"""DINOv3 and SAM ViT-B: official release layouts load through the real code, dense-feature grids."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tune3d.backbones import create_backbone, get_spec, list_backbones
from tune3d.errors import Tune3DError

# Per-block keys of Meta's DINOv3 ViT-S/B/L releases (dinov3/layers/block.py: SelfAttentionBlock with
# LinearKMaskedBias qkv, LayerScale ls1/ls2, Mlp fc1/fc2) and the top-level keys of DinoVisionTransformer.
DINOV3_BLOCK_KEYS = [
    "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.qkv.bias_mask",
    "attn.proj.weight", "attn.proj.bias", "ls1.gamma", "norm2.weight", "norm2.bias",
    "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias", "ls2.gamma",
]  # fmt: skip
DINOV3_TOP_KEYS = [
    "cls_token", "storage_tokens", "mask_token", "patch_embed.proj.weight", "patch_embed.proj.bias",
    "rope_embed.periods", "norm.weight", "norm.bias",
]  # fmt: skip
# segment_anything/modeling/image_encoder.py: ImageEncoderViT (+ MLPBlock lin1/lin2, neck Sequential).
SAM_BLOCK_KEYS = [
    "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
    "attn.rel_pos_h", "attn.rel_pos_w", "norm2.weight", "norm2.bias",
    "mlp.lin1.weight", "mlp.lin1.bias", "mlp.lin2.weight", "mlp.lin2.bias",
]  # fmt: skip
SAM_TOP_KEYS = [
    "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
    "neck.0.weight", "neck.1.weight", "neck.1.bias", "neck.2.weight", "neck.3.weight", "neck.3.bias",
]  # fmt: skip


def _perturbed(name: str, seed: int):
    bb = create_backbone(name, allow_random_init=True, seed=seed, device="cpu")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # make LayerScale, tokens, rel-pos tables and the neck matter
        for p in bb.timm_model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return bb


def to_official_dinov3(bb) -> dict[str, torch.Tensor]:
    """Inverse of timm's DINOv3 conversion: timm Eva state dict -> Meta's release layout."""
    head_dim = bb.width // bb.timm_model.blocks[0].attn.num_heads
    out: dict[str, torch.Tensor] = {}
    for k, v in bb.timm_model.state_dict().items():
        k = (
            k.replace("reg_token", "storage_tokens")
            .replace("gamma_1", "ls1.gamma")
            .replace("gamma_2", "ls2.gamma")
        )
        out[k] = v.clone()
        if k.endswith("attn.qkv.weight"):  # the released S/B/L files: zero bias, zero mask
            out[k.replace("weight", "bias")] = torch.zeros(v.shape[0])
            out[k.replace("weight", "bias_mask")] = torch.zeros(v.shape[0])
    out["mask_token"] = torch.randn(1, bb.width)
    out["rope_embed.periods"] = 100.0 ** (
        2 * torch.arange(head_dim // 4, dtype=torch.float32) / (head_dim // 2)
    )
    return out


def to_official_sam(bb) -> dict[str, torch.Tensor]:
    """timm SAM encoder -> ``sam_vit_b_01ec64.pth`` layout, with a few prompt-encoder/decoder entries."""
    out = {
        "image_encoder." + k.replace("mlp.fc", "mlp.lin"): v.clone()
        for k, v in bb.timm_model.state_dict().items()
    }
    out["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"] = torch.randn(2, 128)
    out["mask_decoder.iou_token.weight"] = torch.randn(1, 256)
    return out


def _expected(block_keys, top_keys, depth, prefix=""):
    return {prefix + k for k in top_keys} | {
        f"{prefix}blocks.{i}.{k}" for i in range(depth) for k in block_keys
    }


def test_registry_entries():
    names = {s.name for s in list_backbones(include_tiny=False)}
    assert {"dinov3_vits16", "dinov3_vitb16", "dinov3_vitl16", "sam_vitb16"} <= names
    for n, width in [("dinov3_vits16", 384), ("dinov3_vitb16", 768), ("dinov3_vitl16", 1024)]:
        spec = get_spec(n)
        assert (spec.patch_size, spec.width, spec.num_register_tokens) == (16, width, 4)
        assert spec.timm_name.endswith("_dinov3.lvd1689m") and spec.official_file.startswith(n + "_pretrain_")
    sam = get_spec("sam_vitb16")
    assert (sam.timm_name, sam.width, sam.num_prefix_tokens, sam.num_register_tokens) == (
        "samvit_base_patch16.sa1b",
        768,
        0,
        0,
    )
    assert get_spec("sam_vitb16_tiny").tiny and get_spec("dinov3_vitl16_tiny").width == 32


@pytest.mark.parametrize("name", ["dinov3_vits16", "dinov3_vitl16"])
def test_dinov3_official_layout_loads_exactly(tmp_path, name):
    src = _perturbed(f"{name}_tiny", seed=4)
    official = to_official_dinov3(src)
    assert set(official) == _expected(DINOV3_BLOCK_KEYS, DINOV3_TOP_KEYS, depth=2)
    path = tmp_path / get_spec(name).official_file
    torch.save(official, path)
    loaded = create_backbone(f"{name}_tiny", weights=path, device="cpu")
    assert loaded.weights != "random-init"
    x = torch.rand(2, 3, 48, 80)
    a, b = src.forward_features(x, layers=[0, 1]), loaded.forward_features(x, layers=[0, 1])
    assert torch.equal(a.patch, b.patch) and torch.equal(a.cls, b.cls)
    assert torch.equal(a.layers[0], b.layers[0])


def test_dinov3_nonzero_masked_bias_and_wrong_rope_are_refused(tmp_path):
    src = _perturbed("dinov3_vitb16_tiny", seed=1)
    official = to_official_dinov3(src)
    official["blocks.1.attn.qkv.bias"] = torch.full_like(official["blocks.1.attn.qkv.bias"], 0.1)
    official["blocks.1.attn.qkv.bias_mask"][:32] = 1.0  # the q part counts
    path = tmp_path / "biased.pth"
    torch.save(official, path)
    with pytest.raises(
        Tune3DError, match=r"biased.pth: blocks.1.attn.qkv.bias is non-zero after its bias_mask"
    ):
        create_backbone("dinov3_vitb16_tiny", weights=path, device="cpu")
    # a bias that the mask zeroes (the k part) is what the release holds: it loads
    official["blocks.1.attn.qkv.bias_mask"][:] = 0.0
    torch.save(official, path)
    create_backbone("dinov3_vitb16_tiny", weights=path, device="cpu")

    official["rope_embed.periods"] = official["rope_embed.periods"] * 2
    torch.save(official, path)
    with pytest.raises(Tune3DError, match="rope_embed.periods .* differ from the model's"):
        create_backbone("dinov3_vitb16_tiny", weights=path, device="cpu")


def test_sam_official_layout_loads_exactly(tmp_path):
    src = _perturbed("sam_vitb16_tiny", seed=2)
    official = to_official_sam(src)
    encoder = {k for k in official if k.startswith("image_encoder.")}
    assert encoder == _expected(SAM_BLOCK_KEYS, SAM_TOP_KEYS, depth=2, prefix="image_encoder.")
    assert official["image_encoder.pos_embed"].shape == (1, 8, 8, 32)  # 1024/16 = 64 for the real model
    path = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save(official, path)
    loaded = create_backbone("sam_vitb16_tiny", weights=path, device="cpu")
    x = torch.rand(1, 3, 96, 64)
    a, b = src.forward_features(x, layers=[0, 1]), loaded.forward_features(x, layers=[0, 1])
    assert torch.equal(a.patch, b.patch) and torch.equal(a.layers[0], b.layers[0])
    sd = loaded.timm_model.state_dict()
    assert torch.equal(sd["neck.2.weight"], src.timm_model.state_dict()["neck.2.weight"])  # neck kept


def test_sam_encoder_keys_missing_is_a_clear_error(tmp_path):
    official = to_official_sam(_perturbed("sam_vitb16_tiny", seed=0))
    official.pop("image_encoder.blocks.1.attn.rel_pos_h")
    path = tmp_path / "sam.pth"
    torch.save(official, path)
    with pytest.raises(Tune3DError, match=r"1 missing key\(s\): blocks.1.attn.rel_pos_h"):
        create_backbone("sam_vitb16_tiny", weights=path, device="cpu")


# ----------------------------------------------------------------------------------------- features
@pytest.fixture(scope="module")
def dinov3():
    return _perturbed("dinov3_vits16_tiny", seed=0)


@pytest.fixture(scope="module")
def sam():
    return _perturbed("sam_vitb16_tiny", seed=0)


@pytest.mark.parametrize("hw,grid", [((48, 80), (3, 5)), ((100, 60), (6, 4)), ((37, 150), (2, 9))])
def test_grids_for_any_aspect_ratio(dinov3, sam, hw, grid):
    x = torch.rand(2, 3, *hw)
    for bb in (dinov3, sam):
        f = bb.forward_features(x)
        assert f.patch.shape == (2, bb.width, *grid) and f.grid_size == grid
        assert bb.grid_size(*hw) == grid
    assert dinov3.forward_features(x).cls.shape == (2, 32)
    assert sam.forward_features(x).cls is None


def test_dinov3_matches_timm_with_rope_and_storage_tokens(dinov3):
    """RoPE only (no learned position table) and 1 CLS + 4 storage tokens split off timm's own output."""
    assert dinov3.timm_model.pos_embed is None and dinov3.num_prefix_tokens == 5
    x = torch.rand(1, 3, 64, 112)
    f = dinov3.forward_features(x)
    with torch.no_grad():
        tokens = dinov3.timm_model.forward_features(dinov3.normalize(x))
    ref = tokens[:, 5:].reshape(1, 4, 7, -1).permute(0, 3, 1, 2)
    assert torch.allclose(f.patch, ref, atol=1e-5) and torch.allclose(f.cls, tokens[:, 0], atol=1e-5)
    # RoPE positions are normalised per axis: the same image at another size still gives a full grid
    assert dinov3.forward_features(torch.rand(1, 3, 160, 32)).grid_size == (10, 2)


def test_sam_runs_on_its_canvas_top_left_and_crops(sam):
    """Features = last block's tokens of the zero-padded 128x128 canvas (1024x1024 for the real model)."""
    x = torch.rand(1, 3, 48, 80)
    f = sam.forward_features(x, layers=[0, -1])
    canvas = F.pad(sam.normalize(x), (0, 128 - 80, 0, 128 - 48))
    with torch.no_grad():
        maps = sam.timm_model.forward_intermediates(
            canvas, indices=[0, 1], norm=False, intermediates_only=True
        )
    assert torch.allclose(f.layers[0], maps[0][..., :3, :5], atol=1e-5)
    assert torch.allclose(f.patch, maps[1][..., :3, :5], atol=1e-5)
    assert f.patch.shape[1] == 32 and f.input_size == (48, 80)  # block width, not the 16-d neck
    # a full-canvas image is exactly timm's block output; norm has no effect (SAM has no final norm)
    full = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        ref = sam.timm_model.forward_intermediates(sam.normalize(full), indices=[1], intermediates_only=True)[
            0
        ]
    assert torch.allclose(sam.forward_features(full).patch, ref, atol=1e-5)
    assert torch.equal(
        sam.forward_features(full, norm=False).patch, sam.forward_features(full, norm=True).patch
    )


def test_sam_padding_matters_only_through_global_attention(sam):
    """Windowed block 0 sees only its 4x4 window: tokens of a window fully inside the image ignore the
    padding; the global block 1 mixes the whole canvas."""
    x = torch.rand(1, 3, 64, 64)  # 4x4 tokens = exactly the top-left window
    wide = torch.cat([x, torch.rand(1, 3, 64, 64)], dim=-1)  # 4x8 tokens
    a, b = sam.forward_features(x, layers=[0, 1]), sam.forward_features(wide, layers=[0, 1])
    assert torch.allclose(a.layers[0], b.layers[0][..., :4], atol=1e-5)
    assert not torch.allclose(a.layers[1], b.layers[1][..., :4], atol=1e-3)


def test_sam_larger_than_canvas_and_batch_consistency(sam):
    x = torch.rand(2, 3, 160, 96)  # taller than the 128 canvas: canvas grows to 160x128
    f = sam.forward_features(x)
    assert f.grid_size == (10, 6)
    assert torch.allclose(f.patch[1:], sam.forward_features(x[1:]).patch, atol=1e-5)


def test_grad_flows_for_finetuning(dinov3, sam):
    for bb in (dinov3, sam):
        out = bb.forward_features(torch.rand(1, 3, 32, 48), grad=True).patch
        out.square().mean().backward()
        assert bb.timm_model.blocks[0].attn.qkv.weight.grad is not None
        bb.timm_model.zero_grad(set_to_none=True)


def test_cli_lists_the_new_backbones(cli):
    import json

    r = cli("backbones", "--json", "--tiny")
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["dinov3_vitb16"]["timm_name"] == "vit_base_patch16_dinov3.lvd1689m"
    assert rows["dinov3_vitl16"]["width"] == 1024 and rows["dinov3_vits16"]["num_prefix_tokens"] == 5
    assert "dinov3_vitl16_pretrain_lvd1689m-8aa4cbdd.pth" in rows["dinov3_vitl16"]["weights_source"]
    assert rows["sam_vitb16"]["timm_name"] == "samvit_base_patch16.sa1b"
    assert "sam_vit_b_01ec64.pth" in rows["sam_vitb16"]["weights_source"]
    assert {"dinov3_vits16_tiny", "sam_vitb16_tiny"} <= set(rows)
    table = cli("backbones").stdout
    assert "sam_vitb16" in table and "vit_large_patch16_dinov3.lvd1689m" in table


@pytest.mark.parametrize("name", ["dinov3_vitb16_tiny", "sam_vitb16_tiny"])
def test_tune3d_export_roundtrip(tmp_path, name):
    """What ``tune3d finetune`` exports (backbone.safetensors + .json) reloads to the same features."""
    from tune3d.backbones import save_backbone

    src = _perturbed(name, seed=6)
    save_backbone(src.timm_model, src.spec, tmp_path / "export")
    back = create_backbone(None, weights=tmp_path / "export", device="cpu")
    assert back.name == name
    x = torch.rand(1, 3, 48, 64)
    assert torch.equal(src.forward_features(x).patch, back.forward_features(x).patch)


@pytest.mark.parametrize("name", ["dinov2_vits14_reg_tiny", "dinov3_vits16_tiny", "sam_vitb16_tiny"])
def test_cls_width_matches_the_returned_class_token(name):
    # The paper depth probe sizes its head from cls_width: it must agree with what forward_features returns.
    bb = create_backbone(name, allow_random_init=True, device="cpu")
    f = bb.forward_features(torch.rand(1, 3, 32, 48))
    if name.startswith("sam"):
        assert bb.cls_width == 0 and f.cls is None
    else:
        assert bb.cls_width == bb.width == f.cls.shape[1]
