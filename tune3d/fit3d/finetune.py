"""FiT3D stage II: 3D-aware fine-tuning of a 2D ViT against features rendered from lifted scenes.

Paper Alg. 1 (``finetune.py``/``engine.py`` of the official code): sample a (scene, view) pair, render the
scene's feature Gaussians without gradients at the lift resolution, decode with its 3x3 conv, flip
image/target/mask together with p=0.5, run the ViT on the image resized to a patch multiple, reduce target
and mask bilinearly to the token grid and minimise the masked L1 against the final-norm patch tokens.
All parameters train (AdamW 1e-5, wd 1e-4, clip 0.1, batch 2, one epoch).

Distributed runs (``accelerate launch`` / ``torchrun``) split every *global* batch (per-process batch x
processes) into disjoint per-rank slices; the loss is normalised by the global mask sum, so N processes
compute the same gradients as one process with the global batch. Sample order is a seeded permutation
per epoch and flips come from ``step_generator(seed, step)``: a resumed run replays the same steps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from tune3d.backbones import create_backbone, get_spec, network_input_size
from tune3d.engine import CheckpointManager, RunLogger, make_accelerator, seed_everything, step_generator
from tune3d.engine.runfolder import RunFolder
from tune3d.engine.schedule import warmup_decay
from tune3d.errors import Tune3DError
from tune3d.fit3d.export import export_backbone
from tune3d.fit3d.lifted import LiftedCache, LiftedScene, find_lifted_dirs, open_lifted
from tune3d.fit3d.target_cache import TargetCache, scene_fingerprint, target_key
from tune3d.fit3d.targets import MASK_MODES, hflip, masked_l1_sums, render_grid_target
from tune3d.io import write_json, write_yaml

log = logging.getLogger(__name__)

_PERM_STREAM = 1_000_000  # step_generator "rank" reserved for the per-epoch permutation


@dataclass
class FinetuneConfig:
    """Stage II hyper-parameters (defaults: the paper's) and run settings."""

    epochs: int = 1
    max_steps: int | None = None  # cap on optimizer steps (None: ``epochs`` full passes)
    batch_size: int = 2  # per process; global batch = batch_size x processes
    lr: float = 1e-5
    weight_decay: float = 1e-4
    grad_clip: float = 0.1  # max grad norm; 0 disables
    lr_schedule: str = "constant"  # constant (paper) | cosine
    warmup_steps: int = 0
    flip_p: float = 0.5
    views: str = "train"  # train | all (also the lift's held-out views)
    resolution: tuple[int, int] | None = None  # (H, W); None: each scene's lift resolution
    resize: str = "floor"  # how images reach a patch multiple: floor (paper) | resize | pad
    mask: str = "alpha"  # alpha | binary | none (see tune3d.fit3d.targets)
    alpha_threshold: float = 0.5
    val_max_views: int | None = None  # per validation scene (None: all its views)
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 10
    cache_mb: float = 8192.0  # byte budget of loaded Gaussians (LRU)
    target_cache_mb: float = 1024.0  # in-memory budget of rendered per-view targets (LRU); 0 disables
    target_cache_dir: str | None = None  # also keep targets here as safetensors, reused across runs
    seed: int = 42
    device: str = "auto"
    mixed_precision: str = "auto"  # auto | no | bf16 | fp16
    raster_backend: str = "auto"  # auto | torch | gsplat
    prefetch: bool = True  # render the next step's targets on a worker thread while this step trains
    progress: bool = True

    def __post_init__(self) -> None:
        if self.resolution is not None:
            self.resolution = tuple(int(v) for v in self.resolution)
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.max_steps is None or self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (0.0 <= self.flip_p <= 1.0, f"flip_p must be in [0, 1], got {self.flip_p}"),
            (self.views in ("train", "all"), f"views must be train or all, got {self.views!r}"),
            (self.mask in MASK_MODES, f"mask must be one of {', '.join(MASK_MODES)}, got {self.mask!r}"),
            (self.lr_schedule in ("constant", "cosine"), "lr_schedule must be constant or cosine"),
            (self.resize in ("floor", "resize", "pad"), "resize must be floor, resize or pad"),
            (self.checkpoint_every >= 1, f"checkpoint_every must be >= 1, got {self.checkpoint_every}"),
            (self.cache_mb > 0, f"cache_mb must be > 0, got {self.cache_mb}"),
            (self.target_cache_mb >= 0, f"target_cache_mb must be >= 0, got {self.target_cache_mb}"),
            (self.resolution is None or len(self.resolution) == 2, "resolution must be (H, W)"),
        ]
        for ok, msg in checks:
            if not ok:
                raise Tune3DError(f"finetune config: {msg}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["resolution"] = list(self.resolution) if self.resolution else None
        return d


def lr_at(cfg: FinetuneConfig, step: int, total_steps: int) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warm-up, then constant or cosine to 0."""
    return cfg.lr * warmup_decay(step, total_steps, cfg.warmup_steps, cfg.lr_schedule)


class TokenModel(nn.Module):
    """The trained module: images ``[B,3,H,W]`` in [0,1] -> final-norm patch tokens ``[B,C,h,w]``.

    Wraps a :class:`tune3d.backbones.Backbone` so DDP sees a plain tensor output; all parameters are
    the timm model's.
    """

    def __init__(self, backbone, resize: str = "floor") -> None:
        super().__init__()
        self.backbone = backbone
        self.resize = resize

    def forward(self, images: Tensor) -> Tensor:
        return self.backbone(images, norm=True, resize=self.resize).patch


@dataclass
class Sample:
    """One training view: image ``[3,H,W]``, reduced target ``[C,h,w]`` and mask ``[1,h,w]``."""

    image: Tensor
    target: Tensor
    mask: Tensor


@dataclass
class SampleSource:
    """Turns (scene, view) pairs into :class:`Sample` objects (renders targets on the token grid, or takes
    them from ``targets``: the Gaussians and decoder are frozen, so a view's target never changes)."""

    scenes: list[LiftedScene]
    cache: LiftedCache
    patch_size: int
    cfg: FinetuneConfig
    device: torch.device
    targets: TargetCache | None = None
    pairs: list[tuple[int, int]] = field(init=False)
    _fingerprints: dict[int, str] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.pairs = [(i, v) for i, s in enumerate(self.scenes) for v in s.views(self.cfg.views)]

    def __len__(self) -> int:
        return len(self.pairs)

    def grid(self, height: int, width: int) -> tuple[int, int]:
        Ht, Wt = network_input_size(height, width, self.patch_size, self.cfg.resize)
        return Ht // self.patch_size, Wt // self.patch_size

    def load(self, index: int) -> Sample:
        si, view = self.pairs[index]
        scene, cfg = self.scenes[si], self.cfg
        image, viewmat, K = scene.view(view, cfg.resolution)
        H, W = image.shape[-2:]
        grid = self.grid(H, W)
        key = None
        if self.targets is not None:
            if si not in self._fingerprints:
                self._fingerprints[si] = scene_fingerprint(scene.path)
            fp = self._fingerprints[si]
            key = target_key(
                fp, view, viewmat, K, (H, W), grid, cfg.mask, cfg.alpha_threshold, cfg.raster_backend
            )
            hit = self.targets.get(key)
            if hit is not None:
                return Sample(image.to(self.device), hit[0].to(self.device), hit[1].to(self.device))
        gaussians = self.cache.get(scene)
        target, mask = render_grid_target(
            gaussians, viewmat, K, H, W, grid, cfg.raster_backend, self.device, cfg.mask, cfg.alpha_threshold
        )
        if key is not None:
            self.targets.put(key, target[0], mask[0])
        return Sample(image.to(self.device), target[0], mask[0])


def collate(samples: list[Sample], flips: Tensor) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Stack samples of equal size into ``(images, targets, masks)`` groups, flipped where ``flips``."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, s in enumerate(samples):
        groups.setdefault(tuple(s.image.shape) + tuple(s.target.shape), []).append(i)
    out = []
    for idx in groups.values():
        images = torch.stack([samples[i].image for i in idx])
        targets = torch.stack([samples[i].target for i in idx])
        masks = torch.stack([samples[i].mask for i in idx])
        out.append(hflip(images, targets, masks, flip=flips[idx]))
    return out


def epoch_order(seed: int, epoch: int, n: int) -> Tensor:
    """The seeded sample permutation of ``epoch`` (identical on every rank and after resuming)."""
    return torch.randperm(n, generator=step_generator(seed, epoch, rank=_PERM_STREAM))


def global_batch(seed: int, step: int, n: int, global_size: int, flip_p: float) -> tuple[Tensor, Tensor]:
    """Sample indices ``[G]`` and flip decisions ``[G]`` of optimizer step ``step`` (drop-last epochs)."""
    per_epoch = n // global_size
    epoch, pos = divmod(step, per_epoch)
    idx = epoch_order(seed, epoch, n)[pos * global_size : (pos + 1) * global_size]
    flips = torch.rand(global_size, generator=step_generator(seed, step)) < flip_p
    return idx, flips


class Finetuner:
    """One stage II run's state: accelerator, model, optimizer, data; ``train_step``/``evaluate`` use it."""

    def __init__(
        self,
        scenes: list[LiftedScene],
        backbone,
        cfg: FinetuneConfig,
        accelerator,
        val_scenes: list[LiftedScene] | None = None,
    ) -> None:
        self.cfg = cfg
        self.acc = accelerator
        self.backbone = backbone
        self.world, self.rank = accelerator.num_processes, accelerator.process_index
        self.global_size = cfg.batch_size * self.world
        cache = LiftedCache(int(cfg.cache_mb * 2**20), device="cpu")
        self.cache = cache
        targets = None
        if cfg.target_cache_mb > 0 or cfg.target_cache_dir is not None:
            targets = TargetCache(int(cfg.target_cache_mb * 2**20), cfg.target_cache_dir)
        self.targets = targets
        self.data = SampleSource(scenes, cache, backbone.patch_size, cfg, accelerator.device, targets)
        self.val = SampleSource(
            val_scenes or [], cache, backbone.patch_size, cfg, accelerator.device, targets
        )
        if cfg.val_max_views is not None:
            self.val.pairs = _limit_per_scene(self.val.pairs, cfg.val_max_views)
        if len(self.data) < self.global_size:
            raise Tune3DError(
                f"{len(self.data)} training views are fewer than one global batch "
                f"({cfg.batch_size} x {self.world} processes)"
            )
        self.steps_per_epoch = len(self.data) // self.global_size
        total = self.steps_per_epoch * cfg.epochs
        self.total_steps = min(total, cfg.max_steps) if cfg.max_steps else total
        model = TokenModel(backbone, cfg.resize)
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.model, self.optimizer = accelerator.prepare(model, optimizer)
        if hasattr(self.model, "broadcast_buffers"):
            # The only buffers are the constant mean/std; skipping their per-forward broadcast lets ranks
            # run different numbers of forwards (validation shards, mixed image sizes) without deadlock.
            self.model.broadcast_buffers = False

    @property
    def timm_model(self) -> nn.Module:
        return self.acc.unwrap_model(self.model).backbone.timm_model

    def local_slice(self, step: int) -> tuple[Tensor, Tensor]:
        """This rank's sample indices and flips of global step ``step``."""
        idx, flips = global_batch(self.cfg.seed, step, len(self.data), self.global_size, self.cfg.flip_p)
        sl = slice(self.rank * self.cfg.batch_size, (self.rank + 1) * self.cfg.batch_size)
        return idx[sl], flips[sl]

    def load_step(self, step: int) -> list[tuple[Tensor, Tensor, Tensor]]:
        idx, flips = self.local_slice(step)
        return collate([self.data.load(int(i)) for i in idx], flips)

    def prefetched_steps(self, start: int, stop: int) -> Iterator[list[tuple[Tensor, Tensor, Tensor]]]:
        """``load_step(s)`` for ``s`` in ``[start, stop)``; with ``cfg.prefetch`` step ``s + 1`` is loaded
        (rendered) on a worker thread while the caller trains step ``s``. Targets are a pure function of
        the step, so results are identical; only one load runs at a time and nothing else touches the
        caches meanwhile, so they need no lock. A failed load raises when its step is asked for."""
        if not self.cfg.prefetch:
            yield from (self.load_step(s) for s in range(start, stop))
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fit3d-targets") as pool:
            pending = pool.submit(self.load_step, start) if start < stop else None
            for s in range(start, stop):
                groups = pending.result()
                pending = pool.submit(self.load_step, s + 1) if s + 1 < stop else None
                try:
                    yield groups
                except GeneratorExit:
                    if pending is not None:
                        pending.cancel()
                    raise

    def train_step(self, step: int, groups: list[tuple[Tensor, Tensor, Tensor]]) -> float:
        """One optimizer step on pre-loaded groups; returns the global-batch loss."""
        acc = self.acc
        for g in self.optimizer.param_groups:
            g["lr"] = lr_at(self.cfg, step, self.total_steps)
        self.model.train()
        den_local = sum(m.float().sum() * t.shape[1] for _, t, m in groups)
        den = acc.reduce(den_local.detach().clone(), reduction="sum").clamp_min(1e-8)
        num_total = torch.zeros((), device=acc.device)
        for k, (images, targets, masks) in enumerate(groups):
            last = k == len(groups) - 1
            ctx = acc.no_sync(self.model) if not last else contextlib.nullcontext()
            with ctx:
                out = self.model(images)
                num, _ = masked_l1_sums(out, targets, masks)
                # x world: DDP averages gradients over ranks, the global loss sums them
                acc.backward(num * self.world / den)
            num_total += num.detach()
        if self.cfg.grad_clip > 0:
            acc.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(acc.reduce(num_total, reduction="sum") / den)

    @torch.no_grad()
    def evaluate(self) -> float | None:
        """Masked L1 over all validation views (no flips), summed over ranks; None without val scenes."""
        if len(self.val) == 0:
            return None
        model = self.acc.unwrap_model(self.model)
        model.eval()
        num = torch.zeros((), device=self.acc.device)
        den = torch.zeros((), device=self.acc.device)
        mine = list(range(self.rank, len(self.val), self.world))
        no_flip = torch.zeros(self.cfg.batch_size, dtype=torch.bool)
        for start in range(0, len(mine), self.cfg.batch_size):
            chunk = [self.val.load(i) for i in mine[start : start + self.cfg.batch_size]]
            for images, targets, masks in collate(chunk, no_flip[: len(chunk)]):
                with self.acc.autocast():
                    out = model(images)
                n, d = masked_l1_sums(out, targets, masks)
                num += n
                den += d
        num, den = self.acc.reduce(num, reduction="sum"), self.acc.reduce(den, reduction="sum")
        return float(num / den.clamp_min(1e-8))

    # ------------------------------------------------------------------ checkpoints
    def state_tensors(self) -> dict[str, Tensor]:
        return {k: v.detach().cpu() for k, v in self.timm_model.state_dict().items()}

    def optim_state(self) -> dict[str, Any]:
        state = {"optimizer": self.optimizer.state_dict()}
        if getattr(self.acc, "scaler", None) is not None:
            state["scaler"] = self.acc.scaler.state_dict()
        return state

    def restore(self, tensors: dict[str, Tensor], optim: dict[str, Any] | None) -> None:
        self.timm_model.load_state_dict(tensors, strict=True)
        if optim is not None:
            self.optimizer.load_state_dict(optim["optimizer"])
            if "scaler" in optim and getattr(self.acc, "scaler", None) is not None:
                self.acc.scaler.load_state_dict(optim["scaler"])


def _limit_per_scene(pairs: list[tuple[int, int]], k: int) -> list[tuple[int, int]]:
    """At most ``k`` views per scene, evenly spaced."""
    by_scene: dict[int, list[tuple[int, int]]] = {}
    for p in pairs:
        by_scene.setdefault(p[0], []).append(p)
    out = []
    for ps in by_scene.values():
        if len(ps) <= k:
            out.extend(ps)
        else:
            out.extend(ps[round(i * (len(ps) - 1) / max(1, k - 1))] for i in range(k))
    return out


def open_scenes(
    dirs: list[str | os.PathLike],
    width: int,
    backbone_name: str,
    scene_root: str | os.PathLike | None = None,
) -> list[LiftedScene]:
    """Open lifted scenes (sources looked up under ``scene_root`` when given) and check their decoder
    width against the backbone's."""
    scenes = [open_lifted(d, scene_root=scene_root) for d in find_lifted_dirs(dirs)]
    for s in scenes:
        if s.width != width:
            raise Tune3DError(
                f"{s.path}: lifted features are {s.width}-d but {backbone_name} has width {width} "
                f"(lifted with {s.backbone or 'another backbone'}; lift it again with {backbone_name})"
            )
        if s.backbone and s.backbone != backbone_name:
            log.warning("%s was lifted with %s, fine-tuning %s", s.path, s.backbone, backbone_name)
    return scenes


def finetune(
    lifted_dirs: list[str | os.PathLike],
    backbone_name: str,
    cfg: FinetuneConfig,
    out_dir: str | os.PathLike,
    weights: str | os.PathLike | None = None,
    allow_random_init: bool = False,
    val_lifted_dirs: list[str | os.PathLike] | None = None,
    scene_root: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Run FiT3D stage II and export the fine-tuned backbone into ``out_dir``; returns ``metrics.json``.

    Writes ``config.yaml``, ``metrics.jsonl`` + ``tb/`` (every ``log_every`` steps), ``checkpoints/`` (every
    ``checkpoint_every`` steps; an existing checkpoint is resumed), then ``backbone.safetensors`` +
    ``backbone.json`` (loadable by plain timm and by ``tune3d features --weights``) and ``metrics.json``.
    Works unchanged under ``accelerate launch``/``torchrun`` (one process per device).
    """
    run = RunFolder(out_dir, free=RESUME_FREE, refusal=REFUSAL)
    out = run.path
    acc = make_accelerator(cfg.device, cfg.mixed_precision)
    main = acc.is_main_process
    seed_everything(cfg.seed)
    if not lifted_dirs:
        raise Tune3DError("finetune needs at least one lifted scene (--lifted DIR)")
    spec = get_spec(backbone_name)  # check the data against the architecture before loading weights
    scenes = open_scenes(list(lifted_dirs), spec.width, spec.name, scene_root)
    val_scenes = open_scenes(list(val_lifted_dirs or []), spec.width, spec.name, scene_root)
    backbone = create_backbone(
        backbone_name,
        weights,
        allow_random_init=allow_random_init,
        device=acc.device,
        precision="fp32",
        seed=cfg.seed,
    )
    run_config = {
        "backbone": backbone.name,
        "weights": None if weights is None else str(weights),
        "base_weights": backbone.weights,
        "lifted": [str(s.path) for s in scenes],
        "val_lifted": [str(s.path) for s in val_scenes],
        "num_processes": acc.num_processes,
        **cfg.to_dict(),
    }
    ckpts = CheckpointManager(out, keep=cfg.keep_checkpoints)
    resumed = ckpts.load()
    if resumed is not None:  # before writing anything: a refused run's folder stays as it was
        run.check_checkpoint(ckpts.latest(), resumed[2], run_config)
    if main:
        run.prepare()  # also drops checkpoint temp folders a killed run left
        write_yaml(out / "config.yaml", run_config)

    trainer = Finetuner(scenes, backbone, cfg, acc, val_scenes)
    state: dict[str, Any] = {"step": 0, "seconds": 0.0, "first_loss": None, "recent": [], "val_before": None}
    if resumed is not None:
        tensors, optim, saved = resumed
        trainer.restore(tensors, optim)
        state.update(saved)
        log.info("resuming at step %d of %d", state["step"], trainer.total_steps)
    logger = RunLogger(out, enabled=main, resume_step=state["step"] if resumed else None)

    start = state["step"]
    if start == 0 and state["val_before"] is None:
        state["val_before"] = trainer.evaluate()
        if state["val_before"] is not None:
            logger.log(0, val_loss=state["val_before"])
    t0 = time.perf_counter() - state["seconds"]
    bar = tqdm(
        total=trainer.total_steps,
        initial=start,
        desc="finetune",
        unit="step",
        disable=not (main and cfg.progress),
        dynamic_ncols=True,
    )
    steps = trainer.prefetched_steps(start, trainer.total_steps)
    try:
        for step in range(start, trainer.total_steps):
            loss = trainer.train_step(step, next(steps))
            if state["first_loss"] is None:
                state["first_loss"] = loss
            state["recent"] = (state["recent"] + [loss])[-max(1, cfg.log_every) :]
            done = step + 1
            if done % cfg.log_every == 0 or done == trainer.total_steps or step == 0:
                logger.log(step, train_loss=loss, lr=lr_at(cfg, step, trainer.total_steps))
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
            if done % cfg.checkpoint_every == 0 or done == trainer.total_steps:
                state.update(step=done, seconds=time.perf_counter() - t0)
                _save(trainer, ckpts, state, run.fingerprint(run_config), acc)
    finally:
        steps.close()  # waits for a prefetch still running
    bar.close()

    val_after = trainer.evaluate()
    seconds = time.perf_counter() - t0
    if val_after is not None:
        logger.log(trainer.total_steps, val_loss=val_after)
    metrics = {
        "backbone": backbone.name,
        "base_weights": backbone.weights,
        "steps": trainer.total_steps,
        "epochs": cfg.epochs,
        "global_batch": trainer.global_size,
        "num_processes": acc.num_processes,
        "train_views": len(trainer.data),
        "train_scenes": len(scenes),
        "val_views": len(trainer.val),
        "train_loss_first": state["first_loss"],
        "train_loss_last": state["recent"][-1] if state["recent"] else None,
        "train_loss_last_mean": sum(state["recent"]) / len(state["recent"]) if state["recent"] else None,
        "val_loss_before": state["val_before"],
        "val_loss_after": val_after,
        "seconds": round(seconds, 3),
        "cache": trainer.cache.stats(),
        "target_cache": None if trainer.targets is None else trainer.targets.stats(),
        "mixed_precision": acc.mixed_precision,
    }
    acc.wait_for_everyone()
    if main:
        export_backbone(
            acc.unwrap_model(trainer.model).backbone,
            out,
            base_weights=backbone.weights,
            method="fit3d",
            steps=trainer.total_steps,
        )
        write_json(out / "metrics.json", metrics)
    logger.close()
    acc.wait_for_everyone()
    return metrics


# Settings a resumed run may change: its length, checkpoint/log cadence, memory, device and validation.
RESUME_FREE = (
    "max_steps",
    "epochs",
    "checkpoint_every",
    "keep_checkpoints",
    "log_every",
    "progress",
    "cache_mb",
    "prefetch",
    "target_cache_mb",
    "target_cache_dir",
    "device",
    "val_lifted",
    "val_max_views",
)
# Each checkpoint stores the fingerprint of its run's settings (outside RESUME_FREE); a resume must match it.
REFUSAL = (
    "{where}: checkpoint belongs to a run with another configuration "
    "(use a new --out folder or delete its checkpoints/)"
)


def _save(trainer: Finetuner, ckpts: CheckpointManager, state: dict, fingerprint: str, acc) -> None:
    acc.wait_for_everyone()
    if acc.is_main_process:
        ckpts.save(
            state["step"],
            trainer.state_tensors(),
            trainer.optim_state(),
            {k: v for k, v in state.items() if k != "step"} | {"fingerprint": fingerprint},
        )
    acc.wait_for_everyone()
