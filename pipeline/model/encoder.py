"""SparseInst's Instance Context Encoder: FPN with pyramid pooling on the top level, fused at stride 8."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.model.backbone import FeatureSpec
from pipeline.model.pooling import AdaptiveAvgPool


class PyramidPoolingModule(nn.Module):
    def __init__(self, channels: int, stage_channels: int, sizes: Sequence[int] = (1, 2, 3, 6)) -> None:
        super().__init__()
        # Sequential(pool, conv) keeps the official key names ``stages.<i>.1.weight``.
        self.stages = nn.ModuleList(
            nn.Sequential(AdaptiveAvgPool(size), nn.Conv2d(channels, stage_channels, 1)) for size in sizes
        )
        self.bottleneck = nn.Conv2d(channels + len(sizes) * stage_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        priors = [
            F.interpolate(F.relu(stage(x)), size=size, mode="bilinear", align_corners=False) for stage in self.stages
        ]
        return F.relu(self.bottleneck(torch.cat([*priors, x], dim=1)))


class InstanceContextEncoder(nn.Module):
    """Takes ``res3..res5`` and returns one ``channels``-wide map at the stride of ``res3``."""

    def __init__(
        self,
        input_shape: Mapping[str, FeatureSpec],
        *,
        channels: int = 256,
        in_features: Sequence[str] = ("res3", "res4", "res5"),
        ppm_sizes: Sequence[int] = (1, 2, 3, 6),
    ) -> None:
        super().__init__()
        self.in_features = tuple(in_features)
        strides = [input_shape[f].stride for f in self.in_features]
        if any(b != 2 * a for a, b in itertools.pairwise(strides)):
            raise ValueError(f"encoder needs levels at doubling strides, got {strides}")
        in_channels = [input_shape[f].channels for f in self.in_features]
        # Index 0 is the coarsest level, as in the official checkpoints.
        self.fpn_laterals = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in reversed(in_channels))
        self.fpn_outputs = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in in_channels)
        self.ppm = PyramidPoolingModule(channels, channels // 4, ppm_sizes)
        self.fusion = nn.Conv2d(channels * len(in_channels), channels, 1)
        self.out_spec = FeatureSpec(channels=channels, stride=strides[0])

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        levels = [features[f] for f in reversed(self.in_features)]
        prev = self.ppm(self.fpn_laterals[0](levels[0]))
        outputs = [self.fpn_outputs[0](prev)]
        for feature, lateral, output in zip(levels[1:], self.fpn_laterals[1:], self.fpn_outputs[1:]):
            prev = lateral(feature) + F.interpolate(prev, scale_factor=2.0, mode="nearest")
            outputs.insert(0, output(prev))
        size = outputs[0].shape[-2:]
        fused = [outputs[0]] + [F.interpolate(x, size=size, mode="bilinear", align_corners=False) for x in outputs[1:]]
        return self.fusion(torch.cat(fused, dim=1))
