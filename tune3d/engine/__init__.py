"""Shared training-loop pieces on Accelerate: devices, seeding, run folders, checkpoint/resume, logging."""

from tune3d.engine.checkpoint import CheckpointManager
from tune3d.engine.devices import dist_env, make_accelerator, rank_device, resolve_device
from tune3d.engine.logging import RunLogger
from tune3d.engine.runfolder import RunFolder, check_out_dir
from tune3d.engine.schedule import warmup_decay
from tune3d.engine.seed import seed_everything, step_generator

__all__ = [
    "CheckpointManager",
    "RunFolder",
    "RunLogger",
    "check_out_dir",
    "dist_env",
    "make_accelerator",
    "rank_device",
    "resolve_device",
    "seed_everything",
    "step_generator",
    "warmup_decay",
]
