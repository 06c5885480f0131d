"""Device selection and the Accelerator used by every trainer."""

from __future__ import annotations

import logging
import os

import torch
from accelerate import Accelerator

from tune3d.errors import Tune3DError

log = logging.getLogger(__name__)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available else CPU; ``"cuda"`` without CUDA is a user error."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise Tune3DError("--device cuda requested but CUDA is not available on this machine")
    return dev


def make_accelerator(device: str = "auto", mixed_precision: str = "auto", grad_accum: int = 1):
    """An ``accelerate.Accelerator`` for CPU, one GPU or many processes (``accelerate launch``/``torchrun``).

    ``mixed_precision="auto"`` picks bf16 on GPUs that support it, fp16 on other GPUs, and none on CPU.
    Under ``accelerate launch --cpu --num_processes N`` the processes talk over gloo.
    """
    cpu = resolve_device(device).type == "cpu"
    if mixed_precision == "auto":
        if cpu:
            mixed_precision = "no"
        else:
            mixed_precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    elif cpu and mixed_precision != "no":
        log.warning("mixed precision %s ignored on CPU", mixed_precision)
        mixed_precision = "no"
    return Accelerator(cpu=cpu, mixed_precision=mixed_precision, gradient_accumulation_steps=grad_accum)


def dist_env() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from the launcher's environment (``(0, 1, 0)`` when absent)."""
    try:
        rank = int(os.environ.get("RANK", "0"))
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise Tune3DError("RANK / WORLD_SIZE / LOCAL_RANK must be integers") from None
    if world < 1 or not 0 <= rank < world:
        raise Tune3DError(f"invalid RANK={rank} for WORLD_SIZE={world}")
    return rank, world, local


def rank_device(device: str, local_rank: int, world: int) -> str:
    """The device string for this process: under a multi-process launch with ``auto``/``cuda`` and CUDA
    present, ``cuda:<local_rank % device_count>`` (one GPU per process); otherwise ``device`` unchanged."""
    if world > 1 and device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{local_rank % torch.cuda.device_count()}"
    return device
