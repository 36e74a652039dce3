"""ResNet backbones in detectron2's layout (keys like ``res2.0.conv1.norm.weight``).

R-50 follows the official SparseInst backbone: frozen BatchNorm, no conv biases, stride on
the 3x3 conv. R-18/R-34 use basic blocks and can run with trainable BatchNorm for the
small variants trained from scratch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class FeatureSpec:
    """What a backbone emits for one named output: channels and stride."""

    channels: int
    stride: int


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics and affine terms, all stored as buffers."""

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features) - eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale, shift = norm_affine(self)
        return x * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)


def norm_affine(norm: FrozenBatchNorm2d | nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-channel ``(scale, shift)`` an inference-mode batch norm applies."""
    scale = norm.weight * (norm.running_var + norm.eps).rsqrt()
    return scale, norm.bias - norm.running_mean * scale


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "FrozenBN":
        return FrozenBatchNorm2d(channels)
    if kind == "BN":
        return nn.BatchNorm2d(channels)
    raise ValueError(f"unknown norm {kind!r}: expected 'FrozenBN' or 'BN'")


class ConvNorm(nn.Conv2d):
    """A bias-free convolution followed by its norm, stored at ``<conv>.norm``."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, *, norm: str) -> None:
        super().__init__(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.norm = _norm(norm, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(super().forward(x))


class BottleneckBlock(nn.Module):
    expansion = 4

    def __init__(self, cin: int, bottleneck: int, cout: int, stride: int, *, norm: str) -> None:
        super().__init__()
        self.shortcut = ConvNorm(cin, cout, 1, stride, norm=norm) if (cin != cout or stride != 1) else None
        self.conv1 = ConvNorm(cin, bottleneck, 1, norm=norm)
        self.conv2 = ConvNorm(bottleneck, bottleneck, 3, stride, norm=norm)
        self.conv3 = ConvNorm(bottleneck, cout, 1, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.conv1(x))
        out = F.relu(self.conv2(out))
        out = self.conv3(out)
        identity = self.shortcut(x) if self.shortcut is not None else x
        return F.relu(out + identity)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, bottleneck: int, cout: int, stride: int, *, norm: str) -> None:
        super().__init__()
        del bottleneck  # basic blocks have no bottleneck width
        self.shortcut = ConvNorm(cin, cout, 1, stride, norm=norm) if (cin != cout or stride != 1) else None
        self.conv1 = ConvNorm(cin, cout, 3, stride, norm=norm)
        self.conv2 = ConvNorm(cout, cout, 3, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.conv1(x))
        out = self.conv2(out)
        identity = self.shortcut(x) if self.shortcut is not None else x
        return F.relu(out + identity)


class Stem(nn.Module):
    def __init__(self, cout: int, *, norm: str) -> None:
        super().__init__()
        self.conv1 = ConvNorm(3, cout, 7, 2, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(F.relu(self.conv1(x)), kernel_size=3, stride=2, padding=1)


_DEPTHS: dict[int, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (BottleneckBlock, (3, 4, 6, 3)),
    101: (BottleneckBlock, (3, 4, 23, 3)),
}


class ResNet(nn.Module):
    """ResNet emitting ``res3``, ``res4`` and ``res5`` (strides 8, 16, 32)."""

    out_features = ("res3", "res4", "res5")

    def __init__(self, depth: int = 50, *, width: int = 64, norm: str = "FrozenBN") -> None:
        super().__init__()
        if depth not in _DEPTHS:
            raise ValueError(f"unsupported ResNet depth {depth}: expected one of {sorted(_DEPTHS)}")
        block, counts = _DEPTHS[depth]
        self.stem = Stem(width, norm=norm)
        cin = width
        self.output_shape: dict[str, FeatureSpec] = {}
        for stage, count in enumerate(counts):
            bottleneck = width * 2**stage
            cout = bottleneck * block.expansion
            blocks = []
            for i in range(count):
                stride = 2 if (i == 0 and stage > 0) else 1
                blocks.append(block(cin, bottleneck, cout, stride, norm=norm))
                cin = cout
            name = f"res{stage + 2}"
            self.add_module(name, nn.Sequential(*blocks))
            self.output_shape[name] = FeatureSpec(channels=cout, stride=2 ** (stage + 2))
        self.output_shape = {k: v for k, v in self.output_shape.items() if k in self.out_features}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.stem(x)
        x = self.res2(x)
        res3 = self.res3(x)
        res4 = self.res4(res3)
        res5 = self.res5(res4)
        return {"res3": res3, "res4": res4, "res5": res5}
