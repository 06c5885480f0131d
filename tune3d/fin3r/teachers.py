"""Monocular teachers for Fin3R distillation, one interface for every source of pseudo-labels.

``Teacher.predict(images B,3,H,W in [0,1]) -> TeacherOutput`` at the input resolution. Sources:

- ``hf:<id-or-folder>[?kind=...&disparity=0|1]`` — any ``transformers`` depth-estimation model (a hub id
  resolves through the ``huggingface_hub`` cache, then the hub; offline and uncached is one error line).
  The output kind follows the family: Depth Anything (V1/V2) with ``depth_estimation_type="relative"``
  and MiDaS-style DPT output *affine-invariant inverse depth* (disparity); Depth Anything ``"metric"``,
  Prompt Depth Anything, ZoeDepth, GLPN and Depth Pro output metric depth.
  Override with ``?kind=`` for anything else.
- ``moge:<id-or-file>`` — MoGe pointmaps (needs the ``moge`` package). MoGe-1 predicts an affine-invariant
  pointmap; its ``infer()`` already recovers focal and z-shift, so the points it returns are
  scale-invariant. MoGe-2 (``*moge-2*``) returns metric points.
- ``recon:<model-name>[@weights]`` — one of our reconstruction models through ``ReconModel.forward_mono``;
  ``weights`` is a local file/folder or a Hugging Face id (resolved like ``hf:``).
- ``sensor`` — the dataset's own metric depth, passed as ``predict(images, depth=...)``.

Any teacher can be wrapped in :class:`CachedTeacher` (safetensors per image, keyed by teacher spec and image
content). :func:`tune3d.fin3r.targets.normalize_teacher_target` turns any output into the normalised pointmap
Fin3R distils.
"""

from __future__ import annotations

import hashlib
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import Tensor, nn

from tune3d.errors import Tune3DError, WeightsUnavailableError
from tune3d.io import save_safetensors_atomic
from tune3d.recon import create_model
from tune3d.recon.hub_weights import is_hub_id, resolve_weights

logger = logging.getLogger(__name__)

KINDS = ("metric", "scale_invariant", "affine_invariant")


@dataclass
class TeacherOutput:
    """Pseudo-labels for a batch at the input resolution.

    Exactly one of ``depth`` (``B,H,W``; z-depth, or inverse depth when ``is_disparity``) and ``points``
    (``B,H,W,3``, camera frame, OpenCV axes) is set. ``mask``: bool ``B,H,W``. ``kind``: one of
    :data:`KINDS`. ``K``: ``B,3,3`` pixel intrinsics when the teacher estimates them (MoGe, Depth Pro).
    """

    mask: Tensor
    kind: str
    depth: Tensor | None = None
    points: Tensor | None = None
    is_disparity: bool = False
    K: Tensor | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"teacher kind must be one of {KINDS}, got {self.kind!r}")
        if (self.depth is None) == (self.points is None):
            raise ValueError("TeacherOutput needs exactly one of depth / points")

    @property
    def is_pointmap(self) -> bool:
        return self.points is not None

    @property
    def value(self) -> Tensor:
        return self.points if self.points is not None else self.depth

    def __len__(self) -> int:
        return self.mask.shape[0]

    def __getitem__(self, i: int) -> TeacherOutput:
        s = slice(i, i + 1)
        return TeacherOutput(
            mask=self.mask[s],
            kind=self.kind,
            depth=None if self.depth is None else self.depth[s],
            points=None if self.points is None else self.points[s],
            is_disparity=self.is_disparity,
            K=None if self.K is None else self.K[s],
        )

    @staticmethod
    def cat(outs: list[TeacherOutput]) -> TeacherOutput:
        first = outs[0]
        if any(o.kind != first.kind or o.is_pointmap != first.is_pointmap for o in outs):
            raise ValueError("cannot concatenate teacher outputs of different kinds")
        has_K = all(o.K is not None for o in outs)
        return TeacherOutput(
            mask=torch.cat([o.mask for o in outs]),
            kind=first.kind,
            depth=None if first.depth is None else torch.cat([o.depth for o in outs]),
            points=None if first.points is None else torch.cat([o.points for o in outs]),
            is_disparity=first.is_disparity,
            K=torch.cat([o.K for o in outs]) if has_K else None,
        )

    def to(self, device: torch.device | str) -> TeacherOutput:
        def mv(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device)

        return TeacherOutput(
            mv(self.mask), self.kind, mv(self.depth), mv(self.points), self.is_disparity, mv(self.K)
        )


def _check_images(images: Tensor) -> None:
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"teacher expects images B,3,H,W, got {tuple(images.shape)}")


class Teacher(ABC):
    """A frozen monocular geometry predictor."""

    spec: str = ""

    @abstractmethod
    def _predict(self, images: Tensor, **batch: Tensor) -> TeacherOutput: ...

    @torch.no_grad()
    def predict(self, images: Tensor, **batch: Tensor) -> TeacherOutput:
        """``images``: float ``B,3,H,W`` RGB in [0, 1]; extra batch tensors (``depth``) where needed."""
        _check_images(images)
        return self._predict(images, **batch)

    def to(self, device: torch.device | str) -> Teacher:
        return self


# ----------------------------------------------------------------------------------------------- HF


def hf_depth_kind(config) -> tuple[str, bool]:
    """``(kind, is_disparity)`` of a ``transformers`` depth-estimation config's ``predicted_depth``."""
    mt = getattr(config, "model_type", "")
    if mt == "depth_anything":
        if getattr(config, "depth_estimation_type", "relative") == "metric":
            return "metric", False
        return "affine_invariant", True
    if mt == "dpt":  # MiDaS-style relative inverse depth (Intel/dpt-large, dpt-hybrid-midas)
        return "affine_invariant", True
    if mt in ("zoedepth", "glpn", "depth_pro", "prompt_depth_anything"):
        return "metric", False
    raise Tune3DError(
        f"unknown output kind for transformers model type {mt!r}; add ?kind=metric|scale_invariant|..."
    )


def _first_sentence(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0].split(". ")[0] if text else type(e).__name__


def _looks_local(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or Path(name).expanduser().exists()


#: What a ``transformers`` model needs from its hub repository: configs, (sharded) safetensors weights
#: and tokenizer/processor text files. Pickled ``*.bin``/``*.pt`` weights are never fetched.
HF_FILES = ["*.json", "*.safetensors", "*.txt"]


def hub_snapshot(spec: str, model_id: str) -> Path:
    """A Hugging Face id -> its snapshot folder via :func:`tune3d.recon.hub_weights.resolve_weights`
    (the ``huggingface_hub`` cache first, then the hub); unavailable is one error line naming ``spec``."""
    if not is_hub_id(model_id):
        raise Tune3DError(f"{spec}: neither a local folder nor a Hugging Face id (owner/name)")
    try:
        return resolve_weights(model_id, allow_patterns=HF_FILES)
    except WeightsUnavailableError as e:
        raise WeightsUnavailableError(f"{spec.partition(':')[0]}:{e}") from None


class HFDepthTeacher(Teacher):
    """A ``transformers`` ``AutoModelForDepthEstimation`` with its ``AutoImageProcessor``."""

    def __init__(
        self,
        model_id: str,
        device: torch.device | str = "cpu",
        kind: str | None = None,
        is_disparity: bool | None = None,
    ) -> None:
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        local = Path(model_id).expanduser()
        if _looks_local(model_id) and not local.is_dir():
            raise Tune3DError(f"{model_id}: teacher model folder not found")
        # a hub id loads from its snapshot folder, so transformers never reaches for the network itself
        source = local if local.is_dir() else hub_snapshot(f"hf:{model_id}", model_id)
        try:
            self.processor = AutoImageProcessor.from_pretrained(str(source))
            self.model = AutoModelForDepthEstimation.from_pretrained(str(source)).eval()
        except (OSError, ValueError) as e:  # hub unreachable, unknown id, missing files
            raise WeightsUnavailableError(
                f"hf:{model_id}: cannot load depth model ({_first_sentence(e)})"
            ) from None
        self.model.requires_grad_(False)
        auto_kind, auto_disp = hf_depth_kind(self.model.config) if kind is None else (kind, False)
        self.kind = kind or auto_kind
        if self.kind not in KINDS:
            raise Tune3DError(f"hf:{model_id}: unknown kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        self.is_disparity = auto_disp if is_disparity is None else is_disparity
        self.spec = f"hf:{model_id}"
        self.device = torch.device(device)
        self.model.to(self.device)

    def to(self, device: torch.device | str) -> HFDepthTeacher:
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    def _predict(self, images: Tensor, **batch: Tensor) -> TeacherOutput:
        B, _, H, W = images.shape
        inputs = self.processor(images=list(images.float().cpu()), return_tensors="pt", do_rescale=False)
        pixel_values = inputs["pixel_values"].to(self.device, dtype=next(self.model.parameters()).dtype)
        out = self.model(pixel_values=pixel_values)
        sizes = [(H, W)] * B
        post = getattr(self.processor, "post_process_depth_estimation", None)
        K = None
        if post is not None:
            kwargs = {"target_sizes": sizes}
            if self.model.config.model_type == "zoedepth":
                kwargs["source_sizes"] = sizes  # lets ZoeDepth crop its reflect-padding off
            res = post(out, **kwargs)
            depth = torch.stack([r["predicted_depth"].float() for r in res])
            # Depth Pro also estimates the focal length (pixels; principal point taken as the centre).
            if "focal_length" in res[0]:
                f = torch.stack(
                    [torch.as_tensor(r["focal_length"], dtype=torch.float32).reshape(()) for r in res]
                )
                K = torch.zeros(B, 3, 3)
                K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = f.cpu(), f.cpu(), W / 2, H / 2, 1
        else:
            pd = out.predicted_depth.float()
            depth = F.interpolate(pd.unsqueeze(1), size=(H, W), mode="bilinear", align_corners=False)[:, 0]
        depth = depth.to(images.device)
        mask = torch.isfinite(depth) & (depth > 0)
        return TeacherOutput(
            mask=mask,
            kind=self.kind,
            depth=torch.where(mask, depth, torch.zeros_like(depth)),
            is_disparity=self.is_disparity,
            K=None if K is None else K.to(images.device),
        )


# --------------------------------------------------------------------------------------------- MoGe


class MoGeTeacher(Teacher):
    """MoGe-1 / MoGe-2 pointmaps through the official ``moge`` package's ``infer()``."""

    def __init__(self, model_id: str, device: torch.device | str = "cpu") -> None:
        try:
            import moge  # noqa: F401
        except ImportError:
            raise Tune3DError(
                "moge teacher needs the 'moge' package (pip install git+https://github.com/microsoft/MoGe.git)"
            ) from None
        v2 = "moge-2" in model_id.lower() or "moge2" in model_id.lower()
        if v2:
            from moge.model.v2 import MoGeModel
        else:
            from moge.model.v1 import MoGeModel
        src = Path(model_id).expanduser()
        if src.is_dir():
            src = src / "model.pt"
        if _looks_local(model_id) and not src.is_file():
            raise Tune3DError(f"{src}: MoGe checkpoint not found")
        try:
            self.model = MoGeModel.from_pretrained(str(src) if src.is_file() else model_id).eval()
        except (OSError, ValueError) as e:
            raise WeightsUnavailableError(
                f"moge:{model_id}: cannot load MoGe ({_first_sentence(e)})"
            ) from None
        self.model.requires_grad_(False)
        # MoGe-1's infer() solves focal and z-shift, leaving scale-invariant points; MoGe-2 is metric.
        self.kind = "metric" if v2 else "scale_invariant"
        self.spec = f"moge:{model_id}"
        self.device = torch.device(device)
        self.model.to(self.device)

    def to(self, device: torch.device | str) -> MoGeTeacher:
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    def _predict(self, images: Tensor, **batch: Tensor) -> TeacherOutput:
        B, _, H, W = images.shape
        out = self.model.infer(images.to(self.device).float())
        points = out["points"].float().to(images.device)
        mask = out["mask"].bool().to(images.device) & torch.isfinite(points).all(-1)
        K = out["intrinsics"].float().to(images.device).clone()  # normalised (UV in [0,1]) -> pixels
        K[:, 0] *= W
        K[:, 1] *= H
        points = torch.where(mask.unsqueeze(-1), points, torch.zeros_like(points))
        return TeacherOutput(mask=mask, kind=self.kind, points=points, K=K)


# -------------------------------------------------------------------------------------------- recon


class ReconTeacher(Teacher):
    """One of our reconstruction models used as a monocular teacher (``forward_mono``)."""

    def __init__(self, model: nn.Module, spec: str = "recon", device: torch.device | str = "cpu") -> None:
        self.model = model.eval().requires_grad_(False)
        self.kind = "metric" if getattr(model, "metric", False) else "scale_invariant"
        self.spec = spec
        self.device = torch.device(device)
        self.model.to(self.device)

    @classmethod
    def from_name(
        cls, name: str, weights: str | None = None, device: torch.device | str = "cpu"
    ) -> ReconTeacher:
        """A registered reconstruction model as teacher; ``weights`` in any layout ``create_model`` reads,
        or a Hugging Face id (its snapshot folder, from the cache or the hub)."""
        source = (
            hub_snapshot(f"recon:{name}@{weights}", weights) if weights and is_hub_id(weights) else weights
        )
        model = create_model(name, weights=source)
        return cls(model, spec=f"recon:{name}" + (f"@{weights}" if weights else ""), device=device)

    def to(self, device: torch.device | str) -> ReconTeacher:
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    def _predict(self, images: Tensor, **batch: Tensor) -> TeacherOutput:
        B, _, H, W = images.shape
        p = int(getattr(self.model, "patch_size", 1) or 1)
        h, w = max(p, H // p * p), max(p, W // p * p)
        x = images.to(self.device)
        if (h, w) != (H, W):  # the encoder needs multiples of its patch size
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        depth, _ = self.model.forward_mono(x)
        depth = depth.float()
        if (h, w) != (H, W):
            depth = F.interpolate(depth.unsqueeze(1), size=(H, W), mode="bilinear", align_corners=False)[:, 0]
        depth = depth.to(images.device)
        mask = torch.isfinite(depth) & (depth > 0)
        return TeacherOutput(
            mask=mask, kind=self.kind, depth=torch.where(mask, depth, torch.zeros_like(depth))
        )


# ------------------------------------------------------------------------------------------- sensor


class SensorTeacher(Teacher):
    """The dataset's own metric depth as target: ``predict(images, depth=B,H,W or B,1,H,W)``, 0 = invalid."""

    spec = "sensor"
    kind = "metric"

    def _predict(self, images: Tensor, **batch: Tensor) -> TeacherOutput:
        depth = batch.get("depth")
        if depth is None:
            raise Tune3DError("the 'sensor' teacher needs a dataset with depth (no 'depth' in the batch)")
        if depth.dim() == 4:
            depth = depth[:, 0]
        if depth.shape != (images.shape[0], *images.shape[2:]):
            raise ValueError(f"sensor depth {tuple(depth.shape)} does not match images {tuple(images.shape)}")
        depth = depth.float()
        mask = torch.isfinite(depth) & (depth > 0)
        return TeacherOutput(
            mask=mask, kind="metric", depth=torch.where(mask, depth, torch.zeros_like(depth))
        )


# -------------------------------------------------------------------------------------------- cache


def image_hash(image: Tensor) -> str:
    """Content hash of one ``3,H,W`` image in [0, 1], quantised to 8 bits (re-decoding a file matches)."""
    q = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().contiguous()
    h = hashlib.sha256(str(tuple(q.shape)).encode())
    h.update(q.numpy().tobytes())
    return h.hexdigest()[:32]


class CachedTeacher(Teacher):
    """Wraps a teacher; pseudo-labels are stored per image as ``<root>/<spec hash>/<image hash>.safetensors``.

    Files are written atomically, so concurrent workers or an interrupted run never leave a partial label.
    """

    def __init__(self, teacher: Teacher, root: str | Path) -> None:
        self.teacher = teacher
        self.spec = teacher.spec
        self.root = Path(root) / hashlib.sha256(teacher.spec.encode()).hexdigest()[:16]
        self.hits = 0
        self.misses = 0

    def to(self, device: torch.device | str) -> CachedTeacher:
        self.teacher.to(device)
        return self

    def path_for(self, image: Tensor) -> Path:
        return self.root / f"{image_hash(image)}.safetensors"

    def _load(self, path: Path) -> TeacherOutput | None:
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                t = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        except Exception:  # unreadable cache entry: recompute rather than fail
            logger.warning("%s: unreadable pseudo-label, recomputing", path)
            return None
        if meta.get("spec") != self.spec:
            return None
        return TeacherOutput(
            mask=t["mask"].bool(),
            kind=meta["kind"],
            depth=t.get("depth"),
            points=t.get("points"),
            is_disparity=meta.get("is_disparity") == "1",
            K=t.get("K"),
        )

    def _store(self, path: Path, out: TeacherOutput) -> None:
        t = {"mask": out.mask.to(torch.uint8)}
        for name in ("depth", "points", "K"):
            if getattr(out, name) is not None:
                t[name] = getattr(out, name).float()
        meta = {"spec": self.spec, "kind": out.kind, "is_disparity": "1" if out.is_disparity else "0"}
        save_safetensors_atomic(t, path, metadata=meta)

    def _predict(self, images: Tensor, **batch: Tensor) -> TeacherOutput:
        paths = [self.path_for(img) for img in images]
        outs: list[TeacherOutput | None] = [self._load(p) for p in paths]
        todo = [i for i, o in enumerate(outs) if o is None]
        self.hits += len(outs) - len(todo)
        self.misses += len(todo)
        if todo:
            sub = {k: v[todo] for k, v in batch.items() if isinstance(v, Tensor) and len(v) == len(images)}
            fresh = self.teacher.predict(images[todo], **sub)
            for j, i in enumerate(todo):
                one = fresh[j]
                self._store(paths[i], one.to("cpu"))
                outs[i] = one
        return TeacherOutput.cat([o.to(images.device) for o in outs])


# ------------------------------------------------------------------------------------------ factory


def create_teacher(
    spec: str, device: torch.device | str = "cpu", cache_dir: str | Path | None = None
) -> Teacher:
    """Build a teacher from ``hf:<id>``, ``moge:<id>``, ``recon:<name>[@weights]`` or ``sensor``.

    ``hf:`` accepts ``?kind=metric|scale_invariant|affine_invariant&disparity=0|1`` to override the family
    default. With ``cache_dir`` the teacher is wrapped in :class:`CachedTeacher`.
    """
    scheme, _, rest = spec.partition(":")
    if scheme == "sensor" and not rest:
        teacher: Teacher = SensorTeacher()
    elif scheme == "hf" and rest:
        name, _, query = rest.partition("?")
        opts = dict(parse_qsl(query))
        unknown = set(opts) - {"kind", "disparity"}
        if unknown:
            raise Tune3DError(f"teacher {spec!r}: unknown option(s) {', '.join(sorted(unknown))}")
        disp = None if "disparity" not in opts else opts["disparity"] in ("1", "true", "yes")
        teacher = HFDepthTeacher(name, device=device, kind=opts.get("kind"), is_disparity=disp)
    elif scheme == "moge" and rest:
        teacher = MoGeTeacher(rest, device=device)
    elif scheme == "recon" and rest:
        name, _, weights = rest.partition("@")
        teacher = ReconTeacher.from_name(name, weights or None, device=device)
    else:
        raise Tune3DError(
            f"unknown teacher {spec!r}; use hf:<id>, moge:<id>, recon:<model>[@weights] or sensor"
        )
    return CachedTeacher(teacher, cache_dir) if cache_dir is not None else teacher
