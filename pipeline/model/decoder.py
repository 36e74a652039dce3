"""SparseInst decoders: instance branch (IAM, G-IAM, softmax G-IAM) and mask branch.

Output semantics are the official ones: raw class logits, a raw objectness logit, and mask
logits at stride 4 (kernel . mask features at stride 8, bilinearly upsampled x2).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

PRIOR_BIAS = -math.log((1 - 0.01) / 0.01)


def conv_stack(num_convs: int, cin: int, cout: int) -> nn.Sequential:
    """(3x3 conv + ReLU) x n; indices 0, 2, 4, ... hold the convs, as in the official keys."""
    layers: list[nn.Module] = []
    for _ in range(num_convs):
        layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]
        cin = cout
    return nn.Sequential(*layers)


def coordinate_features(x: torch.Tensor) -> torch.Tensor:
    """(B, 2, H, W) maps in [-1, 1]: channel 0 is x, channel 1 is y.

    Built from ``arange`` (not ``linspace``) in the official operation order so the values
    match bit for bit and the graph exports to ONNX.
    """
    h, w = x.shape[-2], x.shape[-1]
    y_loc = -1.0 + 2.0 * torch.arange(h, device=x.device) / (h - 1)
    x_loc = -1.0 + 2.0 * torch.arange(w, device=x.device) / (w - 1)
    y_loc, x_loc = torch.meshgrid(y_loc, x_loc, indexing="ij")
    loc = torch.stack([x_loc, y_loc], dim=0).unsqueeze(0).to(x.dtype)
    return loc.expand(x.shape[0], -1, -1, -1)


def _c2_init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class InstanceBranch(nn.Module):
    """IAM (``groups=1``) or G-IAM (``groups>1``) instance branch.

    With ``softmax=True`` the activation maps are normalised with a softmax (plus a learned
    bias), the official variant that stays finite in FP16.
    """

    def __init__(
        self,
        in_channels: int,
        *,
        dim: int = 256,
        num_convs: int = 4,
        num_masks: int = 100,
        num_classes: int = 80,
        kernel_dim: int = 128,
        groups: int = 1,
        softmax: bool = False,
    ) -> None:
        super().__init__()
        self.num_masks = num_masks
        self.groups = groups
        self.softmax = softmax
        self.inst_convs = conv_stack(num_convs, in_channels, dim)
        self.iam_conv = nn.Conv2d(dim, num_masks * groups, 3, padding=1, groups=groups)
        inst_dim = dim * groups
        if groups > 1:
            self.fc = nn.Linear(inst_dim, inst_dim)
        if softmax:
            self.softmax_bias = nn.Parameter(torch.ones(1))
        self.cls_score = nn.Linear(inst_dim, num_classes)
        self.mask_kernel = nn.Linear(inst_dim, kernel_dim)
        self.objectness = nn.Linear(inst_dim, 1)
        self._init_weights()

    def _init_weights(self) -> None:
        _c2_init(self.inst_convs)
        nn.init.normal_(self.iam_conv.weight, std=0.01)
        nn.init.constant_(self.iam_conv.bias, PRIOR_BIAS)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.constant_(self.cls_score.bias, PRIOR_BIAS)
        nn.init.normal_(self.mask_kernel.weight, std=0.01)
        nn.init.zeros_(self.mask_kernel.bias)
        if self.groups > 1:
            nn.init.kaiming_uniform_(self.fc.weight, a=1)
            nn.init.zeros_(self.fc.bias)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        features = self.inst_convs(features)
        iam = self.iam_conv(features)
        b, n = iam.shape[0], iam.shape[1]
        c = features.shape[1]
        flat = iam.flatten(2)
        if self.softmax:
            iam_prob = F.softmax(flat + self.softmax_bias, dim=-1)
        else:
            iam_prob = flat.sigmoid()
            iam_prob = iam_prob / iam_prob.sum(-1, keepdim=True).clamp(min=1e-6)
        inst = torch.bmm(iam_prob, features.flatten(2).transpose(1, 2))  # (B, N*G, C)
        if self.groups > 1:
            # channel g*N + n is group g of instance n: put the G group vectors side by side.
            inst = inst.reshape(b, self.groups, n // self.groups, c).transpose(1, 2).reshape(b, n // self.groups, -1)
            inst = F.relu(self.fc(inst))
        return self.cls_score(inst), self.mask_kernel(inst), self.objectness(inst), iam


class MaskBranch(nn.Module):
    def __init__(self, in_channels: int, *, dim: int = 256, num_convs: int = 4, kernel_dim: int = 128) -> None:
        super().__init__()
        self.mask_convs = conv_stack(num_convs, in_channels, dim)
        self.projection = nn.Conv2d(dim, kernel_dim, 1)
        _c2_init(self)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.projection(self.mask_convs(features))


class SparseInstDecoder(nn.Module):
    """Coordinates + features -> per-query class logits, objectness, mask kernels and mask logits."""

    def __init__(self, inst_branch: InstanceBranch, mask_branch: MaskBranch, *, scale_factor: float = 2.0) -> None:
        super().__init__()
        self.inst_branch = inst_branch
        self.mask_branch = mask_branch
        self.scale_factor = scale_factor

    def forward(self, features: torch.Tensor, *, output_iam: bool = False) -> dict[str, torch.Tensor]:
        features = torch.cat([coordinate_features(features), features], dim=1)
        pred_logits, pred_kernel, pred_scores, iam = self.inst_branch(features)
        mask_features = self.mask_branch(features)
        b, n = pred_kernel.shape[0], pred_kernel.shape[1]
        h, w = mask_features.shape[-2], mask_features.shape[-1]
        pred_masks = torch.bmm(pred_kernel, mask_features.flatten(2)).reshape(b, n, h, w)
        pred_masks = F.interpolate(pred_masks, scale_factor=self.scale_factor, mode="bilinear", align_corners=False)
        out = {
            "pred_logits": pred_logits,
            "pred_scores": pred_scores,
            "pred_masks": pred_masks,
            "pred_kernel": pred_kernel,
        }
        if output_iam:
            out["pred_iam"] = iam
        return out
