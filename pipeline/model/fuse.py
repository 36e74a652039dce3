"""Inference-only rewrites that keep outputs within float noise: BN folding and channels-last."""

from __future__ import annotations

import copy

import torch
from torch import nn

from pipeline.model.backbone import ConvNorm, FrozenBatchNorm2d, norm_affine


@torch.no_grad()
def fold_norms(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every conv's norm folded into the conv's weight and bias."""
    model = copy.deepcopy(model).eval()
    for module in model.modules():
        if not isinstance(module, ConvNorm) or not isinstance(module.norm, FrozenBatchNorm2d | nn.BatchNorm2d):
            continue
        scale, shift = norm_affine(module.norm)
        module.weight.mul_(scale.reshape(-1, 1, 1, 1))
        module.bias = nn.Parameter(shift.clone())
        module.norm = nn.Identity()
    for seq in model.modules():  # plain conv -> batch norm pairs (the MobileNetV2 layout)
        if not isinstance(seq, nn.Sequential):
            continue
        for i in range(len(seq) - 1):
            conv, norm = seq[i], seq[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                scale, shift = norm_affine(norm)
                bias = shift if conv.bias is None else conv.bias * scale + shift
                conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
                conv.bias = nn.Parameter(bias.clone())
                seq[i + 1] = nn.Identity()
    return model


def optimize_for_cpu(model: nn.Module) -> nn.Module:
    """Folded norms and channels-last memory format: the fastest eager layout on x86 CPUs."""
    return fold_norms(model).to(memory_format=torch.channels_last)
