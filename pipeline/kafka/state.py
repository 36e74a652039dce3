"""A key -> latest value store on a compacted topic, read per partition, completely or not at all.

Values are zlib-compressed (``Z1`` + deflate) before they are produced and must fit in
:data:`STATE_RECORD_MAX_BYTES`, the size the state topic is created to accept; plain JSON values
of earlier versions are still read.
"""

from __future__ import annotations

import time
import zlib

from pipeline.errors import StateLoadError
from pipeline.kafka.connection import KafkaConnection

STATE_RECORD_MAX_BYTES = 512 * 1024  # one compressed state record; the topic accepts this plus headroom
_COMPRESSED = b"Z1"


def encode_value(raw: bytes) -> bytes:
    return _COMPRESSED + zlib.compress(raw, 6)


def decode_value(value: bytes) -> bytes:
    return zlib.decompress(value[len(_COMPRESSED) :]) if value.startswith(_COMPRESSED) else value


def load_partitions(conn: KafkaConnection | str, topic: str, partitions: list[int], *,
                    timeout_s: float = 60.0) -> dict[str, bytes]:  # fmt: skip
    """The latest committed value of every key in ``partitions`` of ``topic`` (tombstones remove keys).

    Reads ``read_committed`` up to the end of each partition. An open transaction of a member that
    died holds that end back until the broker aborts it (``transaction.timeout.ms``), so
    ``timeout_s`` should exceed that; a load that does not complete raises :class:`StateLoadError`
    instead of returning a partial state (a partial state would restart track ids).
    """
    from kafka import KafkaConsumer, TopicPartition

    if not partitions:
        return {}
    conn = KafkaConnection.of(conn)
    consumer = KafkaConsumer(**conn.client_args(), isolation_level="read_committed", enable_auto_commit=False,
                             group_id=None, client_id="sparseinst-state-loader")  # fmt: skip
    values: dict[str, bytes] = {}
    try:
        parts = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        deadline = time.monotonic() + timeout_s
        end = consumer.end_offsets(parts)
        while True:
            behind = [p for p in parts if consumer.position(p) < end[p]]
            if not behind:
                return values
            if time.monotonic() > deadline:
                detail = ", ".join(f"{p.partition}: at {consumer.position(p)} of {end[p]}" for p in behind)
                raise StateLoadError(f"state of {topic} not loaded within {timeout_s:.0f} s ({detail}); "
                                     "not starting with a partial state")  # fmt: skip
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    key = r.key.decode() if r.key else ""
                    if r.value is None:
                        values.pop(key, None)
                    else:
                        values[key] = r.value
            # the end may hold an open transaction (read_committed stops before it): refresh it
            end = consumer.end_offsets(parts)
    finally:
        consumer.close()
