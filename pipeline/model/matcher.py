"""Hungarian matching of predictions to targets on the official dice-and-class cost."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def dice_score(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Pairwise dice between (N, P) mask logits and (M, P) binary targets -> (N, M)."""
    inputs = inputs.sigmoid()
    numerator = 2 * inputs @ targets.t()
    denominator = (inputs * inputs).sum(-1)[:, None] + (targets * targets).sum(-1)[None, :]
    return numerator / (denominator + 1e-4)


@torch.no_grad()
def match(
    pred_logits: torch.Tensor,
    pred_masks: torch.Tensor,
    target_labels: list[torch.Tensor],
    target_masks: list[torch.Tensor],
    *,
    alpha: float = 0.8,
    beta: float = 0.2,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per image, (query indices, target indices) maximising ``dice**alpha * p_class**beta``.

    ``target_masks`` are already at the resolution of ``pred_masks``.
    """
    out = []
    probs = pred_logits.float().sigmoid()
    for b, (labels, masks) in enumerate(zip(target_labels, target_masks)):
        if labels.numel() == 0:
            out.append((np.zeros(0, np.int64), np.zeros(0, np.int64)))
            continue
        dice = dice_score(pred_masks[b].float().flatten(1), masks.float().flatten(1))
        cost = dice.clamp(min=0) ** alpha * probs[b][:, labels] ** beta
        rows, cols = linear_sum_assignment(cost.cpu().numpy(), maximize=True)
        out.append((rows.astype(np.int64), cols.astype(np.int64)))
    return out
