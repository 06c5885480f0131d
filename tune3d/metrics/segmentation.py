"""Semantic segmentation metrics from a dataset-level confusion matrix (mmseg conventions)."""

from __future__ import annotations

import torch
from torch import Tensor


class ConfusionMatrix:
    """Confusion matrix accumulated over a dataset; rows = ground truth, columns = prediction.

    ``update(pred, target)`` takes integer labels (B,H,W) (or logits (B,C,H,W), reduced by argmax over C)
    and int64 targets (B,H,W) where ``ignore_index`` pixels are skipped. Targets or predictions outside
    ``[0, num_classes)`` (other than ``ignore_index`` in the target) raise ``ValueError`` (label bugs).

    ``compute()`` returns ``mIoU``, ``mAcc``, ``aAcc`` (floats in [0, 1]) and ``iou``, ``acc`` (float64
    tensors (C,)), with IoU = TP/(TP+FP+FN), Acc = TP/(TP+FN) and aAcc = ΣTP/Σpixels. A class absent from both
    ground truth and prediction has NaN IoU and is left out of the mean (mmseg's nanmean); a class
    predicted but absent from the ground truth has IoU 0 and NaN Acc.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, device: torch.device | str | None = None):
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.mat = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def reset(self) -> None:
        self.mat.zero_()

    @torch.no_grad()
    def update(self, pred: Tensor, target: Tensor) -> None:
        if pred.is_floating_point() and pred.ndim == target.ndim + 1:
            pred = pred.argmax(1)
        if pred.shape != target.shape:
            raise ValueError(
                f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape"
            )
        C = self.num_classes
        keep = target != self.ignore_index
        t = target[keep].long().to(self.mat.device)
        p = pred[keep].long().to(self.mat.device)
        if t.numel() and (t.min() < 0 or t.max() >= C):
            raise ValueError(f"target labels must be in [0, {C}) or {self.ignore_index}")
        if p.numel() and (p.min() < 0 or p.max() >= C):
            raise ValueError(f"predicted labels must be in [0, {C})")
        self.mat += torch.bincount(t * C + p, minlength=C * C).reshape(C, C)

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        self.mat += other.mat.to(self.mat.device)
        return self

    def compute(self) -> dict[str, float | Tensor]:
        m = self.mat.double()
        tp = m.diag()
        gt_area, pred_area = m.sum(1), m.sum(0)
        union = gt_area + pred_area - tp
        nan = torch.full_like(tp, float("nan"))
        iou = torch.where(union > 0, tp / union.clamp_min(1), nan)
        acc = torch.where(gt_area > 0, tp / gt_area.clamp_min(1), nan)
        total = gt_area.sum()
        return {
            "mIoU": float(iou.nanmean()) if (~iou.isnan()).any() else float("nan"),
            "mAcc": float(acc.nanmean()) if (~acc.isnan()).any() else float("nan"),
            "aAcc": float(tp.sum() / total) if total > 0 else float("nan"),
            "iou": iou.cpu(),
            "acc": acc.cpu(),
        }

    def state_dict(self) -> dict[str, Tensor]:
        return {"mat": self.mat.cpu().clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if state["mat"].shape != self.mat.shape:
            raise ValueError(f"confusion matrix shape {tuple(state['mat'].shape)} != {tuple(self.mat.shape)}")
        self.mat.copy_(state["mat"])
