"""What both demo halves share: the demo config, its input checks, the per-stage log and skip helpers."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tune3d.errors import Tune3DError

# Library imports stay inside the functions: the CLI imports this module at start-up (cli/demo.py).

METHODS = ("fit3d", "fin3r", "all")
DEFAULT_TEACHER = "hf:depth-anything/Depth-Anything-V2-Small-hf"
_FRAME_ITEM = r"-?\d*(:-?\d*){0,2}"
_FRAMES_RE = re.compile(rf"{_FRAME_ITEM}(,{_FRAME_ITEM})*")  # the syntax of data.parse_frame_range


@dataclass
class DemoConfig:
    """Sizes of the demo run. The defaults finish in under 10 minutes on 2 CPU cores."""

    method: str = "all"
    out: str = "tune3d_demo"
    data: str | None = None  # a real scene for the FiT3D part (default: synthetic scenes)
    seed: int = 0
    device: str = "auto"
    # synthetic data
    scenes: int = 3  # training scenes (lifted, fine-tuned on, probe training data; recon training data)
    heldout_scenes: int = 2  # probe test data; Fin3R evaluation data
    mono_scenes: int = 1  # Fin3R unlabeled single images
    views: int = 24
    resolution: tuple[int, int] = (96, 128)
    # FiT3D
    backbone: str = "dinov2_vits14"
    weights: str | None = None
    lift_iters: int = 60
    lift_points: int = 3000
    finetune_steps: int = 60
    finetune_lr: float = 1e-4
    probe_iters: int = 200
    probe_max_depth: float = 10.0
    train_frames: str | None = None  # frames of --data for lifting/fine-tuning and probe training
    test_frames: str | None = None  # frames of --data for probe testing
    # Fin3R
    base_model: str = "dust3r_tiny"
    recon_steps: int = 400
    recon_lr: float = 5e-4
    teacher: str = DEFAULT_TEACHER
    distill_steps: int = 150
    distill_lr: float = 1e-3
    eval_pairs: int = 8
    eval_frames: int = 12
    progress: bool = False

    def __post_init__(self) -> None:
        self.resolution = tuple(int(v) for v in self.resolution)  # type: ignore[assignment]
        if self.method not in METHODS:
            raise Tune3DError(f"--method {self.method!r}: choose one of {', '.join(METHODS)}")
        for name in (
            "scenes",
            "heldout_scenes",
            "views",
            "lift_iters",
            "finetune_steps",
            "probe_iters",
            "recon_steps",
            "distill_steps",
            "lift_points",
            "eval_pairs",
            "eval_frames",
        ):
            if getattr(self, name) < 1:
                raise Tune3DError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.mono_scenes < 0:
            raise Tune3DError(f"--mono-scenes must be >= 0, got {self.mono_scenes}")
        if self.views < 4:
            raise Tune3DError(f"--views must be >= 4 (lifting holds out every 8th view), got {self.views}")
        if len(self.resolution) != 2 or min(self.resolution) < 28:
            raise Tune3DError(f"--resolution must be HxW with both sides >= 28, got {self.resolution}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["resolution"] = list(self.resolution)
        return d


@dataclass
class StageLog:
    """Per-stage progress lines (stderr), seconds and notes, persisted to ``OUT/stages.json``.

    Seconds of stages skipped on a rerun are kept from the run that did them.
    """

    path: Path
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    ran: set[str] = field(default_factory=set)  # stages run by this process

    @classmethod
    def open(cls, path: Path) -> StageLog:
        log = cls(path)
        if path.is_file():
            try:
                old = json.loads(path.read_text())
                log.stages = dict(old.get("stages", {}))
            except (OSError, json.JSONDecodeError):
                pass
        return log

    def say(self, text: str) -> None:
        print(f"[demo] {text}", file=sys.stderr, flush=True)

    def note(self, text: str) -> None:
        """A one-line remark for the user (printed now and shown in the report)."""
        if text not in self.notes:
            self.notes.append(text)
        self.say(f"note: {text}")

    def run(self, name: str, done: Callable[[], bool], fn: Callable[[], Any], what: str = "") -> Any:
        """Run stage ``name`` unless ``done()`` says it finished earlier; record its seconds."""
        if done():
            if name not in self.ran:  # shared stages (the synthetic data) are asked for twice per run
                self.say(f"{name}: done earlier, skipping")
                self.stages.setdefault(name, {"seconds": None})["skipped"] = True
                self.save()
            return None
        self.say(f"{name}: {what or 'running'} ...")
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        # CPU seconds (all threads) next to wall seconds: on a shared machine they tell what the stage costs
        self.stages[name] = {"seconds": round(dt, 2), "cpu_seconds": round(cpu, 2), "skipped": False}
        self.ran.add(name)
        self.say(f"{name}: finished in {dt:.1f} s ({cpu:.1f} s CPU)")
        self.save()
        return result

    def seconds(self, prefix: str) -> float:
        """Total recorded seconds of the stages whose name starts with ``prefix``."""
        return round(
            sum(float(s.get("seconds") or 0.0) for k, s in self.stages.items() if k.startswith(prefix)), 2
        )

    def save(self) -> None:
        from tune3d.io import write_json

        write_json(self.path, {"stages": self.stages, "notes": self.notes})


def metrics_done(folder: Path, name: str = "metrics.json") -> Callable[[], bool]:
    return lambda: (Path(folder) / name).is_file()


def drop_checkpoints(folder: Path) -> None:
    """Delete a finished stage's resume checkpoints (the fine-tuning ones hold a ViT and its AdamW state,
    ~250 MB for ViT-S); the exported weights and ``metrics.json`` stay."""
    shutil.rmtree(Path(folder) / "checkpoints", ignore_errors=True)


def check_inputs(cfg: DemoConfig) -> None:
    """Check every name, path and option the chosen parts use before the first stage runs, so a typo
    fails in a second instead of after minutes of work (and nothing is written)."""
    from tune3d.engine import resolve_device

    resolve_device(cfg.device)
    if cfg.method in ("fit3d", "all"):
        from tune3d.backbones import get_spec

        get_spec(cfg.backbone)
        if cfg.weights is not None and not Path(cfg.weights).exists():
            raise Tune3DError(f"{cfg.weights}: --weights not found")
        if cfg.data is not None:
            from tune3d.data import detect_format

            detect_format(cfg.data)
        for flag, spec in (("--train-frames", cfg.train_frames), ("--test-frames", cfg.test_frames)):
            if spec is not None and not _FRAMES_RE.fullmatch(spec.replace(" ", "")):
                raise Tune3DError(f"{flag} {spec!r}: expected A:B[:STEP] (comma-separated list ok)")
    if cfg.method in ("fin3r", "all"):
        from tune3d.recon import get_entry

        get_entry(cfg.base_model)
        scheme, _, rest = cfg.teacher.partition(":")
        if not ((scheme == "sensor" and not rest) or (scheme in ("hf", "moge", "recon") and rest)):
            raise Tune3DError(
                f"--teacher {cfg.teacher!r}: use hf:<id>, moge:<id>, recon:<model>[@weights] or sensor"
            )
        if scheme == "recon":
            get_entry(rest.partition("@")[0])
