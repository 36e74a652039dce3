"""Per-camera multi-object tracking on mask IoU (box IoU where a mask is empty).

Detections are assigned one-to-one to tracks of the same class with the Hungarian method on
``1 - IoU``; pairs below ``track_iou`` stay unassigned. A track survives ``max_misses`` frames
without a detection, so a short occlusion or a missed frame does not end it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, Field
from scipy.optimize import linear_sum_assignment

from pipeline import rle

_STRIDE = 4  # IoU on a 4x subsampled grid: plenty for association, 16x cheaper


@dataclass
class Observation:
    """One detection of one frame, with its decoded mask."""

    class_name: str
    score: float
    box: tuple[float, float, float, float]
    mask: np.ndarray  # (H, W) bool
    object_id: int | None = None  # ground truth only: the simulator's id

    def __post_init__(self) -> None:
        h, w = self.mask.shape
        x1, y1, x2, y2 = self.box
        # the mask's pixels all lie in its box: per-object sums only need to look there
        self.window = (
            slice(max(int(y1), 0), min(int(np.ceil(y2)), h)),
            slice(max(int(x1), 0), min(int(np.ceil(x2)), w)),
        )
        self.area = int(self.mask[self.window].sum())
        if self.area != int(self.mask.sum()):  # a box that does not enclose the mask: use the whole frame
            self.window = (slice(0, h), slice(0, w))
            self.area = int(self.mask.sum())

    def centroid(self) -> tuple[float, float]:
        crop = self.mask[self.window]
        ys, xs = crop.sum(axis=1), crop.sum(axis=0)
        area = max(self.area, 1)
        cy = float((ys * np.arange(crop.shape[0])).sum()) / area + self.window[0].start
        cx = float((xs * np.arange(crop.shape[1])).sum()) / area + self.window[1].start
        return cx, cy

    def overlap(self, region: np.ndarray) -> int:
        """Pixels of the mask inside ``region`` (a full-frame bool array)."""
        return int((self.mask[self.window] & region[self.window]).sum())


class Track(BaseModel):
    """Everything a track carries between frames (JSON-serializable, so it survives restarts)."""

    track_id: str
    class_name: str
    first_index: int
    first_time: float
    last_index: int
    last_time: float
    box: tuple[float, float, float, float]
    mask: dict = Field(default_factory=dict, description="last mask, COCO RLE (written when the state is saved)")
    misses: int = 0
    hits: int = 1
    confirmed: bool = False
    best_score: float = 0.0
    class_votes: dict[str, float] = Field(default_factory=dict, description="class -> summed score")
    zones: dict[str, float] = Field(default_factory=dict, description="zone -> time entered")
    pending: dict[str, int] = Field(default_factory=dict, description="zone -> frames in a row past a threshold")
    dwelled: list[str] = Field(default_factory=list, description="zones whose dwell event was emitted")
    anchor: tuple[float, float] | None = Field(None, description="last mask centroid (x, y), pixels")
    line_sides: dict[str, int] = Field(default_factory=dict, description="line -> side of the anchor point")
    last_alert: float | None = None
    object_id: int | None = None


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) x (M, 4) xyxy -> (N, M)."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def mask_iou(a: list[np.ndarray], b: list[np.ndarray]) -> np.ndarray:
    fa = np.stack([m[::_STRIDE, ::_STRIDE].ravel() for m in a]).astype(np.float32)
    fb = np.stack([m[::_STRIDE, ::_STRIDE].ravel() for m in b]).astype(np.float32)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def association_iou(tracks: list[Track], masks: list[np.ndarray], obs: list[Observation]) -> np.ndarray:
    """IoU between each track's last mask and each observation; box IoU where either mask is empty."""
    m = mask_iou(masks, [o.mask for o in obs])
    b = box_iou(np.array([t.box for t in tracks], float), np.array([o.box for o in obs], float))
    empty = np.array([not mk.any() for mk in masks])[:, None] | np.array([o.area == 0 for o in obs])[None, :]
    return np.where(empty, b, m)


def vote(track: Track, obs: Observation) -> None:
    """Add a detection's class to the track's vote; the track's class is the leading one."""
    track.class_votes[obs.class_name] = track.class_votes.get(obs.class_name, 0.0) + obs.score
    track.class_name = max(sorted(track.class_votes), key=lambda c: track.class_votes[c])


def assign(tracks: list[Track], masks: list[np.ndarray], obs: list[Observation],
           min_iou: float) -> list[tuple[int, int]]:  # fmt: skip
    """One-to-one (track index, observation index) pairs with IoU >= ``min_iou``.

    A class change does not break a track (detectors flicker between car, truck and bus); at
    equal overlap the same class wins.
    """
    if not tracks or not obs:
        return []
    iou = association_iou(tracks, masks, obs)
    other = np.array([[t.class_name != o.class_name for o in obs] for t in tracks])
    cost = np.where(iou >= min_iou, 1.0 - iou + 0.1 * other, 10.0)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if cost[r, c] < 10.0]


def assign_by_identity(tracks: list[Track], obs: list[Observation]) -> list[tuple[int, int]]:
    """Ground truth: a track follows its simulator object id."""
    index = {t.object_id: i for i, t in enumerate(tracks)}
    return [(index[o.object_id], j) for j, o in enumerate(obs) if o.object_id in index]


def decode_mask(track: Track) -> np.ndarray:
    return rle.decode(track.mask)
