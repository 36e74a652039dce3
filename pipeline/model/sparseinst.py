"""The SparseInst network: backbone -> instance context encoder -> decoder."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class ModelInfo:
    """What callers need to feed and read the network (not learned, not in the state dict)."""

    arch: str
    num_classes: int
    num_queries: int
    size_divisibility: int = 32
    pixel_mean: tuple[float, float, float] = PIXEL_MEAN
    pixel_std: tuple[float, float, float] = PIXEL_STD


class SparseInst(nn.Module):
    """``model(x)`` on a normalised, padded RGB batch (B, 3, H, W) returns raw logits:

    ``pred_logits`` (B, N, C), ``pred_scores`` (B, N, 1), ``pred_masks`` (B, N, H/4, W/4)
    and ``pred_kernel`` (B, N, D).
    """

    def __init__(self, *, backbone: nn.Module, encoder: nn.Module, decoder: nn.Module, info: ModelInfo) -> None:
        super().__init__()
        self.backbone = backbone
        self.encoder = encoder
        self.decoder = decoder
        self.info = info

    def forward(self, x: torch.Tensor, *, output_iam: bool = False) -> dict[str, torch.Tensor]:
        return self.decoder(self.encoder(self.backbone(x)), output_iam=output_iam)
