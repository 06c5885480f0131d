"""Replay mixing for Fin3R: unlabeled single images plus a fraction of labelled multi-view tuples.

The paper's epoch is 20k SA-1B images (teacher pseudo-labels) + 2k Hypersim/TartanAir tuples, i.e. about
10% replay. :class:`ReplayMixDataset` concatenates any two map-style datasets and tags every item;
:class:`ReplaySampler` draws a fixed number of replay indices per epoch (so the ratio is exact, not just
expected), places them at random positions, and is a pure function of ``(seed, epoch)``;
:func:`replay_collate` keeps the two kinds in separate sub-batches; :class:`StepBatchSampler` cuts the
sampler's epochs into per-step batches that depend only on ``(seed, step)``.

Distributed runs: hand the sampler to the DataLoader and let Accelerate shard the batches
(``accelerator.prepare``); every rank builds the same index list from the same seed and epoch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import torch
from torch.utils.data import Dataset, Sampler, default_collate


class Tagged(NamedTuple):
    """One item of a :class:`ReplayMixDataset`: the wrapped sample and whether it is a multi-view tuple."""

    is_multiview: bool
    sample: Any


class ReplayMixDataset(Dataset):
    """Concatenation of two datasets: indices ``[0, len(single))`` are single images, the rest tuples."""

    def __init__(self, single: Dataset, multiview: Dataset) -> None:
        self.single = single
        self.multiview = multiview
        self.n_single = len(single)  # type: ignore[arg-type]
        self.n_multiview = len(multiview)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self.n_single + self.n_multiview

    def __getitem__(self, index: int) -> Tagged:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        if index < self.n_single:
            return Tagged(False, self.single[index])
        return Tagged(True, self.multiview[index - self.n_single])


def _cycled_permutation(n: int, length: int, g: torch.Generator) -> torch.Tensor:
    """``length`` indices in ``[0, n)``: fresh permutations concatenated, so all are used equally often."""
    if length == 0:
        return torch.zeros(0, dtype=torch.long)
    reps = math.ceil(length / n)
    return torch.cat([torch.randperm(n, generator=g) for _ in range(reps)])[:length]


class ReplaySampler(Sampler[int]):
    """Per epoch: ``num_samples`` indices into a :class:`ReplayMixDataset`, exactly
    ``round(num_samples · replay_ratio)`` of them multi-view, in random order.

    ``num_samples`` defaults to ``ceil(n_single / (1 - replay_ratio))``: every single image once per epoch
    plus the replay share on top (the paper's 20k + 2k). Within an epoch, single images are drawn without
    replacement (cycling through fresh permutations if ``num_samples`` asks for more), and so are tuples.
    Deterministic from ``(seed, epoch)``; call :meth:`set_epoch` each epoch.
    """

    def __init__(
        self,
        n_single: int,
        n_multiview: int,
        replay_ratio: float = 0.1,
        num_samples: int | None = None,
        seed: int = 0,
    ) -> None:
        if not 0.0 <= replay_ratio <= 1.0:
            raise ValueError(f"replay_ratio must be in [0, 1], got {replay_ratio}")
        if replay_ratio > 0 and n_multiview == 0:
            raise ValueError("replay_ratio > 0 but the multi-view dataset is empty")
        if replay_ratio < 1 and n_single == 0:
            raise ValueError("replay_ratio < 1 but the single-image dataset is empty")
        if num_samples is None:
            num_samples = n_multiview if replay_ratio == 1 else math.ceil(n_single / (1.0 - replay_ratio))
        self.n_single = n_single
        self.n_multiview = n_multiview
        self.replay_ratio = replay_ratio
        self.num_samples = int(num_samples)
        self.n_replay = round(self.num_samples * replay_ratio)
        self.seed = seed
        self.epoch = 0

    @classmethod
    def for_dataset(cls, dataset: ReplayMixDataset, **kwargs: Any) -> ReplaySampler:
        return cls(dataset.n_single, dataset.n_multiview, **kwargs)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def indices(self) -> torch.Tensor:
        """This epoch's index list (``num_samples``, int64)."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        single = _cycled_permutation(self.n_single, self.num_samples - self.n_replay, g)
        replay = _cycled_permutation(self.n_multiview, self.n_replay, g) + self.n_single
        allidx = torch.cat([single, replay])
        return allidx[torch.randperm(len(allidx), generator=g)]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())


def replay_collate(batch: Sequence[Tagged]) -> dict[str, Any]:
    """Collate :class:`Tagged` items into ``{"single": ..., "multiview": ..., "is_multiview": (B,) bool}``.

    Each kind is collated separately with ``default_collate`` (``None`` when the batch has none of it), so
    single images and multi-view tuples of different shapes never meet in one tensor. ``is_multiview`` keeps
    the original batch order.
    """
    singles = [t.sample for t in batch if not t.is_multiview]
    multis = [t.sample for t in batch if t.is_multiview]
    return {
        "single": default_collate(singles) if singles else None,
        "multiview": default_collate(multis) if multis else None,
        "is_multiview": torch.tensor([bool(t.is_multiview) for t in batch], dtype=torch.bool),
    }


class StepBatchSampler(Sampler[list[int]]):
    """Batches of global steps ``start .. steps-1`` from a :class:`ReplaySampler`'s epoch streams.

    Step ``t`` takes positions ``[t·B, (t+1)·B)`` of the concatenated epoch index lists (epoch ``e`` from
    ``set_epoch(e)``), so every batch depends only on ``(seed, t)``: resuming at ``t`` needs no RNG state.
    With several processes, rank ``r`` takes its contiguous share of the global batch.
    """

    def __init__(
        self, sampler: ReplaySampler, batch_size: int, start: int, steps: int, rank: int = 0, world: int = 1
    ) -> None:
        self.sampler, self.batch_size, self.start, self.steps = sampler, batch_size, start, steps
        self.rank, self.world = rank, world
        self._epoch_cache: dict[int, list[int]] = {}

    def _epoch(self, e: int) -> list[int]:
        if e not in self._epoch_cache:
            self._epoch_cache = {e: self._indices(e)}  # keep one epoch in memory
        return self._epoch_cache[e]

    def _indices(self, e: int) -> list[int]:
        self.sampler.set_epoch(e)
        return self.sampler.indices().tolist()

    def batch(self, step: int) -> list[int]:
        n = len(self.sampler)
        B = self.batch_size * self.world
        out = []
        for pos in range(step * B, (step + 1) * B):
            out.append(self._epoch(pos // n)[pos % n])
        per = self.batch_size
        return out[self.rank * per : (self.rank + 1) * per]

    def __len__(self) -> int:
        return max(0, self.steps - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        for t in range(self.start, self.steps):
            yield self.batch(t)
