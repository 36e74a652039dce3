"""Box recall and precision of persons and vehicles, for hand-drawn box annotations of real frames.

Real footage has no instance masks here, so the model's masks are scored through their bounding
boxes: a detection is a hit when its box overlaps an unmatched ground-truth box of the same group
with IoU >= 0.5. Classes are pooled into groups (a truck called a car is still a vehicle found).
Ground-truth boxes flagged ``iscrowd`` (too small or too occluded to judge) are not counted, and
detections on them are neither hits nor false alarms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.data.classes import COCO_CLASSES, COCO_IDS
from pipeline.runmasks import box_iou

GROUPS: dict[str, tuple[str, ...]] = {
    "person": ("person",),
    "vehicle": ("bicycle", "car", "motorcycle", "bus", "truck"),
}


@dataclass
class BoxScore:
    group: str
    boxes: int  # scored ground-truth boxes
    found: int
    detections: int  # detections scored (not on ignored boxes)
    false_alarms: int

    @property
    def recall(self) -> float:
        return self.found / self.boxes if self.boxes else float("nan")

    @property
    def precision(self) -> float:
        return (self.detections - self.false_alarms) / self.detections if self.detections else float("nan")


def score_boxes(
    gt: dict, results: list[dict], *, score_threshold: float, iou_threshold: float = 0.5
) -> dict[str, BoxScore]:
    """Score COCO detection ``results`` (``bbox`` x, y, w, h) against the boxes of COCO ``gt``."""
    names = {c["id"]: c["name"] for c in gt["categories"]}
    names.update({COCO_IDS[i]: name for i, name in enumerate(COCO_CLASSES)})
    group_of = {name: group for group, members in GROUPS.items() for name in members}
    scores = {g: BoxScore(g, 0, 0, 0, 0) for g in GROUPS}
    by_image: dict[tuple[int, str | None], tuple[list[dict], list[dict]]] = {}
    for which, items in enumerate((gt["annotations"], results)):
        for a in items:
            by_image.setdefault((a["image_id"], group_of.get(names[a["category_id"]])), ([], []))[which].append(a)
    for info in gt["images"]:
        for group, score in scores.items():
            truth, detected = by_image.get((info["id"], group), ([], []))
            found = sorted((r for r in detected if r["score"] >= score_threshold), key=lambda r: -r["score"])
            ignored = np.array([bool(a.get("iscrowd")) for a in truth], bool)
            iou = box_iou(_xyxy([r["bbox"] for r in found]), _xyxy([a["bbox"] for a in truth]))
            matched = np.zeros(len(truth), bool)
            score.boxes += int((~ignored).sum())
            for row in iou:
                free = np.flatnonzero(~ignored & ~matched & (row >= iou_threshold))
                if free.size:
                    matched[free[np.argmax(row[free])]] = True
                    score.found += 1
                elif (ignored & (row >= iou_threshold)).any():
                    continue  # on a box too small or occluded to judge: not scored
                else:
                    score.false_alarms += 1
                score.detections += 1
    return scores


def _xyxy(boxes: list[list[float]]) -> np.ndarray:
    b = np.array(boxes, np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)
