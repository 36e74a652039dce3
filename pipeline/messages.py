"""Wire schemas shared by the producer side and the consumers (consumers import this, never the reverse).

Every message carries ``schema_version``; a consumer refuses versions it does not know.

Versions: ``FrameDetections`` 2 adds ``stream_epoch`` (version 1 messages are still read, as
epoch 0); ``DeadLetter`` 2 adds ``error_type``; ``Event`` 2 adds ``stream_epoch`` (the stream of
the frames it is about; version 1 events are still read, as epoch 0); ``Event`` 3 adds ``mask``
(the track's mask, inline) and fixes the shape of ``details`` per event type (:data:`DETAILS`).

The JSON Schema files under ``schemas/`` are generated from these models
(``sparseinst-pipeline events schemas``); a test fails when they differ.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SCHEMA_VERSION = 3  # events
FRAME_SCHEMA_VERSION = 2
DEAD_LETTER_SCHEMA_VERSION = 2


def dead_letter_topic(topic: str) -> str:
    """Where records that could not be used for ``topic`` go (ingest and consumers alike)."""
    return f"{topic}.dead-letter"


class RleMask(BaseModel):
    """A COCO run-length-encoded mask (column-major runs, ``counts`` as the compressed string)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: tuple[int, int] = Field(description="(height, width) of the frame")
    counts: str


class Detection(BaseModel):
    """One instance in one frame (no track id: tracking is the consumers' job)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    class_id: int = Field(ge=0, description="contiguous 0-based COCO class index")
    class_name: str
    score: float = Field(ge=0.0, le=1.0)
    box: tuple[float, float, float, float] = Field(description="x1, y1, x2, y2 in frame pixels")
    area: int = Field(ge=0, description="mask pixels")
    mask: RleMask
    query: int = Field(ge=0, description="the model query that produced it")


class FrameDetections(BaseModel):
    """Everything the model found in one frame: the ``detections`` topic's message (key = camera id)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    schema_version: Literal[1, 2] = FRAME_SCHEMA_VERSION
    camera_id: str = Field(min_length=1)
    vehicle_id: str | None = None
    stream_epoch: int = Field(
        0,
        ge=0,
        description="identifies one run of the camera's source (milliseconds since "
        "the epoch when it started); frame_index counts within it. 0: unknown (version 1)",
    )
    frame_index: int = Field(ge=0)
    capture_time: float = Field(description="seconds since the epoch (or stream start) when the frame was taken")
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    model_name: str
    model_version: str
    instances: list[Detection]
    truncated: int = Field(0, ge=0, description="lowest-scoring instances left out to keep the message size bounded")
    decode_errors: int = Field(0, ge=0, description="frames of this camera refused (corrupt) since its last message")
    end_of_stream: bool = Field(False, description="the camera's source ended; no instances, no further frames")

    @classmethod
    def end_marker(cls, camera_id: str, vehicle_id: str | None, stream_epoch: int, frame_index: int,
                   capture_time: float) -> FrameDetections:  # fmt: skip
        """The message that ends a camera's stream (consumers close its open tracks and windows)."""
        return cls(camera_id=camera_id, vehicle_id=vehicle_id, stream_epoch=stream_epoch, frame_index=frame_index,
                   capture_time=capture_time, width=1, height=1, model_name="", model_version="", instances=[],
                   end_of_stream=True)  # fmt: skip


class OutOfBoundsError(ValueError):
    """A schema-valid message past what a consumer can afford (:class:`FrameLimits`); the message names the limit."""


class FrameLimits(BaseModel):
    """What one detections message may hold. Past any of these a consumer dead-letters the message
    (reason ``out of bounds``) and its camera goes on: one message must not cost a consumer more than
    a real frame does, nor move a camera's frame identity where its real frames can no longer follow.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_side: int = Field(4096, ge=16, le=16384, description="frame width and height, pixels")
    max_pixels: int = Field(4096 * 2304, ge=256, description="width x height (zone rasters cost bytes per pixel)")
    max_instances: int = Field(300, ge=1, le=10_000, description="instances per frame (the model has at most "
                               "its query count: 100 for the official models)")  # fmt: skip
    max_mask_chars: int = Field(65_536, ge=64, description="one mask's RLE counts string")
    box_slack_px: float = Field(2.0, ge=0, description="how far a box may reach past the frame's edges")
    clock_skew_s: float = Field(300.0, ge=0, description="how far ahead of this host's clock a stream epoch or "
                                "capture time may be")  # fmt: skip
    max_fps: float = Field(240.0, gt=0, description="frame indices may not run ahead of this rate since the epoch")
    max_unanchored_index: int = Field(10**10, ge=1, description="frame index bound of epoch-0 (version 1) streams")

    def check(self, frame: FrameDetections, now: float | None = None) -> None:
        """Raise :class:`OutOfBoundsError` naming the first limit ``frame`` breaks (``now``: this host's clock)."""
        now = time.time() if now is None else now
        w, h = frame.width, frame.height
        if max(w, h) > self.max_side or w * h > self.max_pixels:
            raise OutOfBoundsError(f"frame {w}x{h} past max_side {self.max_side} / max_pixels {self.max_pixels}")
        if len(frame.instances) > self.max_instances:
            raise OutOfBoundsError(f"{len(frame.instances)} instances past max_instances {self.max_instances}")
        ahead = now + self.clock_skew_s
        if frame.stream_epoch / 1000.0 > ahead:
            raise OutOfBoundsError(f"stream_epoch {frame.stream_epoch} is ahead of this host's clock by more than "
                                   f"clock_skew_s {self.clock_skew_s:g}")  # fmt: skip
        if not 0.0 <= frame.capture_time <= ahead:
            raise OutOfBoundsError(f"capture_time {frame.capture_time!r} outside [0, now + clock_skew_s]")
        if frame.stream_epoch:
            bound = int(self.max_fps * max(0.0, ahead - frame.stream_epoch / 1000.0)) + 1
            what = f"max_fps {self.max_fps:g} x the time since stream_epoch"
        else:
            bound, what = self.max_unanchored_index, "max_unanchored_index"
        if frame.frame_index > bound:
            raise OutOfBoundsError(f"frame_index {frame.frame_index} past {what} ({bound})")
        lo, hi_w, hi_h = -self.box_slack_px, w + self.box_slack_px, h + self.box_slack_px
        for d in frame.instances:
            x1, y1, x2, y2 = d.box
            if not (lo <= x1 <= x2 <= hi_w and lo <= y1 <= y2 <= hi_h):
                raise OutOfBoundsError(f"box {d.box} of query {d.query} is not inside the {w}x{h} frame")
            # a run needs at least one character and there are at most w*h + 1 runs
            if len(d.mask.counts) > min(self.max_mask_chars, 6 * (w * h + 1)):
                raise OutOfBoundsError(f"mask of query {d.query}: {len(d.mask.counts)} RLE characters past "
                                       f"max_mask_chars {self.max_mask_chars} or the frame's area")  # fmt: skip
            if d.area > w * h:
                raise OutOfBoundsError(f"area {d.area} of query {d.query} is larger than the frame")


EventType = Literal[
    "track.started",
    "track.ended",
    "zone.entered",
    "zone.exited",
    "zone.dwell",
    "zone.crowded",
    "line.crossed",
    "proximity.alert",
    "occupancy",
    "camera.health",
    "rollout",
]


class _Details(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrackStarted(_Details):
    """A track was confirmed (``min_hits`` detections); the event's frame is the confirming one."""

    first_index: int = Field(ge=0, description="the frame the track was first seen in")
    score: float = Field(ge=0, le=1, description="its best detection score so far")


class TrackEnded(_Details):
    """A confirmed track was not seen for ``max_misses`` frames, or its stream ended; the event's frame is its last."""

    first_index: int = Field(ge=0)
    duration_s: float = Field(ge=0, description="from its first to its last frame")
    best_score: float = Field(ge=0, le=1)


class ZoneEntered(_Details):
    """A track's mask held at least ``enter_share`` of itself inside the zone for ``zone_frames`` frames."""

    share: float = Field(ge=0, le=1, description="share of the mask inside the zone")
    kind: Literal["generic", "crosswalk", "ego_lane", "intersection"]


class ZoneExited(_Details):
    """A track inside the zone fell below ``exit_share`` for ``zone_frames`` frames, or ended inside it."""

    duration_s: float = Field(ge=0, description="time inside the zone")
    reason: Literal["left", "track_ended"]
    share: float | None = Field(None, ge=0, le=1, description="share inside when it left (absent at track_ended)")


class ZoneDwell(_Details):
    """A track stayed in the zone for ``dwell_s`` seconds (once per visit)."""

    dwell_s: float = Field(ge=0)


class ZoneCrowded(_Details):
    """A zone holds at least ``crowd_tracks`` confirmed tracks (once per crowding episode)."""

    tracks: int = Field(ge=1)
    classes: str = Field(description="the classes present, sorted, comma-separated")


class LineCrossed(_Details):
    """A track's mask centroid crossed the line segment (``direction``: positive or negative side)."""

    count: int = Field(ge=1, description="crossings of this line by this class in this direction so far")


class ProximityAlert(_Details):
    """A person or rider came within ``proximity_px`` of the ego lane or a vehicle (cooldown per track)."""

    target: str = Field(description="'vehicle' or 'ego_lane:<zone>'")
    distance_px: float = Field(ge=0)


class Occupancy(_Details):
    """Per zone and tumbling window of ``occupancy_window_s``: the peak count of confirmed tracks per class.

    Every class seen in the window is a key of its own (``"car": 3``); ``total`` sums them.
    """

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, int] = Field(init=False)

    window_start: float = Field(description="window start, seconds (capture clock)")
    window_s: float = Field(gt=0)
    total: int = Field(ge=0)


class CameraHealth(_Details):
    """The camera's frames: refused ones, a stall, a frame-rate drop below ``fps_drop`` x nominal, a recovery."""

    status: Literal["decode_errors", "stalled", "fps_drop", "fps_recovered"]
    frames: int | None = Field(None, ge=1, description="decode_errors: frames refused since the last message")
    gap_s: float | None = Field(None, ge=0, description="stalled: seconds since the previous frame")
    fps: float | None = Field(None, ge=0, description="fps_drop / fps_recovered: the recent rate")
    nominal_fps: float | None = Field(None, ge=0)


class Rollout(_Details):
    """Where a model rollout stands: started, progress (every ``progress_every`` results), promoted, rolled_back."""

    rollout_id: str
    status: Literal["started", "progress", "promoted", "rolled_back"]
    phase: Literal["running", "promoted", "rolled_back"]
    live_version: int = Field(ge=1)
    candidate_version: int | None = None
    decided_by: Literal["policy", "operator"] | None = None
    reason: str = ""
    frames: int = Field(ge=0, description="shadow results judged")
    agreement: float | None = None
    live_instances: int = 0
    candidate_instances: int = 0
    count_diff_mean: float | None = None
    count_abs_diff_mean: float | None = None
    score_drift_mean: float | None = None
    unmatched_instances: int = 0
    mask_iou_p50: float | None = None
    live_latency_p50_ms: float | None = None
    live_latency_p99_ms: float | None = None
    candidate_latency_p50_ms: float | None = None
    candidate_latency_p99_ms: float | None = None
    live_errors: int = 0
    candidate_errors: int = 0


DETAILS: dict[str, type[BaseModel]] = {
    "track.started": TrackStarted, "track.ended": TrackEnded, "zone.entered": ZoneEntered,
    "zone.exited": ZoneExited, "zone.dwell": ZoneDwell, "zone.crowded": ZoneCrowded, "line.crossed": LineCrossed,
    "proximity.alert": ProximityAlert, "occupancy": Occupancy, "camera.health": CameraHealth, "rollout": Rollout,
}  # fmt: skip
"""The shape of ``Event.details`` for each event type."""


class TrackMask(BaseModel):
    """Where a track event's object is: its mask in the frame ``frame_index`` of the event's stream.

    That frame is the event's own, except for the events of a track that ended (its last frame). The
    detections message of that frame (camera, ``stream_epoch``, ``frame_index``) holds the same mask.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    frame_index: int = Field(ge=0)
    size: tuple[int, int] = Field(description="(height, width) of the frame")
    counts: str = Field(description="COCO RLE, compressed string (pycocotools' format)")
    box: tuple[float, float, float, float] = Field(description="x1, y1, x2, y2 in frame pixels")


class Event(BaseModel):
    """One analytics event on the ``events`` topic (key = camera id).

    ``event_id`` is derived from what the event is about (camera, type, track, frame, zone or
    line), so replaying the same detections yields the same ids and subscribers can de-duplicate.
    ``details`` has the shape :data:`DETAILS` gives for ``type``.
    """

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1, 2, 3] = SCHEMA_VERSION
    event_id: str = Field(min_length=1)
    type: EventType
    camera_id: str
    vehicle_id: str | None = None
    stream_epoch: int = Field(0, ge=0, description="the camera stream (run of its source) the event is about")
    frame_index: int
    frame_time: float
    model_name: str = ""
    model_version: str = ""
    track_id: str | None = None
    class_name: str | None = None
    zone: str | None = None
    line: str | None = None
    direction: str | None = Field(None, description="line.crossed: positive or negative (the side it crossed to)")
    details: dict[str, float | int | str | bool | None] = Field(default_factory=dict)
    mask: TrackMask | None = Field(None, description="the track's mask (events about a track; version 3)")

    @model_validator(mode="after")
    def _details_of_its_type(self) -> Event:
        try:
            DETAILS[self.type].model_validate(self.details)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '-'}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"details of a {self.type} event: {problems}") from None
        return self


class DeadLetter(BaseModel):
    """A message a consumer could not use, with the reason, on the ``<topic>.dead-letter`` topic."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1, 2] = DEAD_LETTER_SCHEMA_VERSION
    topic: str
    partition: int
    offset: int
    key: str | None
    reason: str
    error_type: str | None = Field(None, description="the exception's type, where one was raised")
    value: str = Field(description="the original value, decoded as UTF-8 with replacement, cut to 64 KiB")


class ShadowResult(BaseModel):
    """One frame answered by the live and the candidate version, on the ``rollout.shadow`` topic.

    Written by ingest for shadowed frames (the candidate's answer is never published as
    detections) and for canary frames the candidate failed (``candidate`` None, ``candidate_error``
    set; the frame itself was answered by live and published once). The rollout controller judges
    these.
    """

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    rollout_id: str = Field(min_length=1)
    camera_id: str = Field(min_length=1)
    stream_epoch: int = Field(0, ge=0)
    frame_index: int = Field(ge=0)
    live: FrameDetections | None = None
    candidate: FrameDetections | None = None
    live_latency_ms: float | None = Field(None, ge=0)
    candidate_latency_ms: float | None = Field(None, ge=0)
    live_error: str | None = None
    candidate_error: str | None = None
