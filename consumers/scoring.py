"""Score produced events against ground-truth events (precision and recall per event type).

Two events match when they have the same camera, type, zone or line, direction and class,
and their frame indexes differ by at most ``tolerance`` frames; matching is one-to-one and
greedy by time difference, so a duplicate counts as a false positive and a miss as a false negative.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from pipeline.messages import Event

SCORED_TYPES = ("zone.entered", "zone.exited", "line.crossed")


def _key(e: Event) -> tuple:
    return (e.camera_id, e.type, e.zone, e.line, e.direction, e.class_name)


@dataclass
class TypeScore:
    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0
    unmatched_predicted: list[Event] = field(default_factory=list)
    unmatched_truth: list[Event] = field(default_factory=list)

    @property
    def precision(self) -> float:
        n = self.true_positives + self.false_positives
        return self.true_positives / n if n else 1.0

    @property
    def recall(self) -> float:
        n = self.true_positives + self.false_negatives
        return self.true_positives / n if n else 1.0


def score_events(predicted: Iterable[Event], truth: Iterable[Event], *, tolerance: int = 3,
                 types: Iterable[str] = SCORED_TYPES) -> dict[str, TypeScore]:  # fmt: skip
    wanted = set(types)
    pred_by: dict[tuple, list[Event]] = defaultdict(list)
    true_by: dict[tuple, list[Event]] = defaultdict(list)
    for e in predicted:
        if e.type in wanted:
            pred_by[_key(e)].append(e)
    for e in truth:
        if e.type in wanted:
            true_by[_key(e)].append(e)
    scores = {t: TypeScore() for t in sorted(wanted)}
    for key in set(pred_by) | set(true_by):
        s = scores[key[1]]
        preds, trues = pred_by.get(key, []), true_by.get(key, [])
        pairs = sorted((abs(p.frame_index - t.frame_index), i, j) for i, p in enumerate(preds)
                       for j, t in enumerate(trues) if abs(p.frame_index - t.frame_index) <= tolerance)  # fmt: skip
        used_p, used_t = set(), set()
        for _, i, j in pairs:
            if i not in used_p and j not in used_t:
                used_p.add(i)
                used_t.add(j)
        s.true_positives += len(used_p)
        s.false_positives += len(preds) - len(used_p)
        s.false_negatives += len(trues) - len(used_t)
        s.unmatched_predicted += [p for i, p in enumerate(preds) if i not in used_p]
        s.unmatched_truth += [t for j, t in enumerate(trues) if j not in used_t]
    return scores
