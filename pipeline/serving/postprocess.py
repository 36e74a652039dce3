"""The official SparseInst post-processing in numpy, for the ``postprocess`` serving model.

Per frame: ``scores`` (already ``sqrt(sigmoid(cls) * sigmoid(obj))``) -> best class per query,
threshold, maskness rescoring, mask probabilities upsampled x4 to the padded input, cropped to
the resized frame and resized to the frame size (bilinear, ``align_corners=False``, as
``torch.nn.functional.interpolate``), threshold. The three linear resampling steps are folded
into one matrix per axis. Instances stay in query order: no NMS, no sorting.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from pipeline import rle
from pipeline.geometry import masks_to_boxes


@lru_cache(maxsize=64)
def interpolation_matrix(out_size: int, in_size: int) -> np.ndarray:
    """(out, in) weights of 1-D bilinear resampling with half-pixel centres (torch, align_corners=False)."""
    scale = in_size / out_size
    src = np.maximum((np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    frac = src - i0
    m = np.zeros((out_size, in_size), dtype=np.float64)
    rows = np.arange(out_size)
    np.add.at(m, (rows, i0), 1.0 - frac)
    np.add.at(m, (rows, i1), frac)
    return m


@lru_cache(maxsize=64)
def mask_resampler(mask_size: int, stride: int, resized: int, original: int) -> np.ndarray:
    """(original, mask_size): upsample by ``stride``, keep the first ``resized`` rows, resize to ``original``."""
    up = interpolation_matrix(mask_size * stride, mask_size)[:resized]
    return (interpolation_matrix(original, resized) @ up).astype(np.float32)


@dataclass
class FrameResult:
    scores: np.ndarray  # (K,) float32
    classes: np.ndarray  # (K,) int32
    boxes: np.ndarray  # (K, 4) float32 xyxy in frame pixels
    masks: np.ndarray  # (K, H, W) bool
    query_index: np.ndarray  # (K,) int32


def postprocess_frame(
    class_scores: np.ndarray,
    mask_logits: np.ndarray,
    original_size: tuple[int, int],
    resized_size: tuple[int, int],
    *,
    score_threshold: float,
    mask_threshold: float = 0.45,
    stride: int = 4,
) -> FrameResult:
    """``class_scores`` (N, C) fused scores and ``mask_logits`` (N, h, w) of one frame."""
    scores = class_scores.max(axis=-1)
    labels = class_scores.argmax(axis=-1)
    idx = np.flatnonzero(scores > score_threshold)
    (oh, ow), (rh, rw) = (int(v) for v in original_size), (int(v) for v in resized_size)
    if idx.size == 0:
        return FrameResult(np.zeros(0, np.float32), np.zeros(0, np.int32), np.zeros((0, 4), np.float32),
                           np.zeros((0, oh, ow), bool), np.zeros(0, np.int32))  # fmt: skip
    probs = 1.0 / (1.0 + np.exp(-mask_logits[idx].astype(np.float32)))
    binary = probs > mask_threshold
    maskness = (probs * binary).sum(axis=(1, 2)) / (binary.sum(axis=(1, 2)) + 1e-6)
    rows = mask_resampler(probs.shape[1], stride, rh, oh)
    cols = mask_resampler(probs.shape[2], stride, rw, ow)
    full = np.matmul(np.matmul(rows, probs), cols.T)
    masks = full > mask_threshold
    return FrameResult(
        scores=(scores[idx] * maskness).astype(np.float32),
        classes=labels[idx].astype(np.int32),
        boxes=masks_to_boxes(masks),
        masks=masks,
        query_index=idx.astype(np.int32),
    )


def pack_results(results: list[FrameResult], frame_sizes: np.ndarray) -> dict[str, np.ndarray]:
    """The batch as the ensemble's output tensors: per-frame arrays padded to the largest K."""
    k = max((len(r.scores) for r in results), default=0)
    b = len(results)
    out = {
        "num_instances": np.array([[len(r.scores)] for r in results], dtype=np.int32).reshape(b, 1),
        "scores": np.zeros((b, k), np.float32),
        "classes": np.full((b, k), -1, np.int32),
        "boxes": np.zeros((b, k, 4), np.float32),
        "masks_rle": np.full((b, k), b"", dtype=object),
        "query_index": np.full((b, k), -1, np.int32),
        "frame_size": np.asarray(frame_sizes, dtype=np.int32).reshape(b, 2),
    }
    for i, r in enumerate(results):
        n = len(r.scores)
        out["scores"][i, :n] = r.scores
        out["classes"][i, :n] = r.classes
        out["boxes"][i, :n] = r.boxes
        out["query_index"][i, :n] = r.query_index
        for j, m in enumerate(r.masks):
            out["masks_rle"][i, j] = rle.encode(m)["counts"].encode("ascii")
    return out
