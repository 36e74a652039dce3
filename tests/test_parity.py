"""The project's model is SparseInst: it reproduces the official R-50 IAM and G-IAM outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.model import Predictor, build_model, load_official_checkpoint
from pipeline.model.predictor import normalize, pad_batch, resize_image

ARCHS = ["r50_giam", "r50_base"]


@pytest.fixture(scope="module")
def models(official_weights):
    return {arch: load_official_checkpoint(build_model(arch), official_weights[arch]).eval() for arch in ARCHS}


@pytest.mark.parametrize("arch", ARCHS)
def test_network_matches_official_raw_outputs(arch, models, reference):
    ref = reference[arch]
    x = torch.from_numpy(pad_batch([normalize(ref["a_resized_uint8"])]))
    assert tuple(x.shape[-2:]) == tuple(ref["a_padded_hw"])
    with torch.inference_mode():
        out = models[arch](x)
    for key, atol in (("pred_logits", 1e-3), ("pred_scores", 1e-3), ("pred_masks", 2e-3), ("pred_kernel", 1e-4)):
        np.testing.assert_allclose(out[key].numpy(), ref[f"a_{key}"], rtol=0, atol=atol, err_msg=key)


@pytest.mark.parametrize("arch", ARCHS)
def test_predictor_matches_official_end_to_end(arch, models, reference):
    ref = reference[arch]
    image = ref["a_image_uint8"]
    resized = resize_image(image, 640, 853)
    assert resized.shape[:2] == tuple(ref["a_resized_hw"])
    np.testing.assert_array_equal(resized, ref["a_resized_uint8"])

    result = Predictor(models[arch], min_size=640, max_size=853)(image)
    np.testing.assert_array_equal(result.query_index, ref["a_final_keep_idx"])
    np.testing.assert_array_equal(result.classes, ref["a_final_classes"])
    np.testing.assert_allclose(result.scores, ref["a_final_scores"], rtol=0, atol=2e-3)
    width = int(ref["a_final_masks_shape"][2])
    expected = np.unpackbits(ref["a_final_masks_packed"], axis=-1)[..., :width].astype(bool)
    assert result.masks.shape == expected.shape
    inter = (expected & result.masks).sum((1, 2))
    union = (expected | result.masks).sum((1, 2))
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    assert iou.min() >= 0.99, f"worst mask IoU {iou.min():.4f} (query {int(result.query_index[iou.argmin()])})"
