import json
from types import SimpleNamespace

import numpy as np

from tune3d.recon.export import nonfinite_cameras, write_cameras


def _strict(text: str):
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_nonfinite_predicted_cameras_are_marked_invalid_not_written_as_infinity(tmp_path):
    K = np.stack([np.diag([50.0, 50.0, 1.0])] * 3)
    K[1, 0, 0] = np.inf  # an untrained camera head's focal
    c2w = np.stack([np.eye(4)] * 3)
    c2w[2, 0, 3] = np.nan
    recon = SimpleNamespace(c2w=c2w, K=K, camera_source="camera_head")
    assert nonfinite_cameras(recon) == [1, 2]
    write_cameras(tmp_path / "cameras.json", recon, ["a", "b", "c"], 48, 64)
    frames = _strict((tmp_path / "cameras.json").read_text())["frames"]
    assert frames[0]["K"] == K[0].tolist() and frames[0]["c2w"] == c2w[0].tolist()
    assert frames[1]["invalid"] == ["K"] and "K" not in frames[1] and frames[1]["c2w"] == c2w[1].tolist()
    assert frames[2]["invalid"] == ["c2w"] and "c2w" not in frames[2] and frames[2]["K"] == K[2].tolist()
    assert nonfinite_cameras(SimpleNamespace(c2w=None, K=None)) == []
