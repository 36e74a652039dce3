"""Publish one message per frame to the ``detections`` topic (key = camera id).

The producer is idempotent (``acks=all``, retries without duplicates) and compresses with gzip.
A message must stay well under the broker's limit: if a frame's detections would not fit in
``max_message_bytes``, its lowest-scoring instances are left out until it fits, the message
says how many (``truncated``), and the publisher counts it. Masks are RLE, so this takes
hundreds of large instances; a normal frame is a few kilobytes.
"""

from __future__ import annotations

import logging
from collections import Counter

from pipeline import messages
from pipeline.messages import DeadLetter, FrameDetections

log = logging.getLogger(__name__)

BROKER_LIMIT = 1_048_576  # Kafka's default message.max.bytes
DEFAULT_MAX_MESSAGE = 900_000


def fit_message(frame: FrameDetections, max_bytes: int) -> tuple[bytes, int]:
    """The JSON value, with the lowest-scoring instances dropped until it fits; and how many were dropped."""
    value = frame.model_dump_json().encode()
    if len(value) <= max_bytes:
        return value, 0
    keep = sorted(frame.instances, key=lambda d: d.score, reverse=True)
    lo, hi = 0, len(keep)  # largest prefix (by score) that fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        trial = frame.model_copy(update={"instances": keep[:mid], "truncated": len(keep) - mid})
        if len(trial.model_dump_json().encode()) <= max_bytes:
            lo = mid
        else:
            hi = mid - 1
    kept = sorted(keep[:lo], key=lambda d: d.query)  # back to query order
    fitted = frame.model_copy(update={"instances": kept, "truncated": len(keep) - lo})
    return fitted.model_dump_json().encode(), len(keep) - lo


class DetectionPublisher:
    def __init__(self, bootstrap: str, topic: str = "detections", *, max_message_bytes: int = DEFAULT_MAX_MESSAGE,
                 dead_letter_topic: str | None = None) -> None:  # fmt: skip
        from kafka import KafkaProducer

        if max_message_bytes >= BROKER_LIMIT:
            raise ValueError(f"max_message_bytes must stay under the broker limit ({BROKER_LIMIT})")
        self.topic, self.max_message_bytes = topic, max_message_bytes
        self.dead_letter_topic = dead_letter_topic or messages.dead_letter_topic(topic)
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all",
                                      compression_type="gzip", linger_ms=5, max_request_size=BROKER_LIMIT)  # fmt: skip
        self.counts: Counter[str] = Counter()

    def publish(self, frame: FrameDetections) -> None:
        value, dropped = fit_message(frame, self.max_message_bytes)
        if dropped:
            self.counts["truncated_frames"] += 1
            self.counts["truncated_instances"] += dropped
            log.warning("camera %s frame %d: %d instances left out to fit %d bytes", frame.camera_id,
                        frame.frame_index, dropped, self.max_message_bytes)  # fmt: skip
        self.producer.send(self.topic, key=frame.camera_id.encode(), value=value)
        self.counts["published"] += 1

    def dead_letter(self, record: DeadLetter) -> None:
        self.producer.send(self.dead_letter_topic, key=(record.key or "").encode(),
                           value=record.model_dump_json().encode())  # fmt: skip
        self.counts["dead_letters"] += 1

    def flush(self, timeout_s: float = 30.0) -> None:
        self.producer.flush(timeout=timeout_s)

    def close(self) -> None:
        self.producer.flush()
        self.producer.close()
