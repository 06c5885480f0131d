"""engine.RunFolder: config comparison, finished check and stale temp-file cleanup."""

from __future__ import annotations

import pytest

from tune3d.engine.runfolder import RunFolder, fingerprint
from tune3d.errors import Tune3DError
from tune3d.io import write_json, write_yaml


def test_fingerprint_ignores_key_order_and_free_keys():
    a = {"lr": 1e-4, "data": ["x"], "steps": 10}
    b = {"steps": 99, "data": ["x"], "lr": 1e-4}
    assert fingerprint(a, free=["steps"]) == fingerprint(b, free=["steps"])
    assert fingerprint(a) != fingerprint(b)
    assert fingerprint(a, free=["steps"]) != fingerprint({**a, "lr": 2e-4}, free=["steps"])


def test_check_resume_names_changed_keys_and_allows_free_ones(tmp_path):
    record = {"model": "dust3r_tiny", "lr": 1e-4, "resolution": (32, 48), "steps": 5}
    run = RunFolder(tmp_path, free=["steps"])
    run.check_resume(record)  # nothing saved yet: anything goes
    write_yaml(tmp_path / "config.yaml", record)
    run.check_resume({**record, "steps": 50})  # tuples saved as YAML lists still compare equal
    with pytest.raises(Tune3DError, match=r"different config \(lr, model\)"):
        run.check_resume({**record, "lr": 3e-4, "model": "vggt_tiny"})


def test_is_finished_needs_metrics_and_same_settings(tmp_path):
    record = {"lr": 1e-4}
    run = RunFolder(tmp_path)
    write_yaml(tmp_path / "config.yaml", record)
    assert not run.is_finished(record)
    write_json(tmp_path / "metrics.json", {})
    assert run.is_finished(record) and not run.is_finished({"lr": 2e-4})


def test_clean_stale_removes_only_temporaries(tmp_path):
    keep = [tmp_path / "metrics.json", tmp_path / "checkpoints" / "step_00000002" / "state.json"]
    stale = [tmp_path / ".metrics.json.x1.tmp", tmp_path / "renders" / ".a.png.y2.tmp"]
    for p in keep + stale:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x")
    (tmp_path / "checkpoints" / ".step_00000004.z3").mkdir()
    removed = RunFolder(tmp_path).clean_stale()
    assert len(removed) == 3 and all(p.is_file() for p in keep)
    assert (
        not any(p.exists() for p in stale) and not (tmp_path / "checkpoints" / ".step_00000004.z3").exists()
    )


def test_out_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(Tune3DError, match="is not a folder"):
        RunFolder(tmp_path / "f")
    with pytest.raises(Tune3DError, match="is a file"):
        RunFolder(tmp_path / "f" / "sub")


def test_stage_compare_and_refusal_hooks(tmp_path):
    """A stage may bring its own comparison (lift: nested fields, content not path) and its error text."""

    def compare(old, record):  # only "model" counts, nested under "net"
        return [] if old["net"]["model"] == record["net"]["model"] else ["net.model"]

    run = RunFolder(tmp_path, compare=compare, refusal="{out}: other run (changed: {changed})")
    write_yaml(tmp_path / "config.yaml", {"net": {"model": "a", "device": "cpu"}})
    run.check_resume({"net": {"model": "a", "device": "cuda"}})
    with pytest.raises(Tune3DError, match=r"^.+: other run \(changed: net\.model\)$"):
        run.check_resume({"net": {"model": "b"}})
    write_json(tmp_path / "metrics.json", {})
    assert run.is_finished({"net": {"model": "a"}}) and not run.is_finished({"net": {"model": "b"}})


def test_config_that_is_no_mapping_is_not_resumed(tmp_path):
    (tmp_path / "config.yaml").write_text("[1, 2]\n")
    run = RunFolder(tmp_path)
    with pytest.raises(Tune3DError, match=r"different config \(lr\)"):
        run.check_resume({"lr": 1e-4})


def test_check_checkpoint_compares_the_stored_fingerprint(tmp_path):
    record = {"lr": 1e-4, "steps": 5}
    run = RunFolder(tmp_path, free=["steps"], refusal="{where}: checkpoint of another run")
    state = {"fingerprint": run.fingerprint(record)}
    run.check_checkpoint(tmp_path / "ckpt", state, {**record, "steps": 9})
    with pytest.raises(Tune3DError, match=r"ckpt: checkpoint of another run$"):
        run.check_checkpoint(tmp_path / "ckpt", state, {**record, "lr": 2e-4})
    with pytest.raises(Tune3DError, match="another run"):
        run.check_checkpoint(tmp_path / "ckpt", {}, record)  # written before fingerprints: refused
