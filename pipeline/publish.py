"""Publish one message per frame to the ``detections`` topic (key = camera id).

The producer is idempotent (``acks=all``, retries without duplicates) and compresses with gzip.
A frame counts as published when the broker acknowledged it; a send that fails (after the
producer's own retries, within ``delivery_timeout_s``) is counted by reason and logged.
A message must stay well under the broker's limit: if a frame's detections would not fit in
``max_message_bytes``, its lowest-scoring instances are left out until it fits, the message
says how many (``truncated``), and the publisher counts it. Masks are RLE, so this takes
hundreds of large instances; a normal frame is a few kilobytes.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable

from pipeline import messages
from pipeline.kafka.connection import KafkaConnection
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


AckCallback = Callable[[BaseException | None], None]


class DetectionPublisher:
    """Idempotent, acknowledged publishing: a frame counts as published once the broker acknowledged it.

    ``counts`` (thread-safe to read) has ``messages_published`` (frames and end-of-stream markers),
    ``publish_failed`` and
    ``publish_failed:<reason>``, ``not_published:<kind>`` (``messages_published``, ``frames_archived``,
    ``shadow``, ``dead_letters``), ``truncated_frames`` and ``dead_letters``; ``on_ack`` callbacks
    run in the producer's I/O thread with ``None`` or the error.
    """

    def __init__(self, conn: KafkaConnection | str, topic: str = "detections", *,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE, dead_letter_topic: str | None = None,
                 delivery_timeout_s: float = 120.0) -> None:  # fmt: skip
        from kafka import KafkaProducer

        if max_message_bytes >= BROKER_LIMIT:
            raise ValueError(f"max_message_bytes must stay under the broker limit ({BROKER_LIMIT})")
        self.topic, self.max_message_bytes = topic, max_message_bytes
        self.dead_letter_topic = dead_letter_topic or messages.dead_letter_topic(topic)
        self.producer = KafkaProducer(**KafkaConnection.of(conn).client_args(), enable_idempotence=True, acks="all",
                                      compression_type="gzip", linger_ms=5, max_request_size=BROKER_LIMIT,
                                      delivery_timeout_ms=int(delivery_timeout_s * 1000))  # fmt: skip
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._outstanding = 0

    def publish(self, frame: FrameDetections, on_ack: AckCallback | None = None) -> None:
        value, dropped = fit_message(frame, self.max_message_bytes)
        if dropped:
            self._count("truncated_frames")
            self._count("truncated_instances", dropped)
            log.warning("camera %s frame %d: %d instances left out to fit %d bytes", frame.camera_id,
                        frame.frame_index, dropped, self.max_message_bytes)  # fmt: skip
        what = f"camera {frame.camera_id} frame {frame.stream_epoch}/{frame.frame_index}"
        self._send(self.topic, frame.camera_id, value, "messages_published", what, on_ack)

    def dead_letter(self, record: DeadLetter) -> None:
        self._send(self.dead_letter_topic, record.key or "", record.model_dump_json().encode(), "dead_letters",
                   f"dead letter for {record.key}", None)  # fmt: skip

    def send(self, topic: str, key: str, value: bytes, counter: str, *,
             headers: list[tuple[str, bytes]] | None = None) -> None:  # fmt: skip
        """Another record on the same idempotent producer (shadow results, archived frames), counted as ``counter``."""
        self._send(topic, key, value, counter, f"{counter} record for {key}", None, headers)

    def _send(self, topic: str, key: str, value: bytes, counter: str, what: str, on_ack: AckCallback | None,
              headers: list[tuple[str, bytes]] | None = None) -> None:  # fmt: skip
        def done(error: BaseException | None) -> None:
            with self._lock:
                self._outstanding -= 1
                if error is None:
                    self.counts[counter] += 1
                else:  # by error and by what it was: a lost archive record makes replays diverge, say which
                    self.counts["publish_failed"] += 1
                    self.counts[f"publish_failed:{type(error).__name__}"] += 1
                    self.counts[f"not_published:{counter}"] += 1
            if error is not None:
                log.error("%s not published: %s: %s", what, type(error).__name__, error)
            if on_ack is not None:
                on_ack(error)

        with self._lock:
            self._outstanding += 1
        try:
            future = self.producer.send(topic, key=key.encode(), value=value, headers=headers)
        except Exception as exc:  # refused before it left (buffer full for too long, closed producer, size)
            done(exc)
            return
        future.add_callback(lambda _meta: done(None))
        future.add_errback(done)

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counts[name] += n

    @property
    def outstanding(self) -> int:
        """Messages sent and neither acknowledged nor failed yet."""
        with self._lock:
            return self._outstanding

    def flush(self, timeout_s: float = 60.0) -> None:
        """Wait until every message sent so far is acknowledged or failed (failures are counted, not raised)."""
        from kafka.errors import KafkaTimeoutError

        try:
            self.producer.flush(timeout=timeout_s)
        except KafkaTimeoutError:
            log.error("%d messages still unacknowledged after %.0f s", self.outstanding, timeout_s)

    def close(self, timeout_s: float = 60.0) -> None:
        """Flush, then close; what is still unacknowledged then is counted as ``publish_failed:unacknowledged``."""
        self.flush(timeout_s)
        left = self.outstanding
        if left:
            self._count("publish_failed", left)
            self._count("publish_failed:unacknowledged", left)
        self.producer.close(timeout=5)
