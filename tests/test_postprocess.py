"""The serving side's numpy post-processing and RLE equal the PyTorch reference and pycocotools."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from scipy.ndimage import gaussian_filter

from pipeline import rle
from pipeline.model.predictor import postprocess
from pipeline.serving.jpeg import InvalidFrame, check_frame, jpeg_size
from pipeline.serving.mask_kernels import crop_to_rle, empty_rle
from pipeline.serving.postprocess import pack_results, postprocess_frame


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (100, 3), (360, 640)])
@pytest.mark.parametrize("density", [0.0, 1.0, 0.5, 0.01, 0.99])
def test_rle_is_byte_identical_to_pycocotools_and_round_trips(shape, density):
    mask = np.random.default_rng(0).random(shape) < density
    ref = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    got = rle.encode(mask)
    assert got["counts"] == ref["counts"].decode("ascii")
    assert got["size"] == list(shape)
    np.testing.assert_array_equal(rle.decode(got), mask)
    assert rle.area(got) == int(mask.sum())


@pytest.mark.parametrize("seed", range(6))
def test_a_crop_gives_the_rle_and_box_of_its_whole_frame(seed):
    """Crops anywhere, touching every edge of the frame included (a run that ends at the bottom of one column
    and goes on at the top of the next is one run in COCO's order)."""
    rng = np.random.default_rng(seed)
    for _ in range(300):
        h, w = (int(v) for v in rng.integers(1, 30, 2))
        ch, cw = int(rng.integers(1, h + 1)), int(rng.integers(1, w + 1))
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        prob = (rng.random((ch, cw)) * rng.choice([0.5, 1.0, 2.0])).astype(np.float32)
        frame = np.zeros((h, w), bool)
        frame[y0 : y0 + ch, x0 : x0 + cw] = prob > 0.45
        counts, box = crop_to_rle(prob, 0.45, y0, x0, h, w)
        assert counts.decode() == rle.encode(frame)["counts"]
        ys, xs = np.flatnonzero(frame.any(axis=1)), np.flatnonzero(frame.any(axis=0))
        want = [xs[0], ys[0], xs[-1] + 1, ys[-1] + 1] if ys.size else [0, 0, 0, 0]
        assert box.tolist() == want
    assert empty_rle(7, 5).decode() == rle.encode(np.zeros((7, 5), bool))["counts"]


def test_a_malformed_rle_is_refused():
    with pytest.raises(ValueError, match="do not cover"):
        rle.decode({"size": [10, 10], "counts": rle.encode(np.ones((5, 5), bool))["counts"]})


@pytest.mark.parametrize(
    ("original", "resized"), [((360, 640), (360, 640)), ((720, 1280), (360, 640)), ((640, 480), (384, 288))]
)
def test_postprocess_matches_the_torch_reference(original, resized):
    rng = np.random.default_rng(1)
    n, c, mh, mw = 50, 80, 96, 160
    logits = (rng.normal(size=(1, n, c)) * 2).astype(np.float32)
    objectness = (rng.normal(size=(1, n, 1)) * 2).astype(np.float32)
    masks = (gaussian_filter(rng.normal(size=(1, n, mh, mw)), (0, 0, 3, 3)) * 32).astype(np.float32)
    outputs = {"pred_logits": torch.from_numpy(logits), "pred_scores": torch.from_numpy(objectness),
               "pred_masks": torch.from_numpy(masks)}  # fmt: skip
    ref = postprocess(outputs, [resized], [original], score_threshold=0.3)[0]
    fused = np.sqrt(1 / (1 + np.exp(-logits[0])) / (1 + np.exp(-objectness[0])))
    got = postprocess_frame(fused, masks[0], original, resized, score_threshold=0.3)
    assert len(ref) > 10
    np.testing.assert_array_equal(got.query_index, ref.query_index)
    np.testing.assert_array_equal(got.classes, ref.classes)
    np.testing.assert_allclose(got.scores, ref.scores, atol=1e-6)
    for a, b in zip(got.masks, ref.masks):
        assert (a & b).sum() / max((a | b).sum(), 1) > 0.999
    np.testing.assert_allclose(got.boxes, ref.boxes, atol=1)


def test_packed_results_are_aligned_per_instance_and_padded_per_frame():
    scores = np.zeros((50, 80), np.float32)
    scores[3, 2] = scores[7, 0] = 0.9
    logits = np.full((50, 96, 160), -10, np.float32)
    logits[3, 10:20, 10:30] = logits[7, 50:60, 100:110] = 10
    full = postprocess_frame(scores, logits, (360, 640), (360, 640), score_threshold=0.3)
    empty = postprocess_frame(np.zeros_like(scores), logits, (720, 1280), (360, 640), score_threshold=0.3)
    packed = pack_results([full, empty], np.array([[360, 640], [720, 1280]]))
    assert packed["num_instances"].tolist() == [[2], [0]]
    assert packed["query_index"].tolist() == [[3, 7], [-1, -1]]
    assert packed["classes"].tolist() == [[2, 0], [-1, -1]]
    assert packed["boxes"][0, 0].tolist() == [40, 40, 120, 80]  # mask pixels 10..29 x 10..19, x4
    first = {"size": [360, 640], "counts": packed["masks_rle"][0, 0].decode()}
    np.testing.assert_array_equal(rle.decode(first), full.masks[0])
    assert abs(rle.area(first) - 80 * 40) <= 8  # bilinear upsampling rounds the corners
    assert packed["masks_rle"][1].tolist() == [b"", b""]


def test_jpeg_headers_give_the_size_and_bad_frames_a_reason():
    import cv2

    data = cv2.imencode(".jpg", np.zeros((48, 80, 3), np.uint8))[1].tobytes()
    assert jpeg_size(data) == (48, 80)
    assert check_frame(data, max_pixels=10_000, max_side=100) == (48, 80)
    with pytest.raises(InvalidFrame, match="exceeds"):
        check_frame(data, max_pixels=1000, max_side=100)
    with pytest.raises(InvalidFrame, match="not a JPEG"):
        jpeg_size(b"\x89PNG....")
    with pytest.raises(InvalidFrame, match="truncated"):
        jpeg_size(data[:20])
