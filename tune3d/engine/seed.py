"""Seeding. Training loops draw their randomness from ``(seed, step)`` so a resumed run replays exactly."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """A CPU generator determined by (seed, step, rank): the randomness of one training step.

    Stateless by construction, so resuming at step k reproduces the uninterrupted run without
    having to restore RNG state from a checkpoint.
    """
    g = torch.Generator()
    g.manual_seed((seed * 1_000_003 + step * 7_919 + rank * 104_729) % (2**63))
    return g
