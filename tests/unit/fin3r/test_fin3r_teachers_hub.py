"""Fin3R teachers named by Hugging Face id: resolved through a local hub-style cache, offline."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from test_fin3r_teachers import IMAGES, _save_tiny_depth_anything

from tune3d.errors import WeightsUnavailableError
from tune3d.fin3r.teachers import create_teacher


def _hub_cache(root: Path, repo_id: str, folder: Path) -> Path:
    """``folder``'s files laid out as ``huggingface_hub`` caches a repository: ``models--org--name/`` with
    content-addressed ``blobs/``, ``snapshots/<commit>/`` of relative symlinks and ``refs/main``."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    snap = repo / "snapshots" / commit
    for d in (repo / "blobs", snap, repo / "refs"):
        d.mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    for f in sorted(folder.iterdir()):
        data = f.read_bytes()
        blob = hashlib.sha256(data).hexdigest()
        (repo / "blobs" / blob).write_bytes(data)
        (snap / f.name).symlink_to(f"../../blobs/{blob}")
    return snap


@pytest.fixture
def offline_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "hub").mkdir()
    return tmp_path / "hub"


def test_hf_teacher_id_loads_from_the_hub_cache_offline(tmp_path, offline_cache):
    local = tmp_path / "tiny-da"
    _save_tiny_depth_anything(local)
    snap = _hub_cache(offline_cache, "tune3d-test/tiny-depth-anything", local)
    teacher = create_teacher("hf:tune3d-test/tiny-depth-anything")
    assert teacher.spec == "hf:tune3d-test/tiny-depth-anything"  # cache keys stay the id, not the path
    assert teacher.kind == "affine_invariant" and teacher.is_disparity
    same = create_teacher(f"hf:{local}")
    torch.testing.assert_close(teacher.predict(IMAGES).depth, same.predict(IMAGES).depth, rtol=0, atol=0)
    assert any(p.is_symlink() for p in snap.iterdir())  # it really read the cache layout


def test_hf_teacher_id_not_cached_offline_is_one_line(offline_cache):
    with pytest.raises(WeightsUnavailableError) as err:
        create_teacher("hf:tune3d-test/not-cached")
    msg = str(err.value)
    assert msg.startswith("hf:tune3d-test/not-cached: not in the Hugging Face cache") and "\n" not in msg
    assert "HF_HUB_OFFLINE" in msg and str(offline_cache) in msg


def test_recon_teacher_weights_as_hub_id(tmp_path, offline_cache):
    from safetensors.torch import save_model

    from tune3d.recon import create_model

    local = tmp_path / "dust3r"
    local.mkdir()
    torch.manual_seed(0)
    save_model(create_model("dust3r_tiny", allow_random_init=True), str(local / "model.safetensors"))
    (local / "model.json").write_text('{"model": "dust3r_tiny"}')
    _hub_cache(offline_cache, "tune3d-test/dust3r-tiny", local)
    teacher = create_teacher("recon:dust3r_tiny@tune3d-test/dust3r-tiny")
    assert teacher.spec == "recon:dust3r_tiny@tune3d-test/dust3r-tiny"
    ref = create_teacher(f"recon:dust3r_tiny@{local / 'model.safetensors'}")
    for a, b in zip(teacher.model.state_dict().values(), ref.model.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(WeightsUnavailableError, match="recon:tune3d-test/missing: not in the Hugging Face"):
        create_teacher("recon:dust3r_tiny@tune3d-test/missing")
