"""Post-processing's compiled kernels: where each mask can be set, and a resampled crop to COCO RLE.

Post-processing (:mod:`pipeline.serving.postprocess`) computes probabilities and resamples each
instance only inside the box where its mask can be set. These kernels find those boxes (integer
work on the thresholded planes, one call per frame) and turn a crop of full-size probabilities
into the frame's COCO ``counts`` in one pass, column by column (COCO's order), without a
full-frame mask: byte for byte what :func:`pipeline.rle.encode` writes for the full-frame mask.
Floating-point work stays in numpy, so every probability is the number numpy computes.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def candidate_boxes(logits: np.ndarray, cut: float) -> np.ndarray:
    """(K, 4) rows and columns ``r0, r1, c0, c1`` of each (h, w) plane's values above ``cut`` (r1 = 0: none)."""
    k_count, h, w = logits.shape
    out = np.zeros((k_count, 4), np.int64)
    for k in range(k_count):
        r0, r1, c0, c1 = h, 0, w, 0
        for y in range(h):
            for x in range(w):
                if logits[k, y, x] > cut:
                    r0, r1 = min(r0, y), y + 1
                    c0, c1 = min(c0, x), max(c1, x + 1)
        if r1 > 0:
            out[k, 0], out[k, 1], out[k, 2], out[k, 3] = r0, r1, c0, c1
    return out


@njit(cache=True)
def _reach(any_in: np.ndarray, reaches: np.ndarray, out_lo: np.ndarray, out_hi: np.ndarray, in_lo: np.ndarray,
           in_hi: np.ndarray):  # fmt: skip
    """Along one axis: the outputs reached by the inputs set in ``any_in``, and the inputs those outputs use."""
    o0, o1 = 1 << 62, -1
    for i in range(any_in.size):
        if any_in[i] and reaches[i]:
            o0, o1 = min(o0, out_lo[i]), max(o1, out_hi[i])
    if o1 < 0:
        return 0, 0, 0, 0
    i0, i1 = in_lo[o0], in_hi[o0]
    for o in range(o0, o1):
        i0, i1 = min(i0, in_lo[o]), max(i1, in_hi[o])
    return o0, o1, i0, i1


@njit(cache=True)
def crop_bounds(binary: np.ndarray, rows: tuple, cols: tuple) -> np.ndarray:
    """(K, 8): per plane of ``binary`` (K, h, w) the output box ``y0, y1, x0, x1`` its set pixels reach and
    the input box ``a0, a1, b0, b1`` those outputs use (y1 = 0: it reaches nothing). ``rows`` and ``cols``
    are each axis's ``(reaches, out_lo, out_hi, in_lo, in_hi)``."""
    k_count, h, w = binary.shape
    out = np.zeros((k_count, 8), np.int64)
    for k in range(k_count):
        any_row = np.zeros(h, np.bool_)
        any_col = np.zeros(w, np.bool_)
        for y in range(h):
            for x in range(w):
                if binary[k, y, x]:
                    any_row[y] = True
                    any_col[x] = True
        y0, y1, a0, a1 = _reach(any_row, rows[0], rows[1], rows[2], rows[3], rows[4])
        x0, x1, b0, b1 = _reach(any_col, cols[0], cols[1], cols[2], cols[3], cols[4])
        if y1 > y0 and x1 > x0:
            out[k, 0], out[k, 1], out[k, 2], out[k, 3] = y0, y1, x0, x1
            out[k, 4], out[k, 5], out[k, 6], out[k, 7] = a0, a1, b0, b1
    return out


@njit(cache=True)
def _encode_runs(runs: np.ndarray, n: int) -> np.ndarray:
    """COCO's compressed counts of ``runs[:n]``: each run as a delta against the run two back, 5 bits a char."""
    out = np.empty(n * 14, np.uint8)  # 14 groups of 5 bits hold any int64
    m = 0
    for i in range(n):
        x = runs[i] - runs[i - 2] if i > 2 else runs[i]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out[m] = c + 48
            m += 1
    return out[:m]


@njit(cache=True)
def _threshold_runs(prob: np.ndarray, threshold: float, y0: int, x0: int, height: int, width: int):
    """(runs, count, box) of the frame's mask that is ``prob > threshold`` at (y0, x0) and empty elsewhere."""
    ch, cw = prob.shape
    runs = np.empty(2 * ch * cw + 2, np.int64)
    n = 0  # runs written: zeros and ones alternate, starting with zeros
    end = 0  # flat index where the last foreground run ended
    box = np.zeros(4, np.float32)
    top, bottom, left, right = ch, -1, cw, -1
    for x in range(cw):
        base = (x0 + x) * height + y0
        inside = False
        start = 0
        for y in range(ch + 1):
            on = y < ch and prob[y, x] > threshold
            if on and not inside:
                start, inside = base + y, True
                top, bottom = min(top, y), max(bottom, y)
                left, right = min(left, x), max(right, x)
            elif inside and not on:
                inside = False
                bottom = max(bottom, y - 1)
                if n > 0 and start == end:  # continues the run that ended at the previous column's last pixel
                    runs[n - 1] += base + y - start
                else:
                    runs[n] = start - end
                    runs[n + 1] = base + y - start
                    n += 2
                end = base + y
    total = height * width
    if total - end > 0 or (n == 0 and total > 0):
        runs[n] = total - end
        n += 1
    if right >= 0:
        box[0], box[1], box[2], box[3] = x0 + left, y0 + top, x0 + right + 1, y0 + bottom + 1
    return runs, n, box


def crop_to_rle(prob: np.ndarray, threshold: float, y0: int, x0: int, height: int,
                width: int) -> tuple[bytes, np.ndarray]:  # fmt: skip
    """``counts`` (ASCII bytes) and xyxy box (zeros when empty) of the ``height`` x ``width`` mask that is
    ``prob > threshold`` in the crop whose top-left pixel is (``y0``, ``x0``), and empty elsewhere."""
    runs, n, box = _threshold_runs(prob, np.float32(threshold), y0, x0, height, width)
    return _encode_runs(runs, n).tobytes(), box


def empty_rle(height: int, width: int) -> bytes:
    """``counts`` of an empty mask."""
    return crop_to_rle(np.zeros((0, 0), np.float32), 0.0, 0, 0, height, width)[0]
