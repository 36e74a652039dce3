"""The predictor follows the official pre/post-processing and returns aligned, validated arrays."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.dense_masks import masks_to_boxes
from pipeline.model import Instances, Predictor, build_model
from pipeline.model.predictor import pad_batch, postprocess, resized_shape


@pytest.mark.parametrize(
    ("hw", "expected"),
    [((480, 640), (640, 853)), ((720, 1280), (480, 853)), ((640, 480), (853, 640)), ((360, 640), (360, 640))],
)
def test_resize_rule_is_detectron2s(hw, expected):
    min_size = 360 if hw == (360, 640) else 640
    max_size = 640 if hw == (360, 640) else 853
    assert resized_shape(*hw, min_size, max_size) == expected


def test_padding_is_bottom_right_zeros_to_32():
    batch = pad_batch([np.ones((3, 40, 50), np.float32), np.ones((3, 64, 33), np.float32)])
    assert batch.shape == (2, 3, 64, 64)
    assert batch[0, :, 40:].sum() == 0 and batch[0, :, :, 50:].sum() == 0 and batch[1, :, :64, :33].min() == 1


def test_postprocess_keeps_query_order_thresholds_and_rescores():
    n, c, h, w = 4, 80, 8, 8
    logits = torch.full((1, n, c), -10.0)
    logits[0, 0, 5], logits[0, 2, 1], logits[0, 3, 0] = 4.0, 6.0, -11.0  # queries 1 and 3 stay below 0.005
    masks = torch.full((1, n, h, w), -6.0)
    masks[0, 2, :4, :4] = 6.0
    masks[0, 0, 4:, 4:] = 0.5
    out = {"pred_logits": logits, "pred_scores": torch.zeros(1, n, 1), "pred_masks": masks}
    [res] = postprocess(out, [(32, 32)], [(32, 32)])
    np.testing.assert_array_equal(res.query_index, [0, 2])  # query order, no sorting by score
    np.testing.assert_array_equal(res.classes, [5, 1])
    p0 = torch.sigmoid(torch.tensor(0.5))
    expected0 = float(torch.sqrt(torch.sigmoid(torch.tensor(4.0)) * 0.5) * p0)  # maskness = mean prob above 0.45
    assert res.scores[0] == pytest.approx(expected0, rel=1e-5)
    assert res.masks[1, :14, :14].all() and not res.masks[1, 18:, 18:].any()
    np.testing.assert_array_equal(res.boxes[1], masks_to_boxes(res.masks[1:2])[0])


def test_instances_reject_misaligned_arrays():
    with pytest.raises(ValueError, match=r"boxes: expected \(2, 4\), got \(2, 3\)"):
        Instances(
            scores=np.zeros(2, np.float32), classes=np.zeros(2, np.int64), masks=np.zeros((2, 4, 4), bool),
            boxes=np.zeros((2, 3), np.float32), query_index=np.arange(2),
        )  # fmt: skip


def test_predictor_accepts_one_image_or_a_list_and_rejects_bad_input():
    predictor = Predictor(build_model("r18_giam_tiny"), min_size=96, max_size=160)
    image = np.random.default_rng(0).integers(0, 255, (90, 160, 3), dtype=np.uint8)
    one = predictor(image)
    both = predictor([image, image[:, :120]])
    assert isinstance(one, Instances) and len(both) == 2
    assert one.masks.shape[1:] == (90, 160) and both[1].masks.shape[1:] == (90, 120)
    with pytest.raises(ValueError, match="RGB uint8"):
        predictor(image.astype(np.float32))
