"""Compressed masks answer what the full-frame arrays answer: IoU, pixels inside a region, gathering."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.runmasks import RunMasks, region_columns


def _random_masks(rng: np.random.Generator, n: int, h: int, w: int) -> list[np.ndarray]:
    """Blobs, full columns (intervals that run on over several columns), empty masks, whole frames."""
    masks = []
    for k in range(n):
        m = np.zeros((h, w), bool)
        kind = k % 5
        if kind == 0:
            y0, x0 = rng.integers(0, h), rng.integers(0, w)
            m[y0 : y0 + rng.integers(1, h), x0 : x0 + rng.integers(1, w)] = True
            m &= rng.random((h, w)) < 0.8
        elif kind == 1:
            x0 = rng.integers(0, w)
            m[:, x0 : x0 + rng.integers(1, 4)] = True
        elif kind == 2:
            m[:] = rng.random((h, w)) < 0.3
        elif kind == 4:
            m[:] = True
        masks.append(m)
    return masks


def _dense_iou(a: list[np.ndarray], b: list[np.ndarray]) -> np.ndarray:
    out = np.zeros((len(a), len(b)))
    for p, x in enumerate(a):
        for q, y in enumerate(b):
            union = (x | y).sum()
            out[p, q] = (x & y).sum() / union if union else 0.0
    return out


@pytest.mark.parametrize("seed", range(4))
def test_iou_and_region_overlap_equal_the_dense_arrays(seed):
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(5, 40)), int(rng.integers(5, 40))
    a, b = _random_masks(rng, 11, h, w), _random_masks(rng, 9, h, w)
    ra, rb = RunMasks.from_arrays(a), RunMasks.from_arrays(b)
    dense = _dense_iou(a, b)
    np.testing.assert_allclose(ra.iou(rb), dense, rtol=1e-12)
    pruned = ra.iou(rb, min_iou=0.3)  # pairs that cannot reach 0.3 may be 0; every other pair is exact
    assert np.array_equal(pruned >= 0.3, dense >= 0.3)
    np.testing.assert_allclose(pruned[dense >= 0.3], dense[dense >= 0.3], rtol=1e-12)
    region = rng.random((h, w)) < 0.5
    region[:, : w // 3] = True  # whole columns inside, others in pieces
    assert ra.overlap(region_columns(region)).tolist() == [int((m & region).sum()) for m in a]


def test_gathered_masks_are_the_picked_ones_in_order():
    rng = np.random.default_rng(7)
    a, b = _random_masks(rng, 5, 12, 9), _random_masks(rng, 4, 12, 9)
    ra, rb = RunMasks.from_arrays(a), RunMasks.from_arrays(b)
    picks = [(rb, 3), (ra, 0), (ra, 4), (rb, 0), (ra, 0)]
    got = RunMasks.gather(picks)
    want = [(b if src is rb else a)[j] for src, j in picks]
    assert [got.to_array(i).tolist() for i in range(len(picks))] == [m.tolist() for m in want]
    assert got.areas().tolist() == [int(m.sum()) for m in want]
    assert RunMasks.gather([(ra, 2), (ra, 1)]).areas().tolist() == [int(a[2].sum()), int(a[1].sum())]
