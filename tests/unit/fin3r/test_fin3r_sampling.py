"""Replay mixing: exact ratio, determinism, epoch coverage, collate keeps kinds apart; step batches."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from tune3d.fin3r.sampling import ReplayMixDataset, ReplaySampler, StepBatchSampler, Tagged, replay_collate


class Singles(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {"image": torch.full((3, 8, 8), float(i)), "index": i}


class Tuples(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {"images": torch.full((2, 3, 8, 8), -float(i)), "pts3d": torch.zeros(2, 8, 8, 3), "index": i}


def test_ratio_over_1000_draws_and_coverage():
    s = ReplaySampler(n_single=900, n_multiview=37, replay_ratio=0.1, seed=3)
    idx = s.indices()
    assert len(s) == len(idx) == 1000
    n_replay = int((idx >= 900).sum())
    assert abs(n_replay / 1000 - 0.1) <= 0.01
    # every single image exactly once per epoch; tuples cycle evenly
    assert torch.equal(torch.sort(idx[idx < 900]).values, torch.arange(900))
    counts = torch.bincount(idx[idx >= 900] - 900, minlength=37)
    assert counts.max() - counts.min() <= 1
    # replay positions are spread out, not blocked at the end
    pos = torch.nonzero(idx >= 900).flatten().float()
    assert 350 < pos.mean() < 650


@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.5])
def test_ratio_with_explicit_num_samples(ratio):
    s = ReplaySampler(n_single=40, n_multiview=10, replay_ratio=ratio, num_samples=1000, seed=0)
    idx = s.indices()
    assert abs(float((idx >= 40).float().mean()) - ratio) <= 0.01
    assert idx.min() >= 0 and idx.max() < 50


def test_deterministic_and_epoch_aware():
    a = ReplaySampler(100, 20, seed=7)
    b = ReplaySampler(100, 20, seed=7)
    assert list(a) == list(b)
    a.set_epoch(1)
    e1 = list(a)
    assert e1 != list(b)
    b.set_epoch(1)
    assert e1 == list(b)
    assert list(ReplaySampler(100, 20, seed=8)) != list(ReplaySampler(100, 20, seed=7))


def test_invalid_configs():
    with pytest.raises(ValueError):
        ReplaySampler(10, 0, replay_ratio=0.1)
    with pytest.raises(ValueError):
        ReplaySampler(10, 5, replay_ratio=1.5)
    assert len(ReplaySampler(0, 5, replay_ratio=1.0)) == 5


def test_dataloader_collate_keeps_kinds_apart():
    ds = ReplayMixDataset(Singles(30), Tuples(6))
    assert len(ds) == 36
    assert ds[0].is_multiview is False and ds[30].is_multiview is True and ds[-1].sample["index"] == 5
    sampler = ReplaySampler.for_dataset(ds, replay_ratio=0.25, num_samples=40, seed=0)
    loader = DataLoader(ds, batch_size=8, sampler=sampler, collate_fn=replay_collate)
    n_single = n_multi = 0
    for batch in loader:
        mv = batch["is_multiview"]
        assert mv.dtype == torch.bool and len(mv) == 8
        if batch["single"] is not None:
            assert batch["single"]["image"].shape == (int((~mv).sum()), 3, 8, 8)
            assert torch.all(batch["single"]["image"] >= 0)
            n_single += len(batch["single"]["index"])
        if batch["multiview"] is not None:
            assert batch["multiview"]["images"].shape == (int(mv.sum()), 2, 3, 8, 8)
            assert torch.all(batch["multiview"]["images"] <= 0)
            n_multi += len(batch["multiview"]["index"])
    assert (n_single, n_multi) == (30, 10)


def test_collate_single_kind_batch():
    out = replay_collate([Tagged(False, torch.zeros(2)), Tagged(False, torch.ones(2))])
    assert out["multiview"] is None and out["single"].shape == (2, 2)
    assert out["is_multiview"].tolist() == [False, False]


def test_step_batches_are_stateless():
    sampler = ReplaySampler(7, 3, replay_ratio=0.3, seed=5)
    full = list(StepBatchSampler(sampler, 4, 0, 9))
    tail = list(StepBatchSampler(ReplaySampler(7, 3, replay_ratio=0.3, seed=5), 4, 5, 9))
    assert full[5:] == tail
    # two processes split every global batch without overlap
    r0 = StepBatchSampler(sampler, 2, 0, 9, rank=0, world=2).batch(3)
    r1 = StepBatchSampler(sampler, 2, 0, 9, rank=1, world=2).batch(3)
    assert r0 + r1 == full[3]
