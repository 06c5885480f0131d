"""recon.export.write_reconstruct_run: every file of a ``tune3d reconstruct`` run, config.yaml last."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from tune3d.recon.export import write_reconstruct_run
from tune3d.recon.inference import Reconstruction
from tune3d.recon.reconstruct_config import RECORD_KEYS, ReconstructConfig, run_record

S, H, W = 2, 6, 8


def _recon(pairs: list[tuple[int, int]]) -> Reconstruction:
    u, v = np.meshgrid(np.arange(W), np.arange(H))
    pts = np.stack([u / W, v / H, np.full((H, W), 2.0)], -1)[None].repeat(S, 0).astype(np.float32)
    K = np.repeat(np.array([[8.0, 0, W / 2], [0, 8.0, H / 2], [0, 0, 1]])[None], S, 0)
    conf = np.full((S, H, W), 5.0, np.float32)
    return Reconstruction(
        pts, conf, pts[..., 2], None, np.repeat(np.eye(4)[None], S, 0), K, "alignment", pairs
    )


def test_writes_outputs_then_the_config_that_records_the_run(tmp_path):
    prep = SimpleNamespace(
        valid=torch.ones(S, H, W, dtype=torch.bool),
        colors=np.full((S, H, W, 3), 128, np.uint8),
        names=["a.png", "b.png"],
    )
    cfg = ReconstructConfig(previews=False, align="global", export="colmap")
    summary = write_reconstruct_run(
        tmp_path, _recon([(0, 1), (1, 0)]), prep, cfg, 1.5, model="dust3r_tiny", num_views=2,
        images=[tmp_path / "a.png", tmp_path / "b.png"], weights=None, poses=tmp_path / "cams.json",
    )  # fmt: skip
    assert summary["files"] == ["predictions.npz", "points.ply", "cameras.json", "colmap/"]
    assert summary["points"] == S * H * W
    rec = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert list(rec)[: len(RECORD_KEYS)] == list(RECORD_KEYS)  # inputs first, then the settings
    assert rec["conf_threshold"] == 1.5 and rec["alignment"] == "global" and rec["pairs"] == [[0, 1], [1, 0]]
    assert rec["images"] == [str(tmp_path / "a.png"), str(tmp_path / "b.png")] and rec["weights"] is None
    assert rec["poses"] == str(tmp_path / "cams.json") and rec["export"] == "colmap"

    write_reconstruct_run(
        tmp_path / "one", _recon([]), prep, ReconstructConfig(previews=False), 0.0,
        model="vggt_tiny", num_views=0, images=["a.png", "b.png"],
    )  # fmt: skip
    assert yaml.safe_load((tmp_path / "one" / "config.yaml").read_text())["alignment"] == "one_forward"


def test_run_record_accepts_only_record_keys():
    with pytest.raises(ValueError, match="not a reconstruct record key: size"):
        run_record(ReconstructConfig(), 3.0, size=5)
