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
from pipeline.dense_masks import masks_to_boxes


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


@dataclass(frozen=True)
class Band:
    """Where a banded resampling matrix is non-zero: per output index its input range, per input its outputs."""

    matrix: np.ndarray  # (out, in)
    in_lo: np.ndarray  # (out,) first input with weight
    in_hi: np.ndarray  # (out,) last input with weight, + 1
    out_lo: np.ndarray  # (in,) first output it reaches
    out_hi: np.ndarray  # (in,) last output it reaches, + 1
    reaches: np.ndarray  # (in,) bool: has any output (inputs in the padding below the frame have none)


@lru_cache(maxsize=64)
def resampling_band(mask_size: int, stride: int, resized: int, original: int) -> Band:
    m = mask_resampler(mask_size, stride, resized, original)
    nz = m > 0
    rows_any, cols_any = nz.any(axis=1), nz.any(axis=0)
    in_lo = np.where(rows_any, nz.argmax(axis=1), 0)
    in_hi = np.where(rows_any, m.shape[1] - nz[:, ::-1].argmax(axis=1), 0)
    out_lo = np.where(cols_any, nz.argmax(axis=0), 0)
    out_hi = np.where(cols_any, m.shape[0] - nz[::-1].argmax(axis=0), 0)
    return Band(m, in_lo, in_hi, out_lo, out_hi, cols_any)


def _resample_box(prob: np.ndarray, support: np.ndarray, rows: Band, cols: Band,
                  threshold: float) -> tuple[int, int, np.ndarray] | None:  # fmt: skip
    """The thresholded full-size mask within the box where it can be set: (y0, x0, crop), None if empty.

    Each output pixel is a convex combination of its input pixels (weights >= 0 that sum to 1), so
    it can exceed ``threshold`` only where an input pixel with weight does: outputs reached from
    the support's bounding rows and columns. Within them every input with weight is used, so the
    crop is exactly the full-size result there and the rest of the frame is exactly empty.
    """
    r_idx = np.flatnonzero(support.any(axis=1) & rows.reaches)
    c_idx = np.flatnonzero(support.any(axis=0) & cols.reaches)
    if r_idx.size == 0 or c_idx.size == 0:
        return None
    y0, y1 = int(rows.out_lo[r_idx].min()), int(rows.out_hi[r_idx].max())
    x0, x1 = int(cols.out_lo[c_idx].min()), int(cols.out_hi[c_idx].max())
    a0, a1 = int(rows.in_lo[y0:y1].min()), int(rows.in_hi[y0:y1].max())
    b0, b1 = int(cols.in_lo[x0:x1].min()), int(cols.in_hi[x0:x1].max())
    full = rows.matrix[y0:y1, a0:a1] @ prob[a0:a1, b0:b1] @ cols.matrix[x0:x1, b0:b1].T
    return y0, x0, full > threshold


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
    queries: np.ndarray | None = None,
) -> FrameResult:
    """``class_scores`` (N, C) fused scores and ``mask_logits`` (N, h, w) of one frame.

    ``queries`` names the query of each row where the rows are a selection (the served network's
    kept instances, :mod:`pipeline.serving.selection`); unset, row ``i`` is query ``i``.
    """
    scores = class_scores.max(axis=-1)
    labels = class_scores.argmax(axis=-1)
    idx = np.flatnonzero(scores > score_threshold)
    (oh, ow), (rh, rw) = (int(v) for v in original_size), (int(v) for v in resized_size)
    if idx.size == 0:
        return FrameResult(np.zeros(0, np.float32), np.zeros(0, np.int32), np.zeros((0, 4), np.float32),
                           np.zeros((0, oh, ow), bool), np.zeros(0, np.int32))  # fmt: skip
    # float32 exp overflows to inf for very negative logits: 1 / inf is the right 0, without the warning
    with np.errstate(over="ignore"):
        probs = 1.0 / (1.0 + np.exp(-mask_logits[idx].astype(np.float32)))
    binary = probs > mask_threshold
    maskness = (probs * binary).sum(axis=(1, 2)) / (binary.sum(axis=(1, 2)) + 1e-6)
    rows = resampling_band(probs.shape[1], stride, rh, oh)
    cols = resampling_band(probs.shape[2], stride, rw, ow)
    masks = np.zeros((idx.size, oh, ow), bool)
    boxes = np.zeros((idx.size, 4), np.float32)
    for k in range(idx.size):  # full-size resampling only inside each instance's box
        crop = _resample_box(probs[k], binary[k], rows, cols, mask_threshold)
        if crop is None:
            continue
        y0, x0, m = crop
        masks[k, y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]] = m
        boxes[k] = masks_to_boxes(m[None])[0] + (x0, y0, x0, y0) if m.any() else 0
    return FrameResult(
        scores=(scores[idx] * maskness).astype(np.float32),
        classes=labels[idx].astype(np.int32),
        boxes=boxes,
        masks=masks,
        query_index=(idx if queries is None else np.asarray(queries)[idx]).astype(np.int32),
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
        for j, (m, box) in enumerate(zip(r.masks, r.boxes)):  # the box bounds the columns to scan
            out["masks_rle"][i, j] = rle.encode(m, (int(box[0]), int(box[2])))["counts"].encode("ascii")
    return out
