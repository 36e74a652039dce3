"""On CUDA hosts: FP16 inference stays close to FP32 and AMP training steps run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.data.synthetic import synthetic_image
from pipeline.model import build_model
from pipeline.model.export import verification_batch
from pipeline.model.losses import sparseinst_loss
from pipeline.model.predictor import normalize, pad_batch
from pipeline.model.shipped import load_predictor

pytestmark = pytest.mark.gpu


def test_fp16_inference_keeps_the_shipped_models_scores():
    model = load_predictor().model.cuda().eval()
    x = torch.from_numpy(verification_batch(4, 384, 640)).cuda()
    with torch.inference_mode():
        ref = model(x)
        with torch.autocast("cuda", dtype=torch.float16):
            half = model(x)
    score = lambda o: torch.sqrt(o["pred_logits"].float().sigmoid() * o["pred_scores"].float().sigmoid())  # noqa: E731
    assert (score(ref) - score(half)).abs().max() < 2e-2
    assert torch.isfinite(half["pred_masks"]).all()


def test_amp_training_step_updates_weights():
    model = build_model("r18_giam_tiny").cuda().train()
    frames = [synthetic_image(3, i) for i in range(2)]
    x = torch.from_numpy(pad_batch([normalize(f.image) for f in frames])).cuda()
    labels = [torch.tensor([i.category for i in f.instances]).cuda() for f in frames]
    masks = [torch.from_numpy(np.stack([i.mask for i in f.instances])).float().cuda() for f in frames]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda")
    before = model.decoder.inst_branch.cls_score.weight.detach().clone()
    with torch.autocast("cuda", dtype=torch.float16):
        out = model(x)
    loss = sum(sparseinst_loss(out, labels, masks, tuple(x.shape[-2:])).values())
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    assert torch.isfinite(loss)
    assert not torch.equal(before, model.decoder.inst_branch.cls_score.weight)
