"""Masks kept compressed: the foreground runs of COCO RLE, with the geometry consumers need.

A mask of an (H, W) frame is a sorted list of half-open intervals ``[start, end)`` over the
column-major flat index (pixel (y, x) is ``x * H + y``), exactly the "ones" runs of its COCO RLE.
Every ``counts`` string of a message is parsed in one compiled pass, which also yields each
mask's area, pixel sums (centroid) and box. The share inside a zone, IoU between all pairs whose
boxes touch, and box crops are computed on the intervals, all masks of a frame per call, so
nothing is ever decoded to a full frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from numba import njit

_EMPTY = np.zeros(0, np.int64)


# Kernels compiled once (numba, cached on disk): a numpy formulation needs ~40 passes over the
# characters and was the consumer's bottleneck at 1280x720; one compiled pass is ~20x faster.
_STATS = 7  # area, sum of x, sum of y, x0, y0, x1, y1 (box half-open)
_ERRORS = {1: "RLE counts hold characters outside the encoding's range", 2: "truncated RLE counts string",
           3: "RLE counts hold a value too large for a mask", 4: "RLE counts decode to a negative run",
           5: "RLE runs do not cover the frame"}  # fmt: skip


@njit(cache=True)
def _add_interval(stats: np.ndarray, i: int, s: int, e: int, h: int) -> None:
    q0 = s // h
    q1 = e // h
    r0, r1 = s - q0 * h, e - q1 * h
    st = stats[i]
    st[0] += e - s
    st[1] += (h * q1 * (q1 - 1) // 2 + r1 * q1) - (h * q0 * (q0 - 1) // 2 + r0 * q0)
    st[2] += (q1 * (h * (h - 1) // 2) + r1 * (r1 - 1) // 2) - (q0 * (h * (h - 1) // 2) + r0 * (r0 - 1) // 2)
    c0, c1 = q0, (q1 if r1 > 0 else q1 - 1)  # the column of the last pixel, e - 1
    y0, y1 = (r0, (r1 if r1 > 0 else h) - 1) if c0 == c1 else (0, h - 1)
    if st[0] == e - s:  # the first interval of the mask
        st[3], st[4], st[5], st[6] = c0, y0, c1 + 1, y1 + 1
    else:
        st[3], st[4] = min(st[3], c0), min(st[4], y0)
        st[5], st[6] = max(st[5], c1 + 1), max(st[6], y1 + 1)


@njit(cache=True)
def _parse(buf: np.ndarray, char_end: np.ndarray, h: int, size: int):
    n = char_end.size
    cap = buf.size // 2 + n + 1
    starts, ends = np.empty(cap, np.int64), np.empty(cap, np.int64)
    offsets = np.zeros(n + 1, np.int64)
    stats = np.zeros((n, 7), np.int64)
    m, pos = 0, 0
    for i in range(n):
        end = char_end[i]
        total, k, back1, back2 = 0, 0, 0, 0
        if pos >= end:
            return starts, ends, offsets, stats, 2, i
        while pos < end:
            x, shift, more = 0, 0, True
            while more:
                if pos >= end:
                    return starts, ends, offsets, stats, 2, i
                c = np.int64(buf[pos]) - 48
                if c < 0 or c > 63:
                    return starts, ends, offsets, stats, 1, i
                if shift > 50:
                    return starts, ends, offsets, stats, 3, i
                x |= (c & 0x1F) << shift
                more = (c & 0x20) != 0
                pos += 1
                shift += 5
                if not more and (c & 0x10) != 0:
                    x |= np.int64(-1) << shift
            if k > 2:
                x += back2
            if x < 0:
                return starts, ends, offsets, stats, 4, i
            if k % 2 == 1 and x > 0:
                starts[m], ends[m] = total, total + x
                _add_interval(stats, i, total, total + x, h)
                m += 1
            total += x
            back2, back1 = back1, x
            k += 1
        if total != size:
            return starts, ends, offsets, stats, 5, i
        offsets[i + 1] = m
    return starts[:m], ends[:m], offsets, stats, 0, -1


@njit(cache=True)
def _stats_of(starts: np.ndarray, ends: np.ndarray, first: np.ndarray, last: np.ndarray, h: int) -> np.ndarray:
    n = first.size
    stats = np.zeros((n, 7), np.int64)
    for i in range(n):
        for k in range(first[i], last[i]):
            _add_interval(stats, i, starts[k], ends[k], h)
    return stats


@njit(cache=True)
def _first_ending_after(ends: np.ndarray, lo: int, hi: int, flat: int) -> int:
    """The first interval of ``lo:hi`` (sorted) that ends after flat index ``flat``."""
    while lo < hi:
        mid = (lo + hi) // 2
        if ends[mid] <= flat:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def _pair_iou(sa, ea, fa, la, area_a, box_a, sb, eb, fb, lb, area_b, box_b, h, min_iou) -> np.ndarray:
    """(N, M) IoU. Pairs whose boxes share no pixel are 0 without looking at their runs, and so are pairs that
    cannot reach ``min_iou`` (their intersection is at most the smaller area and the boxes' overlap, their
    union at least the larger area). Runs are merged only over the columns both boxes cover."""
    out = np.zeros((fa.size, fb.size))
    for p in range(fa.size):
        for q in range(fb.size):
            x0, x1 = max(box_a[p, 0], box_b[q, 0]), min(box_a[p, 2], box_b[q, 2])
            y0, y1 = max(box_a[p, 1], box_b[q, 1]), min(box_a[p, 3], box_b[q, 3])
            if x1 <= x0 or y1 <= y0:
                continue
            big = max(area_a[p], area_b[q])
            bound = min(min(area_a[p], area_b[q]), (x1 - x0) * (y1 - y0))
            if big == 0 or bound < min_iou * big * (1.0 - 1e-9):
                continue
            stop = x1 * h  # past the last column both boxes cover
            i, i_end = _first_ending_after(ea, fa[p], la[p], x0 * h), la[p]
            j, j_end = _first_ending_after(eb, fb[q], lb[q], x0 * h), lb[q]
            inter = 0
            while i < i_end and j < j_end and sa[i] < stop and sb[j] < stop:
                lo, hi = max(sa[i], sb[j]), min(ea[i], eb[j])
                if hi > lo:
                    inter += hi - lo
                if ea[i] < eb[j]:
                    i += 1
                else:
                    j += 1
            union = area_a[p] + area_b[q] - inter
            if union > 0:
                out[p, q] = inter / union
    return out


@njit(cache=True)
def _overlap(starts: np.ndarray, ends: np.ndarray, first: np.ndarray, last: np.ndarray, h: int,
             col_start: np.ndarray, y_lo: np.ndarray, y_hi: np.ndarray) -> np.ndarray:  # fmt: skip
    """Pixels of each mask inside a region given as rows ``y_lo[q]:y_hi[q]`` for ``q`` in
    ``col_start[x]:col_start[x + 1]`` of each column ``x``: a table of a few KiB, read in order."""
    n = first.size
    out = np.zeros(n, np.int64)
    for i in range(n):
        acc = 0
        for k in range(first[i], last[i]):
            s, e = starts[k], ends[k]
            c = s // h
            while s < e:  # an interval may run on over several columns
                top = c * h
                seg = min(e, top + h)
                a, b = s - top, seg - top
                for q in range(col_start[c], col_start[c + 1]):
                    lo, hi = max(a, y_lo[q]), min(b, y_hi[q])
                    if hi > lo:
                        acc += hi - lo
                s, c = seg, c + 1
        out[i] = acc
    return out


def parse_counts(counts: Sequence[str | bytes], height: int, width: int) -> tuple[
        np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Parse COCO ``counts`` strings of ``height`` x ``width`` masks into foreground intervals, in one
    compiled pass. Returns ``(starts, ends, offsets, stats)``: mask ``i`` owns ``starts[offsets[i]:offsets[i +
    1]]``; ``stats[i]`` is its area, sums of x and y, and box. Raises ``ValueError`` for a malformed
    string or runs that do not cover the frame.
    """
    raw = [c.encode("ascii") if isinstance(c, str) else bytes(c) for c in counts]
    n = len(raw)
    buf = np.frombuffer(b"".join(raw), np.uint8) if n else np.zeros(0, np.uint8)
    char_end = np.cumsum(np.fromiter(map(len, raw), np.int64, n))
    starts, ends, offsets, stats, error, bad = _parse(buf, char_end, max(height, 1), height * width)
    if error:
        raise ValueError(f"mask {bad}: {_ERRORS[error]}")
    return starts, ends, offsets, stats


class RunMasks:
    """``len(self)`` masks of one ``height`` x ``width`` frame, as foreground intervals, with their stats."""

    __slots__ = ("counts", "ends", "first", "height", "last", "starts", "stats", "width")

    def __init__(self, height: int, width: int, starts: np.ndarray, ends: np.ndarray, offsets: np.ndarray,
                 stats: np.ndarray | None = None, counts: Sequence[str] | None = None, *,
                 last: np.ndarray | None = None) -> None:  # fmt: skip
        """Mask ``i`` owns intervals ``offsets[i]:offsets[i + 1]``, or ``offsets[i]:last[i]`` where ``last`` is
        given (a selection of another set's masks shares its interval arrays)."""
        self.height, self.width = int(height), int(width)
        self.starts, self.ends = starts, ends
        self.first, self.last = (offsets[:-1], offsets[1:]) if last is None else (offsets, last)
        self.stats = stats if stats is not None else _stats_of(starts, ends, self.first, self.last, max(height, 1))
        self.counts = list(counts) if counts is not None else None  # the RLE strings, when parsed from them

    # ------------------------------------------------------------------------------ construction

    @classmethod
    def from_counts(cls, counts: Sequence[str], height: int, width: int) -> RunMasks:
        starts, ends, offsets, stats = parse_counts(counts, height, width)
        return cls(height, width, starts, ends, offsets, stats, counts)

    @classmethod
    def from_arrays(cls, masks: Sequence[np.ndarray]) -> RunMasks:
        """From (H, W) bool arrays (hand-made masks, ground truth)."""
        if not masks:
            return cls.empty(0, 0)
        h, w = masks[0].shape
        starts, ends, sizes = [], [], []
        for m in masks:
            edges = np.diff(np.concatenate(([0], np.asarray(m, bool).ravel(order="F").astype(np.int8), [0])))
            starts.append(np.flatnonzero(edges == 1))
            ends.append(np.flatnonzero(edges == -1))
            sizes.append(len(starts[-1]))
        offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
        return cls(h, w, np.concatenate(starts).astype(np.int64), np.concatenate(ends).astype(np.int64), offsets)

    @classmethod
    def empty(cls, height: int, width: int) -> RunMasks:
        return cls(height, width, _EMPTY, _EMPTY, np.zeros(1, np.int64), np.zeros((0, _STATS), np.int64), [])

    @classmethod
    def concat(cls, parts: Sequence[RunMasks]) -> RunMasks:
        """The masks of ``parts`` (all of one frame size), in order."""
        if not parts:
            return cls.empty(0, 0)
        if len(parts) == 1:
            return parts[0]
        h, w = parts[0].height, parts[0].width
        if any((p.height, p.width) != (h, w) for p in parts):
            raise ValueError("masks of different frame sizes")
        # copy only the intervals the masks own (a selection shares its source's whole arrays)
        spans = [(p, int(f), int(e)) for p in parts for f, e in zip(p.first.tolist(), p.last.tolist())]
        starts = np.concatenate([p.starts[f:e] for p, f, e in spans]) if spans else _EMPTY
        ends = np.concatenate([p.ends[f:e] for p, f, e in spans]) if spans else _EMPTY
        offsets = np.cumsum([0] + [e - f for _, f, e in spans])
        counts = None if any(p.counts is None for p in parts) else [c for p in parts for c in p.counts]  # type: ignore[union-attr]
        return cls(h, w, starts, ends, offsets, np.concatenate([p.stats for p in parts]), counts)

    @classmethod
    def gather(cls, picks: Sequence[tuple[RunMasks, int]]) -> RunMasks:
        """Mask ``j`` of each ``(masks, j)``, in order (masks of one frame size): one copy of each distinct
        source's intervals, not one per mask."""
        if not picks:
            return cls.empty(0, 0)
        sources: dict[int, tuple[RunMasks, int]] = {}  # id -> (source, offset of its intervals)
        at = 0
        for m, _ in picks:
            if id(m) not in sources:
                sources[id(m)] = (m, at)
                at += len(m.starts)
        if len(sources) == 1:
            return picks[0][0].select([j for _, j in picks])
        h, w = picks[0][0].height, picks[0][0].width
        if any((m.height, m.width) != (h, w) for m, _ in sources.values()):
            raise ValueError("masks of different frame sizes")
        starts = np.concatenate([m.starts for m, _ in sources.values()])
        ends = np.concatenate([m.ends for m, _ in sources.values()])
        first = np.array([int(m.first[j]) + sources[id(m)][1] for m, j in picks], np.int64)
        last = np.array([int(m.last[j]) + sources[id(m)][1] for m, j in picks], np.int64)
        stats = np.stack([m.stats[j] for m, j in picks])
        counts = None if any(m.counts is None for m, _ in picks) else [m.counts[j] for m, j in picks]  # type: ignore[index]
        return cls(h, w, starts, ends, first, stats, counts, last=last)

    def select(self, indices: Sequence[int] | np.ndarray) -> RunMasks:
        """The masks at ``indices``, in that order, in one gather."""
        idx = np.asarray(indices, np.int64)
        counts = None if self.counts is None else [self.counts[i] for i in idx.tolist()]
        return RunMasks(self.height, self.width, self.starts, self.ends, self.first[idx], self.stats[idx], counts,
                        last=self.last[idx])  # fmt: skip

    def take(self, i: int) -> RunMasks:
        """Mask ``i`` alone (views, no copy)."""
        return RunMasks(self.height, self.width, self.starts, self.ends, self.first[i : i + 1],
                        self.stats[i : i + 1], None if self.counts is None else [self.counts[i]],
                        last=self.last[i : i + 1])  # fmt: skip

    def __len__(self) -> int:
        return len(self.first)

    # ------------------------------------------------------------------------------ geometry

    def areas(self) -> np.ndarray:
        return self.stats[:, 0]

    def centroids(self) -> np.ndarray:
        """(N, 2) mean pixel (x, y) of each mask; (0, 0) for an empty one."""
        return self.stats[:, 1:3] / np.maximum(self.stats[:, :1], 1)

    def boxes(self) -> np.ndarray:
        """(N, 4) xyxy boxes enclosing each mask (zeros for an empty one)."""
        return self.stats[:, 3:7].astype(np.float64)

    def overlap(self, region: RegionColumns) -> np.ndarray:
        """Pixels of each mask inside a region given by :func:`region_columns`."""
        if not len(self):
            return np.zeros(0, np.int64)
        if region.height != self.height or region.width != self.width:
            raise ValueError(f"region of a {region.width}x{region.height} frame, masks of {self.width}x{self.height}")
        return _overlap(self.starts, self.ends, self.first, self.last, max(self.height, 1), region.col_start,
                        region.y_lo, region.y_hi)  # fmt: skip

    def iou(self, other: RunMasks, min_iou: float = 0.0) -> np.ndarray:
        """(N, M) IoU of every mask here with every mask of ``other``; pairs that cannot reach ``min_iou`` are 0."""
        if (self.height, self.width) != (other.height, other.width) and len(self) and len(other):
            raise ValueError("masks of different frame sizes")
        a, b = self.stats, other.stats
        return _pair_iou(self.starts, self.ends, self.first, self.last, a[:, 0], a[:, 3:7],
                         other.starts, other.ends, other.first, other.last, b[:, 0], b[:, 3:7],
                         max(self.height, 1), float(min_iou))  # fmt: skip

    def crop(self, i: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Mask ``i`` within rows ``y0:y1`` and columns ``x0:x1`` as a bool array."""
        h = self.height
        a, b = int(self.first[i]), int(self.last[i])
        lo, hi = x0 * h, x1 * h
        s = np.clip(self.starts[a:b], lo, hi) - lo
        e = np.clip(self.ends[a:b], lo, hi) - lo
        diff = np.zeros(hi - lo + 1, np.int32)
        np.add.at(diff, s, 1)
        np.add.at(diff, e, -1)
        cols = np.cumsum(diff[:-1]).astype(bool).reshape(x1 - x0, h)
        return cols.T[y0:y1]

    def to_array(self, i: int) -> np.ndarray:
        """Mask ``i`` as a full (H, W) bool array (drawing, not the hot path)."""
        return self.crop(i, 0, self.height, 0, self.width)

    def rle(self, i: int) -> dict:
        """Mask ``i`` as COCO RLE (its original string when it was parsed from one)."""
        from pipeline.rle import runs_to_string

        if self.counts is not None:
            return {"size": [self.height, self.width], "counts": self.counts[i]}
        a, b = int(self.first[i]), int(self.last[i])
        s, e = self.starts[a:b], self.ends[a:b]
        zeros = s - np.concatenate(([0], e[:-1]))
        runs = np.stack([zeros, e - s], axis=1).ravel().tolist()
        tail = self.height * self.width - (int(e[-1]) if b > a else 0)
        if tail:
            runs.append(tail)
        return {"size": [self.height, self.width], "counts": runs_to_string(runs)}


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of (N, 4) and (M, 4) x0, y0, x1, y1 boxes (the tracker's fallback for empty masks, box scoring)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


class RegionColumns(NamedTuple):
    """A region of a ``height`` x ``width`` frame as its rows ``y_lo[q]:y_hi[q]`` for ``q`` in
    ``col_start[x]:col_start[x + 1]``, per column ``x`` (for :meth:`RunMasks.overlap`)."""

    height: int
    width: int
    col_start: np.ndarray
    y_lo: np.ndarray
    y_hi: np.ndarray


def region_columns(region: np.ndarray) -> RegionColumns:
    """The runs of an (H, W) bool region, column by column."""
    h, w = region.shape
    edges = np.diff(np.pad(np.asarray(region, bool).T.astype(np.int8), ((0, 0), (1, 1))), axis=1)  # (W, H + 1)
    col_up, y_lo = np.nonzero(edges == 1)
    _, y_hi = np.nonzero(edges == -1)
    col_start = np.searchsorted(col_up, np.arange(w + 1)).astype(np.int64)
    return RegionColumns(h, w, col_start, y_lo.astype(np.int64), y_hi.astype(np.int64))
