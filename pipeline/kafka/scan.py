"""Read a whole topic once: every partition from its start (or a time) up to the end it had when the read began."""

from __future__ import annotations

import time
from collections.abc import Iterator

from pipeline.errors import KafkaUnavailableError, TopicsError
from pipeline.kafka.connection import KafkaConnection


def scan(conn: KafkaConnection | str, topic: str, *, since_ms: int | None = None, committed: bool = False,
         stall_s: float = 90.0, client_id: str = "sparseinst-scan") -> Iterator:  # fmt: skip
    """Records of ``topic`` (each partition in order) with timestamp >= ``since_ms`` (all when unset).

    Records written after the scan began are left out. ``committed`` reads ``read_committed``: an
    open transaction holds the scan back until it ends (the broker aborts a dead producer's after
    its transaction timeout), hence ``stall_s``: no progress for that long is an error.
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**KafkaConnection.of(conn).client_args(), group_id=None, enable_auto_commit=False,
                             isolation_level="read_committed" if committed else "read_uncommitted",
                             client_id=client_id, fetch_max_bytes=64 * 1024 * 1024)  # fmt: skip
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        if not parts:
            raise TopicsError(f"no topic {topic!r} on {KafkaConnection.of(conn).bootstrap}")
        consumer.assign(parts)
        end = consumer.end_offsets(parts)
        consumer.seek_to_beginning(*parts)
        if since_ms is not None:
            for tp, found in consumer.offsets_for_times({tp: since_ms for tp in parts}).items():
                consumer.seek(tp, found.offset if found is not None else end[tp])
        progress = time.monotonic()
        while any(consumer.position(tp) < end[tp] for tp in parts):
            batch = consumer.poll(timeout_ms=500)
            if batch:
                progress = time.monotonic()
            elif time.monotonic() - progress > stall_s:
                raise KafkaUnavailableError(f"{topic}: no progress for {stall_s:.0f} s before its end")
            for tp, records in batch.items():
                yield from (r for r in records if r.offset < end[tp])
    finally:
        consumer.close()
