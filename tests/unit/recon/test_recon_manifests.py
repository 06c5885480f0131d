"""Our reconstruction models have exactly the official checkpoints' state-dict layout.

Each official configuration is built on the meta device and its ``state_dict()`` is compared with the
manifest in ``shared/reference/manifests`` (key set, shapes, dtypes, tied DPT aliases).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tune3d.recon import create_model, list_models
from tune3d.recon.checkpoint import alias_groups

MANIFESTS = Path(__file__).resolve().parents[3].parent / "shared" / "reference" / "manifests"
# Every family's released configuration; vggt_1b comes from the VGGT family module.
OFFICIAL = sorted({e.name for e in list_models() if e.official} | {"vggt_1b"})


def _manifest(name: str) -> dict:
    path = MANIFESTS / f"{name}.json"
    if not path.is_file():
        pytest.skip(f"manifest {path} not found")
    return json.loads(path.read_text())


@pytest.mark.parametrize("name", OFFICIAL)
def test_state_dict_matches_official_manifest(name: str) -> None:
    if name not in {e.name for e in list_models()}:
        pytest.skip(f"{name} is not registered")
    manifest = _manifest(name)
    model = create_model(name, device="meta")
    sd = model.state_dict()
    expected = manifest["state_dict"]
    assert set(sd) - set(expected) == set(), "keys the official checkpoint does not have"
    assert set(expected) - set(sd) == set(), "official keys we do not have"
    for key, spec in expected.items():
        assert list(sd[key].shape) == spec["shape"], key
        assert str(sd[key].dtype).removeprefix("torch.") == spec["dtype"], key
    ours = {frozenset(g) for g in alias_groups(model)}
    assert ours == {frozenset(g) for g in manifest["aliased_keys"]}


def test_every_official_model_has_a_manifest() -> None:
    official = [e.name for e in list_models() if e.official]
    assert official, "no official configurations registered"
    if not MANIFESTS.is_dir():
        pytest.skip("manifests not available")
    assert [n for n in official if not (MANIFESTS / f"{n}.json").is_file()] == []


def test_meta_model_allocates_nothing() -> None:
    model = create_model("cut3r_512_dpt", device="meta")
    assert all(p.is_meta for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) == _manifest("cut3r_512_dpt")["num_params"]
    assert isinstance(next(model.parameters()), torch.nn.Parameter)
