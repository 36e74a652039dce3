"""CPU inference rewrites (norms folded into convs, channels-last) keep the outputs."""

from __future__ import annotations

import pytest
import torch

from pipeline.model import build_model
from pipeline.model.backbone import ConvNorm
from pipeline.model.fuse import optimize_for_cpu
from pipeline.model.shipped import load_predictor


@pytest.mark.parametrize("source", ["shipped model", "r50_giam (frozen BN)", "mbv2_giam (plain conv, BN)"])
def test_folded_model_matches_the_original(source):
    if source.startswith("shipped"):
        model = load_predictor().model
    else:
        model = build_model(source.split()[0]).eval()
        for m in model.modules():  # statistics other than the defaults, so folding has something to fold
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    fast = optimize_for_cpu(model)
    assert not any(isinstance(m, ConvNorm) and not isinstance(m.norm, torch.nn.Identity) for m in fast.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    x = torch.randn(1, 3, 128, 192)
    with torch.no_grad():
        ref, got = model(x), fast(x.contiguous(memory_format=torch.channels_last))
    for key in ("pred_logits", "pred_scores", "pred_masks"):
        torch.testing.assert_close(got[key], ref[key], atol=1e-3, rtol=1e-4, msg=key)
