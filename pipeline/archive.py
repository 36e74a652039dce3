"""The frame archive: JPEG frames ingest published, with their identity, on a topic with retention.

One record per archived frame (key = camera id, value = the JPEG, identity in headers) and one
per ended stream (empty value, ``end_of_stream``). Kafka's retention (``kafka.topics.
archive_retention_hours``) bounds it; record timestamps are ingest's wall clock, so a replay
picks a time range with ``offsets_for_times``. Replays reproduce the live events only from
frames archived without sampling (``ingest.archive_every: 1``): the tracker needs every frame.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from pipeline.kafka.connection import KafkaConnection
from pipeline.kafka.scan import scan
from pipeline.publish import DetectionPublisher


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

    def ended(self, camera_id: str, vehicle_id: str | None, stream_epoch: int, frame_index: int,
              capture_time: float) -> None:  # fmt: skip
        if self.every:
            headers = headers_of(camera_id, vehicle_id, stream_epoch, frame_index, capture_time, end_of_stream=True)
            self.publisher.send(self.topic, camera_id, b"", "frames_archived", headers=headers)


def _frame(record) -> ArchivedFrame:
    h = {k: v.decode() for k, v in (record.headers or [])}
    return ArchivedFrame(camera_id=h["camera_id"], vehicle_id=h.get("vehicle_id") or None,
                         stream_epoch=int(h["stream_epoch"]), frame_index=int(h["frame_index"]),
                         capture_time=float(h["capture_time"]), jpeg=record.value or b"",
                         end_of_stream=h.get("end_of_stream") == "1", decode_errors=int(h.get("decode_errors", 0)),
                         timestamp_ms=record.timestamp)  # fmt: skip


def read_archive(conn: KafkaConnection | str, topic: str, *, since_ms: int | None = None, until_ms: int | None = None,
                 cameras: set[str] | None = None) -> Iterator[ArchivedFrame]:  # fmt: skip
    """Archived frames with ``since_ms <= timestamp < until_ms`` (all when unset), each camera in order.

    Reads up to the end the archive had when the call began.
    """
    for record in scan(conn, topic, since_ms=since_ms, client_id="sparseinst-replay"):
        if until_ms is not None and record.timestamp >= until_ms:
            continue
        frame = _frame(record)
        if cameras is None or frame.camera_id in cameras:
            yield frame
