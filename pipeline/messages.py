"""Wire schemas shared by the producer side and the consumers (consumers import this, never the reverse).

Every message carries ``schema_version``; a consumer refuses versions it does not know.

Versions: ``FrameDetections`` 2 adds ``stream_epoch`` (version 1 messages are still read, as
epoch 0); ``DeadLetter`` 2 adds ``error_type``; ``Event`` 2 adds ``stream_epoch`` (the stream of
the frames it is about; version 1 events are still read, as epoch 0).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 2  # events
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

    model_config = ConfigDict(extra="forbid")

    class_id: int = Field(ge=0, description="contiguous 0-based COCO class index")
    class_name: str
    score: float = Field(ge=0.0, le=1.0)
    box: tuple[float, float, float, float] = Field(description="x1, y1, x2, y2 in frame pixels")
    area: int = Field(ge=0, description="mask pixels")
    mask: RleMask
    query: int = Field(ge=0, description="the model query that produced it")


class FrameDetections(BaseModel):
    """Everything the model found in one frame: the ``detections`` topic's message (key = camera id)."""

    model_config = ConfigDict(extra="forbid")

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


EventType = Literal[
    "track.started",
    "track.ended",
    "zone.entered",
    "zone.exited",
    "zone.dwell",
    "line.crossed",
    "proximity.alert",
    "occupancy",
    "camera.health",
    "rollout",
]


class Event(BaseModel):
    """One analytics event on the ``events`` topic (key = camera id).

    ``event_id`` is derived from what the event is about (camera, type, track, frame, zone or
    line), so replaying the same detections yields the same ids and subscribers can de-duplicate.
    """

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1, 2] = SCHEMA_VERSION
    event_id: str
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
    direction: str | None = None
    details: dict[str, float | int | str | bool | None] = Field(default_factory=dict)


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
