"""COCO run-length encoding of binary masks in plain numpy (no pycocotools on serving hosts).

The ``counts`` string is byte-for-byte what ``pycocotools.mask.encode`` produces: runs over the
column-major flattened mask, starting with a (possibly empty) run of zeros, each run written as
a delta against the run two back in 5-bit groups offset by 48.
"""

from __future__ import annotations

import numpy as np


def mask_runs(mask: np.ndarray) -> list[int]:
    """Run lengths of an (H, W) mask in column-major order, starting with zeros."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return []
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    runs = np.diff(bounds).tolist()
    return [0, *runs] if flat[0] else runs


def runs_to_string(runs: list[int]) -> str:
    out = []
    for i, run in enumerate(runs):
        x = run - runs[i - 2] if i > 2 else run
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


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


def encode(mask: np.ndarray) -> dict:
    """(H, W) bool -> ``{"size": [H, W], "counts": str}``."""
    h, w = mask.shape
    return {"size": [int(h), int(w)], "counts": runs_to_string(mask_runs(mask))}


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
