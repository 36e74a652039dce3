"""An event's frame with its track's mask drawn, from the frame archive.

Events about a track carry the mask inline (``Event.mask``: the frame it is from, its RLE and box);
the archive keeps the frames ingest published (every ``ingest.archive_every``-th one: an event whose
frame was not kept cannot be drawn, and the error says so).
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.archive import ArchivedFrame, read_archive
from pipeline.errors import PipelineError
from pipeline.kafka.connection import KafkaConnection
from pipeline.messages import Event
from pipeline.overlay import colour_for
from pipeline.rle import decode


class FrameNotArchived(PipelineError):
    """The archive does not hold the frame an event is about."""


def archived_image(frame: ArchivedFrame, frame_index: int) -> np.ndarray:
    """Frame ``frame_index`` of an archived record (a JPEG, or one frame of a video segment) as RGB."""
    if frame.segment is not None:
        from pipeline.ingest.segments import decode_segment

        return decode_segment(frame.segment)[frame_index - frame.frame_index]
    image = cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise FrameNotArchived(f"the archived frame {frame.camera_id} {frame.frame_index} is not a readable JPEG")
    return image[:, :, ::-1]


def find_frame(conn: KafkaConnection | str, archive_topic: str, event: Event) -> tuple[ArchivedFrame, int]:
    """The archive record holding the frame of ``event``'s mask (or the event's frame), and that frame's index."""
    index = event.mask.frame_index if event.mask is not None else event.frame_index
    for frame in read_archive(conn, archive_topic, cameras={event.camera_id}):
        if frame.stream_epoch == event.stream_epoch and frame.frame_index <= index < frame.frame_index + frame.frames:
            return frame, index
    raise FrameNotArchived(f"{archive_topic} holds no frame {index} of {event.camera_id} (stream "
                           f"{event.stream_epoch}): frames are archived every ingest.archive_every-th one, "
                           "and kept for kafka.topics.archive_retention_hours")  # fmt: skip


def draw_event(image: np.ndarray, event: Event) -> np.ndarray:
    """``image`` (RGB) with the event's mask tinted and outlined, and a caption naming the event."""
    out = image.copy()
    colour = colour_for(int.from_bytes((event.track_id or event.event_id).encode()[-4:], "little"))
    if event.mask is not None:
        mask = decode({"size": list(event.mask.size), "counts": event.mask.counts}).astype(bool)
        if mask.shape != out.shape[:2]:
            raise FrameNotArchived(f"the event's mask is {mask.shape[1]}x{mask.shape[0]}, the archived frame "
                                   f"{out.shape[1]}x{out.shape[0]}")  # fmt: skip
        out[mask] = (out[mask] * 0.5 + np.asarray(colour) * 0.5).astype(np.uint8)
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, colour, 2)
        x1, y1, x2, y2 = (round(v) for v in event.mask.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 1)
    what = " ".join(str(v) for v in (event.type, event.track_id, event.class_name, event.zone or event.line) if v)
    cv2.putText(out, what, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def render_event(conn: KafkaConnection | str, archive_topic: str, event: Event) -> np.ndarray:
    """The event's frame from the archive with its mask drawn (RGB)."""
    frame, index = find_frame(conn, archive_topic, event)
    return draw_event(archived_image(frame, index), event)
