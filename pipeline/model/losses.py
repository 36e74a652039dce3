"""The official SparseInst criterion, one small function per term.

Focal loss for classes, dice plus pixel BCE for matched masks, and IoU-aware objectness: the
objectness target of a matched query is the IoU of its (binarised) mask with its target,
zero for unmatched queries.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pipeline.model.matcher import match


@dataclass(frozen=True)
class LossWeights:
    cls: float = 2.0
    mask_pixel: float = 5.0
    mask_dice: float = 2.0
    objectness: float = 1.0


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Summed sigmoid focal loss (RetinaNet)."""
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return (alpha_t * loss).sum()


def dice_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed ``1 - dice`` over (K, P) matched masks."""
    p = logits.sigmoid()
    numerator = 2 * (p * targets).sum(-1)
    denominator = (p * p).sum(-1) + (targets * targets).sum(-1)
    return (1 - numerator / (denominator + 1e-4)).sum()


@torch.no_grad()
def mask_iou(logits: torch.Tensor, targets: torch.Tensor, threshold: float = 0.4) -> torch.Tensor:
    """IoU of sigmoid(logits) >= threshold with the binary targets, per row."""
    pred = (logits.sigmoid() >= threshold).float()
    tgt = (targets > 0.5).float()
    inter = (pred * tgt).sum(-1)
    return inter / (pred.sum(-1) + tgt.sum(-1) - inter + 1e-6)


def resize_targets(
    masks: list[torch.Tensor], padded_hw: tuple[int, int], out_hw: tuple[int, int]
) -> list[torch.Tensor]:
    """Pad each (K, h, w) target to the batch size and resize bilinearly to the prediction size."""
    out = []
    for m in masks:
        padded = m.new_zeros((m.shape[0], *padded_hw), dtype=torch.float32)
        padded[:, : m.shape[1], : m.shape[2]] = m
        if m.shape[0]:
            padded = F.interpolate(padded[:, None], size=out_hw, mode="bilinear", align_corners=False)[:, 0]
        else:
            padded = padded.new_zeros((0, *out_hw))
        out.append(padded)
    return out


def sparseinst_loss(
    outputs: dict[str, torch.Tensor],
    target_labels: list[torch.Tensor],
    target_masks: list[torch.Tensor],
    padded_hw: tuple[int, int],
    weights: LossWeights = LossWeights(),
) -> dict[str, torch.Tensor]:
    """Weighted loss terms for one batch; ``target_masks`` are (K, h, w) at the input resolution."""
    pred_logits, pred_masks, pred_scores = outputs["pred_logits"], outputs["pred_masks"], outputs["pred_scores"]
    targets = resize_targets(target_masks, padded_hw, tuple(pred_masks.shape[-2:]))
    indices = match(pred_logits, pred_masks, target_labels, targets)
    num_instances = max(sum(len(t) for t in target_labels), 1)

    cls_target = torch.zeros_like(pred_logits)
    obj_target = torch.zeros_like(pred_scores)
    src, tgt = [], []
    for b, (rows, cols) in enumerate(indices):
        rows_t, cols_t = torch.as_tensor(rows), torch.as_tensor(cols)
        cls_target[b, rows_t, target_labels[b][cols_t]] = 1.0
        src.append(pred_masks[b, rows_t])
        tgt.append(targets[b][cols_t])
    src_masks = torch.cat(src).flatten(1).float()
    tgt_masks = torch.cat(tgt).flatten(1)

    losses = {"loss_cls": weights.cls * focal_loss(pred_logits.float(), cls_target) / num_instances}
    if src_masks.shape[0]:
        ious = mask_iou(src_masks, tgt_masks)
        start = 0
        for b, (rows, _) in enumerate(indices):
            obj_target[b, torch.as_tensor(rows), 0] = ious[start : start + len(rows)].to(obj_target.dtype)
            start += len(rows)
        losses["loss_dice"] = weights.mask_dice * dice_loss(src_masks, tgt_masks) / num_instances
        losses["loss_mask"] = weights.mask_pixel * F.binary_cross_entropy_with_logits(src_masks, tgt_masks)
    else:
        zero = pred_masks.sum() * 0.0
        losses["loss_dice"] = zero
        losses["loss_mask"] = zero
    losses["loss_objectness"] = weights.objectness * F.binary_cross_entropy_with_logits(
        pred_scores.float(), obj_target.float()
    )
    return losses
