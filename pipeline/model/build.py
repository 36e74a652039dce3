"""Model variants as small build functions and one name -> builder table."""

from __future__ import annotations

from collections.abc import Callable

from pipeline.model.backbone import ResNet
from pipeline.model.decoder import InstanceBranch, MaskBranch, SparseInstDecoder
from pipeline.model.encoder import InstanceContextEncoder
from pipeline.model.mobilenet import MobileNetV2
from pipeline.model.sparseinst import ModelInfo, SparseInst


def _sparseinst(
    arch: str,
    backbone: ResNet | MobileNetV2,
    *,
    channels: int = 256,
    dim: int = 256,
    num_convs: int = 4,
    num_masks: int = 100,
    num_classes: int = 80,
    kernel_dim: int = 128,
    groups: int = 1,
    softmax: bool = False,
) -> SparseInst:
    encoder = InstanceContextEncoder(backbone.output_shape, channels=channels)
    in_channels = encoder.out_spec.channels + 2  # + x/y coordinate maps
    decoder = SparseInstDecoder(
        InstanceBranch(
            in_channels,
            dim=dim,
            num_convs=num_convs,
            num_masks=num_masks,
            num_classes=num_classes,
            kernel_dim=kernel_dim,
            groups=groups,
            softmax=softmax,
        ),
        MaskBranch(in_channels, dim=dim, num_convs=num_convs, kernel_dim=kernel_dim),
    )
    info = ModelInfo(arch=arch, num_classes=num_classes, num_queries=num_masks)
    return SparseInst(backbone=backbone, encoder=encoder, decoder=decoder, info=info)


def build_r50_base() -> SparseInst:
    """Official ``sparse_inst_r50_base``: R-50, IAM decoder, 100 queries."""
    return _sparseinst("r50_base", ResNet(50))


def build_r50_giam() -> SparseInst:
    """Official ``sparse_inst_r50_giam``: R-50, group IAM (4 groups)."""
    return _sparseinst("r50_giam", ResNet(50), groups=4)


def build_r50_giam_soft() -> SparseInst:
    """Official ``sparse_inst_r50_giam_soft``: G-IAM normalised with a softmax (FP16-safe)."""
    return _sparseinst("r50_giam_soft", ResNet(50), groups=4, softmax=True)


# narrow two-conv heads and 50 queries: the small CPU variants
_SMALL_HEADS = {"channels": 128, "dim": 128, "num_convs": 2, "num_masks": 50, "kernel_dim": 64, "groups": 4}


def build_r18_giam_tiny() -> SparseInst:
    """Small CPU variant: half-width ResNet-18 with trainable BN, narrow two-conv heads, 50 queries.

    It keeps the 80 COCO classes so it is a drop-in for the official models.
    """
    return _sparseinst("r18_giam_tiny", ResNet(18, width=32, norm="BN"), **_SMALL_HEADS)


def build_mbv2_giam() -> SparseInst:
    """Small variant on an ImageNet-initialisable MobileNetV2 (strides 8/16/32), heads as ``r18_giam_tiny``."""
    return _sparseinst("mbv2_giam", MobileNetV2(), **_SMALL_HEADS)


MODEL_BUILDERS: dict[str, Callable[[], SparseInst]] = {
    "r50_base": build_r50_base,
    "r50_giam": build_r50_giam,
    "r50_giam_soft": build_r50_giam_soft,
    "r18_giam_tiny": build_r18_giam_tiny,
    "mbv2_giam": build_mbv2_giam,
}


def build_model(name: str) -> SparseInst:
    """Build an untrained model by variant name (see ``MODEL_BUILDERS``)."""
    try:
        builder = MODEL_BUILDERS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}: expected one of {sorted(MODEL_BUILDERS)}") from None
    return builder()
