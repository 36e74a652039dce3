"""Per-camera multi-object tracking on mask IoU (box IoU where a mask is empty), on compressed masks.

Detections are assigned one-to-one to tracks with the Hungarian method on ``1 - IoU``; pairs
below ``track_iou`` stay unassigned. A track survives ``max_misses`` frames without a detection,
so a short occlusion or a missed frame does not end it. Masks stay run-length encoded
(:class:`~pipeline.runmasks.RunMasks`): IoU is computed on the runs, for all pairs whose boxes
touch, in one compiled call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, Field
from scipy.optimize import linear_sum_assignment

from pipeline.runmasks import RunMasks, box_iou


@dataclass
class Observation:
    """One detection of one frame. ``mask`` is one compressed mask; an (H, W) bool array is compressed."""

    class_name: str
    score: float
    box: tuple[float, float, float, float]
    mask: RunMasks | np.ndarray
    object_id: int | None = None  # ground truth only: the simulator's id
    index: int = 0  # which mask of ``mask`` (the masks of a whole frame, parsed together)

    def __post_init__(self) -> None:
        if isinstance(self.mask, np.ndarray):
            self.mask, self.index = RunMasks.from_arrays([self.mask]), 0

    @property
    def runs(self) -> RunMasks:
        """This observation's mask alone."""
        assert isinstance(self.mask, RunMasks)
        return self.mask if len(self.mask) == 1 else self.mask.take(self.index)

    def array(self) -> np.ndarray:
        """The full-frame mask (drawing only)."""
        assert isinstance(self.mask, RunMasks)
        return self.mask.to_array(self.index)


class FrameObservations:
    """The observations of one frame with their masks side by side, and what is computed on all at once."""

    def __init__(self, items: Sequence[Observation], masks: RunMasks | None = None) -> None:
        self.items = list(items)
        self.masks = masks if masks is not None else RunMasks.concat([o.runs for o in self.items])
        self.areas = self.masks.areas()
        self.mask_boxes = self.masks.boxes()  # tight boxes of the pixels (message boxes are not trusted)
        self.area_list: list[int] = self.areas.tolist()  # plain ints for the per-track loops of the rules

    def __len__(self) -> int:
        return len(self.items)


class Track(BaseModel):
    """What the tracker keeps of a track between frames (JSON-serializable, so it survives restarts); what the
    rules keep about it is in their own state."""

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
    object_id: int | None = None


def association_iou(tracks: list[Track], last: RunMasks, obs: FrameObservations, min_iou: float = 0.0) -> np.ndarray:
    """IoU between each track's last mask (``last``, in track order) and each observation; box IoU where
    either mask is empty. Mask pairs that cannot reach ``min_iou`` are 0."""
    iou = last.iou(obs.masks, min_iou)
    empty = (last.areas() == 0)[:, None] | (obs.areas == 0)[None, :]
    if empty.any():
        b = box_iou(np.array([t.box for t in tracks], float), np.array([o.box for o in obs.items], float))
        iou = np.where(empty, b, iou)
    return iou


def vote(track: Track, obs: Observation) -> None:
    """Add a detection's class to the track's vote; the track's class is the leading one."""
    track.class_votes[obs.class_name] = track.class_votes.get(obs.class_name, 0.0) + obs.score
    if obs.class_name == track.class_name:  # the leader only gained
        return
    track.class_name = max(sorted(track.class_votes), key=lambda c: track.class_votes[c])


def assign(tracks: list[Track], last: RunMasks, obs: FrameObservations, min_iou: float) -> list[tuple[int, int]]:
    """One-to-one (track index, observation index) pairs with IoU >= ``min_iou``.

    A class change does not break a track (detectors flicker between car, truck and bus); at
    equal overlap the same class wins.
    """
    if not tracks or not len(obs):
        return []
    iou = association_iou(tracks, last, obs, min_iou)
    close = iou >= min_iou
    if close.sum(axis=0).max() <= 1 and close.sum(axis=1).max() <= 1:
        # the usual case: each track overlaps at most one detection enough and the other way round; every
        # optimal assignment takes all of these pairs, and only these are kept
        return [(int(r), int(c)) for r, c in zip(*np.nonzero(close))]
    cost = np.where(close, 1.0 - iou, 10.0)
    classes: dict[str, int] = {}
    track_class = np.array([classes.setdefault(t.class_name, len(classes)) for t in tracks])
    obs_class = np.array([classes.setdefault(o.class_name, len(classes)) for o in obs.items])
    cost += np.where(close & (track_class[:, None] != obs_class[None, :]), 0.1, 0.0)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if cost[r, c] < 10.0]


def assign_by_identity(tracks: list[Track], obs: list[Observation]) -> list[tuple[int, int]]:
    """Ground truth: a track follows its simulator object id."""
    index = {t.object_id: i for i, t in enumerate(tracks)}
    return [(index[o.object_id], j) for j, o in enumerate(obs) if o.object_id in index]


def decode_mask(track: Track) -> RunMasks:
    """A track's saved mask (an empty one where none was saved)."""
    if not track.mask:
        raise ValueError(f"track {track.track_id} was saved without its mask")
    h, w = (int(v) for v in track.mask["size"])
    return RunMasks.from_counts([track.mask["counts"]], h, w)
