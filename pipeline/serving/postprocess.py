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

from pipeline.serving.mask_kernels import candidate_boxes, crop_bounds, crop_to_rle, empty_rle


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


@dataclass(frozen=True)
class MaskCrop:
    """A full-size mask that is ``prob > threshold`` in a crop whose top-left pixel is (``y0``, ``x0``), and
    empty elsewhere."""

    y0: int
    x0: int
    prob: np.ndarray  # (h, w) float32
    threshold: float

    @property
    def mask(self) -> np.ndarray:
        return self.prob > self.threshold


@dataclass
class FrameResult:
    scores: np.ndarray  # (K,) float32
    classes: np.ndarray  # (K,) int32
    boxes: np.ndarray  # (K, 4) float32 xyxy in frame pixels
    counts: list[bytes]  # (K,) COCO RLE counts of each mask at frame size
    query_index: np.ndarray  # (K,) int32
    size: tuple[int, int]  # the frame's (H, W)
    crops: list[MaskCrop | None]  # per instance: where its mask can be set (None: nowhere)

    @property
    def masks(self) -> np.ndarray:
        """(K, H, W) bool full-frame masks (checks and drawing; the serving path never makes them)."""
        out = np.zeros((len(self.crops), *self.size), bool)
        for k, c in enumerate(self.crops):
            if c is not None:
                out[k, c.y0 : c.y0 + c.prob.shape[0], c.x0 : c.x0 + c.prob.shape[1]] = c.mask
        return out


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    # float32 exp overflows to inf for very negative logits: 1 / inf is the right 0, without the warning
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-logits.astype(np.float32)))


# Mask probabilities are computed only where they can matter: a logit this far below the threshold's
# logit gives a probability below the threshold whatever float32 rounding does (the margin is ~1e5 ulp).
_LOGIT_MARGIN = 0.01
# Probabilities are computed this many cells around a mask's candidate box, which holds the inputs its
# resampling uses at the usual scales (elsewhere they are computed again for the inputs needed).
_AROUND = 3


def _band_arrays(band: Band) -> tuple:
    return band.reaches, band.out_lo, band.out_hi, band.in_lo, band.in_hi


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
        return FrameResult(np.zeros(0, np.float32), np.zeros(0, np.int32), np.zeros((0, 4), np.float32), [],
                           np.zeros(0, np.int32), (oh, ow), [])  # fmt: skip
    logits = mask_logits[idx].astype(np.float32, copy=False)
    # Probabilities only around each mask's candidate box; the maskness sums run over whole zero-filled
    # planes, so they add the same numbers in the same order as a sum over every probability would.
    binary = np.zeros(logits.shape, bool)
    weighted = np.zeros(logits.shape, np.float32)
    _, h, w = logits.shape
    rows, cols = resampling_band(h, stride, rh, oh), resampling_band(w, stride, rw, ow)
    cut = np.log(mask_threshold / (1.0 - mask_threshold)) - _LOGIT_MARGIN
    near: list[tuple[int, int, np.ndarray] | None] = []
    for k, (r0, r1, c0, c1) in enumerate(candidate_boxes(logits, cut).tolist()):
        if r1 == 0:
            near.append(None)
            continue
        e0, e1 = max(r0 - _AROUND, 0), min(r1 + _AROUND, h)
        f0, f1 = max(c0 - _AROUND, 0), min(c1 + _AROUND, w)
        prob = _sigmoid(logits[k, e0:e1, f0:f1])
        near.append((e0, f0, prob))
        inner = prob[r0 - e0 : r1 - e0, c0 - f0 : c1 - f0]
        above = inner > mask_threshold
        binary[k, r0:r1, c0:c1] = above
        weighted[k, r0:r1, c0:c1] = inner * above
    # Each output pixel is a convex combination of its input pixels (weights >= 0 that sum to 1), so it
    # can exceed the threshold only where an input with weight does: in the outputs reached from the
    # binary mask's rows and columns. Resampled there with every input of weight, the crop is exactly
    # the full-size result, and the rest of the frame is exactly empty.
    crops: list[MaskCrop | None] = []
    for k, (y0, y1, x0, x1, a0, a1, b0, b1) in enumerate(
        crop_bounds(binary, _band_arrays(rows), _band_arrays(cols)).tolist()
    ):
        around = near[k]
        if y1 == 0 or around is None:
            crops.append(None)
            continue
        e0, f0, prob = around
        if a0 >= e0 and b0 >= f0 and a1 - e0 <= prob.shape[0] and b1 - f0 <= prob.shape[1]:
            prob = prob[a0 - e0 : a1 - e0, b0 - f0 : b1 - f0]
        else:
            prob = _sigmoid(logits[k, a0:a1, b0:b1])
        full = rows.matrix[y0:y1, a0:a1] @ prob @ cols.matrix[x0:x1, b0:b1].T
        crops.append(MaskCrop(y0, x0, full, mask_threshold))
    maskness = weighted.sum(axis=(1, 2)) / (binary.sum(axis=(1, 2)) + 1e-6)
    boxes = np.zeros((idx.size, 4), np.float32)
    counts = [empty_rle(oh, ow)] * idx.size
    for k, c in enumerate(crops):  # threshold, box and RLE in one pass over each crop
        if c is not None:
            counts[k], boxes[k] = crop_to_rle(c.prob, c.threshold, c.y0, c.x0, oh, ow)
    return FrameResult(
        scores=(scores[idx] * maskness).astype(np.float32),
        classes=labels[idx].astype(np.int32),
        boxes=boxes,
        counts=counts,
        query_index=(idx if queries is None else np.asarray(queries)[idx]).astype(np.int32),
        size=(oh, ow),
        crops=crops,
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
        out["masks_rle"][i, :n] = r.counts
    return out
