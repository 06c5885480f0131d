"""Shared training-loop pieces on Accelerate: devices, seeding, checkpoint/resume, logging, progress."""

from tune3d.engine.checkpoint import CheckpointManager
from tune3d.engine.devices import make_accelerator, resolve_device
from tune3d.engine.logging import RunLogger
from tune3d.engine.schedule import warmup_decay
from tune3d.engine.seed import seed_everything, step_generator

__all__ = [
    "CheckpointManager",
    "RunLogger",
    "make_accelerator",
    "resolve_device",
    "seed_everything",
    "step_generator",
    "warmup_decay",
]
