"""The frame archive: JPEG frames and video segments ingest published, with their identity, on a topic.

One record per archived frame (key = camera id, value = the JPEG, identity in headers), one per
archived video segment (value = the encoded segment, its container, codec, lead-in and frame times
in headers; the frame index is its first frame's) and one per ended stream (empty value,
``end_of_stream``). Kafka's retention (``kafka.topics.
archive_retention_hours``) bounds it; record timestamps are ingest's wall clock, so a replay
picks a time range with ``offsets_for_times``. Replays reproduce the live events only from
frames archived without sampling (``ingest.archive_every: 1``): the tracker needs every frame.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.ingest.segments import Segment
from pipeline.kafka.connection import KafkaConnection
from pipeline.kafka.scan import scan
from pipeline.publish import DetectionPublisher

if TYPE_CHECKING:
    from pipeline.ingest.sources import CapturedSegment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArchivedFrame:
    camera_id: str
    vehicle_id: str | None
    stream_epoch: int
    frame_index: int
    capture_time: float
    jpeg: bytes  # empty for an end-of-stream record
    end_of_stream: bool = False
    decode_errors: int = 0  # frames of the camera refused just before this one (as its detections said)
    timestamp_ms: int = 0  # when ingest archived it
    segment: Segment | None = None  # a video segment (then ``jpeg`` is empty and frame_index its first frame)

    @property
    def frames(self) -> int:
        return self.segment.frames if self.segment is not None else (0 if self.end_of_stream else 1)


def headers_of(camera_id: str, vehicle_id: str | None, stream_epoch: int, frame_index: int, capture_time: float,
               end_of_stream: bool = False, decode_errors: int = 0) -> list[tuple[str, bytes]]:  # fmt: skip
    fields = {"camera_id": camera_id, "vehicle_id": vehicle_id or "", "stream_epoch": stream_epoch,
              "frame_index": frame_index, "capture_time": repr(float(capture_time)),
              "end_of_stream": "1" if end_of_stream else "0", "decode_errors": decode_errors}  # fmt: skip
    return [(k, str(v).encode()) for k, v in fields.items()]


class FrameArchive:
    """Ingest's side of the archive: every ``every``-th published frame (0: none) and each camera's end."""

    def __init__(self, publisher: DetectionPublisher, topic: str, every: int) -> None:
        self.publisher, self.topic, self.every = publisher, topic, every

    def published(self, jpeg: bytes, camera_id: str, vehicle_id: str | None, stream_epoch: int, frame_index: int,
                  capture_time: float, decode_errors: int) -> None:  # fmt: skip
        if self.every and frame_index % self.every == 0:
            headers = headers_of(camera_id, vehicle_id, stream_epoch, frame_index, capture_time,
                                 decode_errors=decode_errors)  # fmt: skip
            self.publisher.send(self.topic, camera_id, jpeg, "frames_archived", headers=headers)

    def segment(self, captured: CapturedSegment, decode_errors: int) -> None:
        """A video segment whose frames were published; kept when it holds an ``every``-th frame."""
        s = captured.segment
        if not self.every or (s.first_index + s.frames - 1) // self.every == (s.first_index - 1) // self.every:
            return
        headers = headers_of(captured.camera_id, captured.vehicle_id, captured.stream_epoch, s.first_index,
                             captured.capture_time, decode_errors=decode_errors)  # fmt: skip
        layout = {"container": s.container, "codec": s.codec, "skip": s.skip, "width": s.width, "height": s.height,
                  "times": [captured.time_offset + t for t in s.times]}  # fmt: skip
        headers.append(("segment", json.dumps(layout).encode()))
        self.publisher.send(self.topic, captured.camera_id, s.data, "frames_archived", headers=headers)

    def ended(self, camera_id: str, vehicle_id: str | None, stream_epoch: int, frame_index: int,
              capture_time: float) -> None:  # fmt: skip
        if self.every:
            headers = headers_of(camera_id, vehicle_id, stream_epoch, frame_index, capture_time, end_of_stream=True)
            self.publisher.send(self.topic, camera_id, b"", "frames_archived", headers=headers)


def _frame(record) -> ArchivedFrame:
    h = {k: v.decode() for k, v in (record.headers or [])}
    segment = None
    if "segment" in h:
        layout = json.loads(h["segment"])
        segment = Segment(data=record.value or b"", container=layout["container"], codec=layout["codec"],
                          first_index=int(h["frame_index"]), times=tuple(float(t) for t in layout["times"]),
                          skip=int(layout["skip"]), width=int(layout["width"]),
                          height=int(layout["height"]))  # fmt: skip
    return ArchivedFrame(camera_id=h["camera_id"], vehicle_id=h.get("vehicle_id") or None,
                         stream_epoch=int(h["stream_epoch"]), frame_index=int(h["frame_index"]),
                         capture_time=float(h["capture_time"]), jpeg=b"" if segment else record.value or b"",
                         end_of_stream=h.get("end_of_stream") == "1", decode_errors=int(h.get("decode_errors", 0)),
                         timestamp_ms=record.timestamp, segment=segment)  # fmt: skip


def read_archive(conn: KafkaConnection | str, topic: str, *, since_ms: int | None = None, until_ms: int | None = None,
                 cameras: set[str] | None = None) -> Iterator[ArchivedFrame]:  # fmt: skip
    """Archived frames with ``since_ms <= timestamp < until_ms`` (all when unset), each camera in order.

    Reads up to the end the archive had when the call began. A record that is not an archived
    frame (headers missing or malformed: written by something else) is skipped with a warning.
    """
    for record in scan(conn, topic, since_ms=since_ms, client_id="sparseinst-replay"):
        if until_ms is not None and record.timestamp >= until_ms:
            continue
        try:
            frame = _frame(record)
        except (KeyError, ValueError, TypeError, UnicodeDecodeError) as exc:
            log.warning("%s partition %d offset %d is not an archived frame (%s: %s); skipped", topic,
                        record.partition, record.offset, type(exc).__name__, exc)  # fmt: skip
            continue
        if cameras is None or frame.camera_id in cameras:
            yield frame
