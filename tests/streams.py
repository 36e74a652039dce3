"""Helpers for the tests that stream through real Kafka: read topics back, compute the uninterrupted run's events."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections import Counter

from consumers.camera import CameraStep
from consumers.processor import EventProcessor
from consumers.rules import RulesFile
from pipeline.kafka.connection import KafkaConnection
from pipeline.kafka.topics import Topics, TopicSpec, ensure_topics
from pipeline.messages import Event, FrameDetections


def read_topic(conn: KafkaConnection | str, topic: str, model=Event, timeout_ms: int = 5000,
               committed: bool = True) -> list:  # fmt: skip
    """Every record of ``topic`` (``read_committed`` unless told), parsed with ``model`` (None: raw values)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, **KafkaConnection.of(conn).client_args(), auto_offset_reset="earliest",
                             isolation_level="read_committed" if committed else "read_uncommitted",
                             consumer_timeout_ms=timeout_ms, group_id=f"reader-{uuid.uuid4().hex}")  # fmt: skip
    try:
        return [m.value if model is None else model.model_validate_json(m.value) for m in consumer]
    finally:
        consumer.close()


def new_topics(conn: KafkaConnection | str, spec: TopicSpec | None = None) -> Topics:
    tag = uuid.uuid4().hex[:8]
    topics = Topics(detections=f"detections-{tag}", events=f"events-{tag}")
    ensure_topics(conn, topics, spec or TopicSpec(partitions=4))
    return topics


def reference_events(frames: list[FrameDetections], rules: RulesFile) -> list[Event]:
    """The events of one uninterrupted, single-process run over ``frames`` (each camera's in topic order).

    A frame the consumer would dead-letter (it raises) leaves its camera's state as it was, as in the
    consumer, where the poll is redone without it.
    """
    procs: dict[str, CameraStep] = {}
    out: list[Event] = []
    for f in frames:
        proc = procs.setdefault(f.camera_id, CameraStep(f.camera_id, rules))
        saved = proc.snapshot().model_copy(deep=True)
        try:
            events, _ = proc.consume(f)
        except ValueError:
            procs[f.camera_id] = CameraStep(f.camera_id, rules, saved)
            continue
        out += events
    return out


def wait_for(check, timeout_s: float, what: str, every_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(every_s)


def group_caught_up(conn: KafkaConnection, group: str, topic: str) -> bool:
    """Has ``group`` committed offsets at the end of every partition of ``topic``?"""
    from kafka import KafkaConsumer, TopicPartition

    # a consumer of the group that never subscribes: it reads the group's committed offsets, joins nothing
    consumer = KafkaConsumer(**conn.client_args(), group_id=group, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        end = consumer.end_offsets(parts)
        return all(end[tp] == 0 or (consumer.committed(tp) or 0) >= end[tp] for tp in parts)
    finally:
        consumer.close(autocommit=False)


@contextlib.contextmanager
def running_consumer(conn: KafkaConnection, topics: Topics, rules: RulesFile, **kwargs):
    """One event processor running in a thread until the block ends (it then drains what is published)."""
    group = kwargs.pop("group_id", f"g-{uuid.uuid4().hex}")
    proc = EventProcessor(conn, rules, topics=topics, group_id=group, member_id=kwargs.pop("member_id", "t1"),
                          **kwargs)  # fmt: skip
    errors: list[BaseException] = []

    def work() -> None:
        try:
            proc.run()
        except BaseException as exc:  # surfaced by the test
            errors.append(exc)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    try:
        yield proc
    finally:
        proc.stop()
        worker.join(timeout=60)
        proc.close()
    if errors:
        raise errors[0]


def check_events(conn: KafkaConnection, topics: Topics, frames: list[FrameDetections], rules: RulesFile) -> dict:
    """Events on the topic against the uninterrupted run: expected, found, duplicated, lost, extra."""
    expected = {e.event_id for e in reference_events(frames, rules)}
    ids = [e.event_id for e in read_topic(conn, topics.events)]
    found = set(ids)
    return {"events expected": len(expected), "found": len(found & expected),
            "duplicated": sum(n - 1 for n in Counter(ids).values() if n > 1),
            "lost": len(expected - found), "extra": len(found - expected)}  # fmt: skip


def member_in_transaction(admin, transactional_ids: list[str], topic: str, partitions: int) -> str | None:
    """One of the ids whose open transaction has written records to ``topic`` that are not committed yet.

    The transaction coordinator knows which ids are ``Ongoing``; the partition leaders know which
    producers hold an open transaction with records in the log (a transaction start offset).
    """
    from kafka import TopicPartition

    try:
        states = admin.describe_transactions(transactional_ids)
        ongoing = {state.producer_id: tid for tid, state in states.items()
                   if str(state.state).lower().endswith("ongoing")}  # fmt: skip
        if not ongoing:
            return None
        logs = admin.describe_producers([TopicPartition(topic, p) for p in range(partitions)])
    except Exception:
        return None
    for state in logs.values():
        for producer in state.active_producers:
            if producer.producer_id in ongoing and producer.current_transaction_start_offset >= 0:
                return ongoing[producer.producer_id]
    return None


def dropped_text(dropped: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(dropped.items()) if v) or "none"
