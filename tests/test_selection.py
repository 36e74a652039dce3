"""Only the kept instances leave the network: post-processing the served graph's kept rows gives, pixel for pixel,
what post-processing every query gives, on real photos and synthetic frames."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from pipeline.data.synthetic import synthetic_image
from pipeline.model.predictor import fixed_input_batch
from pipeline.serving.postprocess import pack_results, postprocess_frame
from pipeline.serving.selection import KEPT_OUTPUTS, is_served, select_kept, write_served_network

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media" / "images"
THRESHOLDS = (0.3, 0.05)  # the default, and one low enough that most queries are kept


@pytest.fixture(scope="module")
def networks(tmp_path_factory):
    from pipeline.model.export import export_onnx
    from pipeline.serving.repository import spec_for_checkpoint

    spec, model = spec_for_checkpoint()
    folder = tmp_path_factory.mktemp("selection")
    raw = export_onnx(model, folder / "raw.onnx", height=spec.input_height, width=spec.input_width).path
    served = {t: write_served_network(raw, folder / f"served-{t}.onnx", t) for t in THRESHOLDS}
    session = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])  # noqa: E731
    return spec, session(raw), {t: session(p) for t, p in served.items()}, raw, served


def _frames() -> list[np.ndarray]:
    photos = sorted(MEDIA.glob("*/*.jpg"))[:8] if MEDIA.is_dir() else []
    real = [cv2.imread(str(p))[:, :, ::-1].copy() for p in photos]
    synthetic = [synthetic_image(seed, 0, 1280, 720).image for seed in range(4)]
    return real + synthetic


def _batch(spec, frames: list[np.ndarray]) -> tuple[np.ndarray, list, list]:
    batch, resized = fixed_input_batch(frames, spec.min_size, spec.max_size, spec.input_height, spec.input_width)
    return batch, [f.shape[:2] for f in frames], resized


def test_the_served_file_answers_kept_instances_and_the_export_does_not(networks):
    _, _, _, raw, served = networks
    assert not is_served(raw) and all(is_served(p) for p in served.values())


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_post_processing_the_kept_rows_gives_exactly_what_post_processing_every_query_gives(networks, threshold):
    spec, raw, served, _, _ = networks
    frames = _frames()
    if len(frames) < 8:
        pytest.skip("the shared real photos are not here")
    kept_rows = 0
    for start in range(0, len(frames), 4):
        chunk = frames[start : start + 4]
        batch, originals, resized = _batch(spec, chunk)
        scores, masks = raw.run(["scores", "pred_masks"], {"images": batch})
        kept_scores, kept_masks, kept_queries = served[threshold].run(list(KEPT_OUTPUTS), {"images": batch})
        assert kept_masks.shape[1] <= masks.shape[1]
        kept_rows += kept_masks.shape[1]
        # the graph's selection is the reference selection on the kept rows
        ref = select_kept(scores, masks, threshold)
        n_kept = (scores.max(axis=2) > threshold).sum(axis=1)
        for i, n in enumerate(n_kept):
            assert np.array_equal(kept_queries[i, :n], ref[2][i, :n])
            assert np.array_equal(kept_masks[i, :n], masks[i, kept_queries[i, :n]])
        full, selected = [], []
        for i in range(len(chunk)):
            kw = {"score_threshold": threshold, "mask_threshold": 0.45, "stride": spec.mask_stride}
            a = postprocess_frame(scores[i], masks[i], originals[i], resized[i], **kw)
            b = postprocess_frame(kept_scores[i], kept_masks[i], originals[i], resized[i], queries=kept_queries[i],
                                  **kw)  # fmt: skip
            for field in ("scores", "classes", "boxes", "masks", "query_index"):
                assert np.array_equal(getattr(a, field), getattr(b, field)), (start + i, field)
            full.append(a)
            selected.append(b)
        sizes = np.array(originals)
        assert {k: v.tolist() for k, v in pack_results(full, sizes).items()} == {
            k: v.tolist() for k, v in pack_results(selected, sizes).items()}  # fmt: skip
    if threshold == 0.3:  # the point: far fewer rows than queries cross to post-processing
        assert kept_rows < 0.5 * spec.num_queries * -(-len(frames) // 4)


def _dense_reference(class_scores, mask_logits, original, resized, *, score_threshold, mask_threshold, stride):
    """Post-processing as written first: every probability, full-frame resampled masks, RLE of whole frames."""
    from pipeline import rle
    from pipeline.dense_masks import masks_to_boxes
    from pipeline.serving.postprocess import mask_resampler

    scores, labels = class_scores.max(axis=-1), class_scores.argmax(axis=-1)
    idx = np.flatnonzero(scores > score_threshold)
    with np.errstate(over="ignore"):
        probs = 1.0 / (1.0 + np.exp(-mask_logits[idx].astype(np.float32)))
    binary = probs > mask_threshold
    maskness = (probs * binary).sum(axis=(1, 2)) / (binary.sum(axis=(1, 2)) + 1e-6)
    rows = mask_resampler(probs.shape[1], stride, int(resized[0]), int(original[0]))
    cols = mask_resampler(probs.shape[2], stride, int(resized[1]), int(original[1]))
    masks = np.zeros((idx.size, *original), bool)
    for k, p in enumerate(probs):
        masks[k] = rows @ p @ cols.T > mask_threshold
    counts = [rle.encode(m)["counts"].encode() for m in masks]
    return (scores[idx] * maskness).astype(np.float32), labels[idx], masks_to_boxes(masks), masks, counts


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_crop_wise_post_processing_equals_the_dense_full_frame_one(networks, threshold):
    """Masks resampled only where they can be set, RLE written from the crops: the same scores, boxes, masks and
    RLE strings as full-frame resampling of every probability, on the shared photos and synthetic frames."""
    spec, _, served, _, _ = networks
    frames = _frames()
    checked = 0
    for start in range(0, len(frames), 4):
        chunk = frames[start : start + 4]
        batch, originals, resized = _batch(spec, chunk)
        kept_scores, kept_masks, kept_queries = served[threshold].run(list(KEPT_OUTPUTS), {"images": batch})
        for i in range(len(chunk)):
            kw = {"score_threshold": threshold, "mask_threshold": 0.45, "stride": spec.mask_stride}
            got = postprocess_frame(kept_scores[i], kept_masks[i], originals[i], resized[i], queries=kept_queries[i],
                                    **kw)  # fmt: skip
            scores, classes, boxes, masks, counts = _dense_reference(kept_scores[i], kept_masks[i], originals[i],
                                                                     resized[i], **kw)  # fmt: skip
            assert np.array_equal(got.scores, scores), start + i
            assert np.array_equal(got.classes, classes), start + i
            assert np.array_equal(got.boxes, boxes), start + i
            assert np.array_equal(got.masks, masks), start + i
            assert got.counts == counts, start + i
            checked += masks.size
    assert checked > 10_000_000  # pixels compared
