"""Registry and weight loading: official DINOv2 layout, manifests, tune3d checkpoints, clear errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from tune3d.backbones import (
    build_timm_model,
    convert_state_dict,
    create_backbone,
    get_spec,
    list_backbones,
    save_backbone,
)
from tune3d.backbones.registry import TINY_DEPTH
from tune3d.backbones.weights import fetch_hub_weights
from tune3d.errors import Tune3DError, WeightsUnavailableError

MANIFESTS = Path(__file__).resolve().parents[4] / "shared" / "reference" / "manifests"
FULL_NAMES = [
    *(f"dinov2_vit{s}14{r}" for s in "sblg" for r in ("", "_reg")),
    "clip_vitb16",
    "mae_vitb16",
    "deit3_vitb16",
    "eva02_vitb14",
    *(f"dinov3_vit{s}16" for s in "sbl"),
    "sam_vitb16",
]


def _manifest(name: str) -> dict:
    path = MANIFESTS / f"{name}.json"
    if not path.is_file():
        pytest.skip(f"manifest {path} not found")
    return json.loads(path.read_text())


def to_official_dinov2(sd: dict[str, torch.Tensor], reg: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    """Inverse of timm's ``_convert_dinov2``: timm ViT state dict -> official DINOv2 release layout."""
    g = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    width = sd["cls_token"].shape[-1]
    out["cls_token"] = sd["cls_token"].clone()
    out["pos_embed"] = sd["pos_embed"].clone()
    if reg:
        # official reg models keep a (unused by the cls) pos_embed slot 0 that timm folds into cls_token
        slot0 = torch.randn(1, 1, width, generator=g) * 0.02
        out["cls_token"] = sd["cls_token"] - slot0
        out["pos_embed"] = torch.cat([slot0, sd["pos_embed"]], dim=1)
        out["register_tokens"] = sd["reg_token"].clone()
    out["mask_token"] = torch.randn(1, width, generator=g)
    for k, v in sd.items():
        if k in ("cls_token", "pos_embed", "reg_token"):
            continue
        out[k] = v.clone()
    return out


def _swiglu_official(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """giant models: timm ``mlp.fc1/fc2`` (SwiGLUPacked) are the official ``mlp.w12/w3``."""
    return {re.sub(r"mlp\.fc1\.", "mlp.w12.", re.sub(r"mlp\.fc2\.", "mlp.w3.", k)): v for k, v in sd.items()}


def _manifest_keys_for_tiny(name: str) -> set[str]:
    """The manifest's key set restricted to the blocks a tiny model has."""
    keys = set(_manifest(name)["state_dict"])
    return {k for k in keys if not (m := re.match(r"blocks\.(\d+)\.", k)) or int(m.group(1)) < TINY_DEPTH}


def test_registry_names_and_tiny_twins():
    names = {s.name for s in list_backbones()}
    for n in FULL_NAMES:
        assert n in names and f"{n}_tiny" in names
    assert {s.name for s in list_backbones(include_tiny=False)} == set(FULL_NAMES)
    with pytest.raises(Tune3DError, match="unknown backbone 'dinov3_vits14'"):
        get_spec("dinov3_vits14")


@pytest.mark.parametrize("name", FULL_NAMES)
def test_registry_matches_timm(name):
    """Recorded patch size, width, depth, prefix tokens and mean/std agree with timm (built on meta)."""
    from timm.models import get_pretrained_cfg

    spec = get_spec(name)
    model = build_timm_model(spec, device="meta")
    assert model.patch_embed.patch_size[0] == spec.patch_size
    assert model.embed_dim == spec.width  # token width (SAM's num_features is its 256-d neck)
    assert len(model.blocks) == spec.depth
    assert getattr(model, "num_prefix_tokens", 0) == spec.num_prefix_tokens
    cfg = get_pretrained_cfg(spec.timm_name)
    assert tuple(cfg.mean) == pytest.approx(spec.mean) and tuple(cfg.std) == pytest.approx(spec.std)
    if spec.final_norm is None:
        # SAM: blocks end in the conv neck (conv 1x1 first), no per-token final LayerNorm
        assert spec.family == "sam" and isinstance(model.neck[0], torch.nn.Conv2d)
        assert not isinstance(getattr(model, "norm", None), torch.nn.LayerNorm)
    else:
        assert isinstance(getattr(model, spec.final_norm), torch.nn.LayerNorm)


@pytest.mark.parametrize("name", [f"dinov2_vit{s}14{r}" for s in "sblg" for r in ("", "_reg")])
def test_manifest_key_sets_convert_to_timm(name):
    """Official release key sets (meta tensors of the manifest's shapes) convert exactly onto timm's model."""
    manifest = _manifest(name)
    sd = {k: torch.empty(v["shape"], device="meta") for k, v in manifest["state_dict"].items()}
    assert "mask_token" in sd and ("register_tokens" in sd) == name.endswith("_reg")
    spec = get_spec(name)
    model = build_timm_model(spec, device="meta")
    out = convert_state_dict(sd, model, spec)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        k: tuple(v.shape) for k, v in model.state_dict().items()
    }


@pytest.mark.parametrize("name", ["dinov2_vits14", "dinov2_vits14_reg", "dinov2_vitg14_reg"])
def test_official_layout_file_gives_same_features(tmp_path, name):
    reg = name.endswith("_reg")
    src = create_backbone(f"{name}_tiny", allow_random_init=True, seed=3, device="cpu")
    with torch.no_grad():  # make LayerScale and the cls/pos tokens matter
        for p in src.timm_model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    official = to_official_dinov2(src.timm_model.state_dict(), reg=reg)
    if "vitg" in name:
        official = _swiglu_official(official)
    assert set(official) == _manifest_keys_for_tiny(name)  # exactly the release layout, block count aside
    path = tmp_path / f"{name}_pretrain.pth"
    torch.save(official, path)

    loaded = create_backbone(f"{name}_tiny", weights=path, device="cpu")
    assert loaded.weights != "random-init" and len(loaded.weights) == 16
    x = torch.rand(2, 3, 60, 90)
    a, b = src.forward_features(x), loaded.forward_features(x)
    assert (a.patch - b.patch).abs().max() < 1e-5
    assert (a.cls - b.cls).abs().max() < 1e-5


def test_official_file_wrapped_in_model_key(tmp_path):
    src = create_backbone("dinov2_vits14_tiny", allow_random_init=True, seed=1, device="cpu")
    path = tmp_path / "ckpt.pth"
    torch.save({"model": to_official_dinov2(src.timm_model.state_dict(), reg=False)}, path)
    loaded = create_backbone("dinov2_vits14_tiny", weights=path, device="cpu")
    x = torch.rand(1, 3, 28, 42)
    assert torch.allclose(src.forward_features(x).patch, loaded.forward_features(x).patch, atol=1e-6)


def test_tune3d_checkpoint_roundtrip_and_plain_timm(tmp_path):
    import timm

    src = create_backbone("dinov2_vits14_reg_tiny", allow_random_init=True, seed=5, device="cpu")
    path = save_backbone(src.timm_model, src.spec, tmp_path / "export", parent="test")
    assert path.name == "backbone.safetensors" and (path.parent / "backbone.json").is_file()
    x = torch.rand(1, 3, 42, 56)
    ref = src.forward_features(x).patch

    by_dir = create_backbone(None, weights=path.parent, device="cpu")  # name read from backbone.json
    assert by_dir.name == "dinov2_vits14_reg_tiny"
    assert torch.allclose(by_dir.forward_features(x).patch, ref, atol=1e-6)

    # plain timm loads the exported file through its own pretrained path (filter fn included)
    plain = timm.create_model(
        src.spec.timm_name,
        pretrained=True,
        pretrained_cfg_overlay=dict(file=str(path)),
        num_classes=0,
        dynamic_img_size=True,
        **src.spec.model_kwargs,
    ).eval()
    with torch.no_grad():
        tokens = plain.forward_features(src.prepare(x))[:, plain.num_prefix_tokens :]
    assert torch.allclose(tokens.transpose(1, 2).reshape(ref.shape), ref, atol=1e-5)

    with pytest.raises(
        Tune3DError, match="saved for backbone 'dinov2_vits14_reg_tiny', not 'dinov2_vits14_tiny'"
    ):
        create_backbone("dinov2_vits14_tiny", weights=path, device="cpu")


def test_wrong_width_checkpoint_is_a_clear_error(tmp_path):
    spec = get_spec("dinov2_vits14_tiny")
    wide = build_timm_model(
        spec.__class__(**{**spec.__dict__, "model_kwargs": {**spec.model_kwargs, "embed_dim": 48}})
    )
    path = tmp_path / "wide.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in wide.state_dict().items()}, str(path))
    with pytest.raises(Tune3DError) as e:
        create_backbone("dinov2_vits14_tiny", weights=path, device="cpu")
    msg = str(e.value)
    assert str(path) in msg and "shape mismatch" in msg and "cls_token [1, 1, 48] vs model [1, 1, 32]" in msg
    assert "\n" not in msg


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    src = build_timm_model(get_spec("dinov2_vits14_tiny"))
    sd = src.state_dict()
    sd.pop("norm.weight")
    sd["extra.weight"] = torch.zeros(3)
    path = tmp_path / "partial.pth"
    torch.save(sd, path)
    with pytest.raises(
        Tune3DError, match=r"1 missing key\(s\): norm.weight; 1 unexpected key\(s\): extra.weight"
    ):
        create_backbone("dinov2_vits14_tiny", weights=path, device="cpu")


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_truncated_file_is_a_clear_error(tmp_path, suffix):
    from safetensors.torch import save_file

    sd = build_timm_model(get_spec("dinov2_vits14_tiny")).state_dict()
    path = tmp_path / f"weights{suffix}"
    if suffix == ".pth":
        torch.save(sd, path)
    else:
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(Tune3DError, match=re.escape(str(path))):
        create_backbone("dinov2_vits14_tiny", weights=path, device="cpu")


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": build_timm_model(get_spec("dinov2_vits14_tiny"))}, path)  # a pickled nn.Module
    with pytest.raises(Tune3DError, match="evil.pth"):
        create_backbone("dinov2_vits14_tiny", weights=path, device="cpu")


def test_missing_file_and_no_weights(tmp_path, monkeypatch):
    with pytest.raises(Tune3DError, match="weights file not found"):
        create_backbone("dinov2_vits14_tiny", weights=tmp_path / "nope.pth")
    with pytest.raises(WeightsUnavailableError, match="--allow-random-init"):
        create_backbone("dinov2_vits14_tiny")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(WeightsUnavailableError) as e:
        fetch_hub_weights(get_spec("dinov2_vits14"))
    assert str(e.value) == (
        "could not fetch pretrained weights for dinov2_vits14 (offline?); "
        "pass --weights FILE or --allow-random-init"
    )


def test_random_init_is_recorded_and_seeded():
    a = create_backbone("clip_vitb16_tiny", allow_random_init=True, seed=7, device="cpu")
    b = create_backbone("clip_vitb16_tiny", allow_random_init=True, seed=7, device="cpu")
    assert a.weights == "random-init" and a.weights_info.cache_id == "random-init-s7"
    for (ka, va), (kb, vb) in zip(a.timm_model.state_dict().items(), b.timm_model.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
