import pytest

from tune3d.engine.devices import dist_env, rank_device
from tune3d.errors import Tune3DError


def test_dist_env_reads_the_launcher(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    assert dist_env() == (0, 1, 0)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert dist_env() == (3, 4, 1)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(Tune3DError, match="invalid RANK"):
        dist_env()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(Tune3DError, match="must be integers"):
        dist_env()


def test_rank_device_without_cuda_keeps_the_request(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert rank_device("auto", 1, 4) == "auto" and rank_device("cpu", 0, 2) == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert rank_device("auto", 3, 4) == "cuda:1" and rank_device("cuda", 2, 4) == "cuda:0"
    assert rank_device("auto", 0, 1) == "auto" and rank_device("cpu", 3, 4) == "cpu"
