"""Compare what two model versions found in one frame, and add such comparisons up.

Instances are matched one to one by mask IoU (Hungarian assignment on the IoU matrix; pairs under
``MATCH_IOU`` stay unmatched). An instance *agrees* when it is matched with the same class. A
frame's agreement is agreeing pairs over the larger instance count; the rollout's agreement rate
is agreeing pairs over the sum of those counts, so crowded frames weigh more than empty ones.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.optimize import linear_sum_assignment

from pipeline.messages import FrameDetections, ShadowResult
from pipeline.runmasks import RunMasks

MATCH_IOU = 0.5
NONE = "<none>"  # the class of "no instance" in the confusion counts
IOU_BINS = tuple(round(0.1 * i, 1) for i in range(1, 10))  # histogram edges of matched IoU: <0.1, ..., >=0.9
# latency histogram: 1 ms to ~60 s in 5 % steps, so p50/p99 survive a restart without keeping samples
LATENCY_EDGES_MS = tuple(round(1.05**i, 3) for i in range(226))


def mask_iou(live: FrameDetections, candidate: FrameDetections) -> np.ndarray:
    """(n_live, n_candidate) mask IoU, on the masks' runs (as the tracker computes it; nothing decoded)."""
    a, b = live.instances, candidate.instances
    if not a or not b:
        return np.zeros((len(a), len(b)))
    masks = []
    for frame in (live, candidate):
        for d in frame.instances:
            if tuple(d.mask.size) != (frame.height, frame.width):
                raise ValueError(f"mask of query {d.query} is {d.mask.size}, the frame {frame.height}x{frame.width}")
        masks.append(RunMasks.from_counts([d.mask.counts for d in frame.instances], frame.height, frame.width))
    return masks[0].iou(masks[1])


@dataclass
class FrameComparison:
    live_count: int
    candidate_count: int
    pairs: list[tuple[str, str, float, float]] = field(default_factory=list)  # live class, cand class, IoU, Δscore
    unmatched_live: list[str] = field(default_factory=list)
    unmatched_candidate: list[str] = field(default_factory=list)

    @property
    def agreeing(self) -> int:
        return sum(1 for lc, cc, _, _ in self.pairs if lc == cc)

    @property
    def agreement(self) -> float:
        n = max(self.live_count, self.candidate_count)
        return 1.0 if n == 0 else self.agreeing / n


def compare_frames(live: FrameDetections, candidate: FrameDetections) -> FrameComparison:
    iou = mask_iou(live, candidate)
    out = FrameComparison(len(live.instances), len(candidate.instances))
    matched_l, matched_c = set(), set()
    if iou.size:
        rows, cols = linear_sum_assignment(-iou)
        for i, j in zip(rows, cols):
            if iou[i, j] >= MATCH_IOU:
                a, b = live.instances[i], candidate.instances[j]
                out.pairs.append((a.class_name, b.class_name, float(iou[i, j]), b.score - a.score))
                matched_l.add(i)
                matched_c.add(j)
    out.unmatched_live = [d.class_name for i, d in enumerate(live.instances) if i not in matched_l]
    out.unmatched_candidate = [d.class_name for j, d in enumerate(candidate.instances) if j not in matched_c]
    return out


class LatencyHistogram(BaseModel):
    """Counts per bucket of ``LATENCY_EDGES_MS``; quantiles are the bucket's upper edge (within 5 %)."""

    model_config = ConfigDict(extra="forbid")

    counts: dict[int, int] = Field(default_factory=dict)

    def add(self, ms: float) -> None:
        i = bisect.bisect_left(LATENCY_EDGES_MS, ms)
        self.counts[i] = self.counts.get(i, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def quantile(self, q: float) -> float | None:
        total = self.total
        if not total:
            return None
        seen = 0
        for i in sorted(self.counts):
            seen += self.counts[i]
            if seen >= q * total:
                return LATENCY_EDGES_MS[min(i, len(LATENCY_EDGES_MS) - 1)]
        return LATENCY_EDGES_MS[-1]


class Judgement(BaseModel):
    """Everything judged so far in one rollout; additive, and small enough to persist with its state."""

    model_config = ConfigDict(extra="forbid")

    frames: int = Field(0, description="shadow frames both versions answered")
    live_instances: int = 0
    candidate_instances: int = 0
    agreeing: int = 0
    compared: int = Field(0, description="sum over frames of the larger instance count")
    count_abs_diff: int = 0
    score_drift_sum: float = 0.0
    matched: int = 0
    iou_hist: list[int] = Field(default_factory=lambda: [0] * (len(IOU_BINS) + 1))
    confusion: dict[str, int] = Field(default_factory=dict, description="'live class -> candidate class': pairs")
    latency_ms: dict[str, LatencyHistogram] = Field(
        default_factory=lambda: {"live": LatencyHistogram(), "candidate": LatencyHistogram()}
    )
    errors: dict[str, int] = Field(default_factory=lambda: {"live": 0, "candidate": 0})
    error_examples: list[str] = Field(default_factory=list, description="the first few candidate errors")

    def add(self, result: ShadowResult) -> None:
        """Fold one result in; a result whose masks cannot be compared raises before anything is counted."""
        both = result.live is not None and result.candidate is not None
        c = compare_frames(result.live, result.candidate) if both else None  # type: ignore[arg-type]
        for who, ms in (("live", result.live_latency_ms), ("candidate", result.candidate_latency_ms)):
            if ms is not None:
                self.latency_ms[who].add(ms)
        if result.live_error:
            self.errors["live"] += 1
        if result.candidate_error:
            self.errors["candidate"] += 1
            if len(self.error_examples) < 5:
                self.error_examples.append(result.candidate_error[:300])
        if c is None:
            return
        self.frames += 1
        self.live_instances += c.live_count
        self.candidate_instances += c.candidate_count
        self.agreeing += c.agreeing
        self.compared += max(c.live_count, c.candidate_count)
        self.count_abs_diff += abs(c.candidate_count - c.live_count)
        for lc, cc, iou, drift in c.pairs:
            self.matched += 1
            self.score_drift_sum += drift
            self.iou_hist[bisect.bisect_right(IOU_BINS, iou)] += 1
            self._confuse(lc, cc)
        for lc in c.unmatched_live:
            self._confuse(lc, NONE)
        for cc in c.unmatched_candidate:
            self._confuse(NONE, cc)

    def _confuse(self, live_class: str, candidate_class: str) -> None:
        key = f"{live_class} -> {candidate_class}"
        self.confusion[key] = self.confusion.get(key, 0) + 1

    @property
    def agreement(self) -> float | None:
        if not self.frames:
            return None
        return 1.0 if self.compared == 0 else self.agreeing / self.compared

    def summary(self) -> dict[str, float | int | None]:
        """Flat figures for events, metrics and status."""
        q = lambda who, p: self.latency_ms[who].quantile(p)  # noqa: E731
        mean = lambda v, n: round(v / n, 4) if n else None  # noqa: E731
        return {
            "frames": self.frames,
            "agreement": None if self.agreement is None else round(self.agreement, 4),
            "live_instances": self.live_instances,
            "candidate_instances": self.candidate_instances,
            "count_diff_mean": mean(self.candidate_instances - self.live_instances, self.frames),
            "count_abs_diff_mean": mean(self.count_abs_diff, self.frames),
            "score_drift_mean": mean(self.score_drift_sum, self.matched),
            "unmatched_instances": self.live_instances + self.candidate_instances - 2 * self.matched,
            "mask_iou_p50": self._iou_quantile(0.5),
            "live_latency_p50_ms": q("live", 0.5), "live_latency_p99_ms": q("live", 0.99),
            "candidate_latency_p50_ms": q("candidate", 0.5), "candidate_latency_p99_ms": q("candidate", 0.99),
            "live_errors": self.errors["live"], "candidate_errors": self.errors["candidate"],
        }  # fmt: skip

    def _iou_quantile(self, q: float) -> float | None:
        """Lower edge of the bin holding the q-quantile of matched IoU (0.1 resolution)."""
        if not self.matched:
            return None
        seen = 0
        for i, n in enumerate(self.iou_hist):
            seen += n
            if seen >= q * self.matched:
                return 0.0 if i == 0 else IOU_BINS[i - 1]
        return IOU_BINS[-1]
