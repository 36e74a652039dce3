"""COCO run-length encoding of binary masks in plain numpy (no pycocotools on serving hosts).

The ``counts`` string is byte-for-byte what ``pycocotools.mask.encode`` produces: runs over the
column-major flattened mask, starting with a (possibly empty) run of zeros, each run written as
a delta against the run two back in 5-bit groups offset by 48.
"""

from __future__ import annotations

import numpy as np


def mask_runs(mask: np.ndarray) -> np.ndarray:
    """Run lengths of an (H, W) mask in column-major order, starting with zeros."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return np.zeros(0, np.int64)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate(([0], change, [flat.size])))
    return np.concatenate(([0], runs)) if flat[0] else runs


def strip_runs(strip: np.ndarray, x0: int, width: int) -> np.ndarray:
    """Runs of a full frame that is empty outside columns ``x0 .. x0 + strip width`` (a full-height strip)."""
    h = strip.shape[0]
    runs = mask_runs(strip).copy()
    if runs.size == 0:
        return np.array([h * width], np.int64)
    runs[0] += x0 * h  # the empty columns before the strip
    tail = (width - x0 - strip.shape[1]) * h
    if tail:
        if runs.size % 2:  # ends on zeros: they go on
            runs[-1] += tail
        else:
            runs = np.concatenate((runs, [tail]))
    return runs


def runs_to_string(runs: list[int] | np.ndarray) -> str:
    """COCO's compressed ``counts``: each run as a delta against the run two back, in 5-bit groups (vectorized)."""
    r = np.asarray(runs, np.int64)
    if r.size == 0:
        return ""
    x = r.copy()
    x[3:] -= r[1:-2]
    out = np.full((x.size, 14), -1, np.int64)  # 14 groups of 5 bits hold any int64
    active = np.ones(x.size, bool)
    for step in range(14):
        c = x & 0x1F
        x = x >> 5
        more = np.where(c & 0x10, x != -1, x != 0)
        out[:, step] = np.where(active, c + (more << 5) + 48, -1)
        active &= more
        if not active.any():
            break
    chars = out[out >= 0]
    return chars.astype(np.uint8).tobytes().decode("ascii")


def string_to_runs(counts: str) -> list[int]:
    runs: list[int] = []
    pos = 0
    while pos < len(counts):
        x, shift, more = 0, 0, True
        while more:
            if pos >= len(counts):
                raise ValueError("truncated RLE counts string")
            c = ord(counts[pos]) - 48
            x |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            pos += 1
            shift += 5
            if not more and c & 0x10:
                x |= -1 << shift
        if len(runs) > 2:
            x += runs[-2]
        runs.append(x)
    return runs


def encode(mask: np.ndarray, columns: tuple[int, int] | None = None) -> dict:
    """(H, W) bool -> ``{"size": [H, W], "counts": str}``.

    Only the columns that hold pixels are scanned (the rest is zeros); ``columns`` (x0, x1) names
    them when already known, e.g. from the mask's box.
    """
    h, w = mask.shape
    if columns is None:
        cols = np.flatnonzero(np.asarray(mask, bool).any(axis=0))
        columns = (int(cols[0]), int(cols[-1]) + 1) if cols.size else (0, 0)
    x0, x1 = columns
    if x1 <= x0:
        return {"size": [int(h), int(w)], "counts": runs_to_string([h * w] if h * w else [])}
    return {"size": [int(h), int(w)], "counts": runs_to_string(strip_runs(mask[:, x0:x1], x0, w))}


def decode(rle: dict) -> np.ndarray:
    """COCO RLE with a str or bytes ``counts`` -> (H, W) bool. Raises ``ValueError`` on a malformed one."""
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    runs = string_to_runs(counts.decode("ascii") if isinstance(counts, bytes) else counts)
    if any(r < 0 for r in runs) or sum(runs) != h * w:
        raise ValueError(f"RLE runs do not cover a {h}x{w} mask")
    values = np.zeros(len(runs), dtype=bool)
    values[1::2] = True
    return np.repeat(values, runs).reshape((h, w), order="F")


def area(rle: dict) -> int:
    runs = string_to_runs(rle["counts"])
    return int(sum(runs[1::2]))
