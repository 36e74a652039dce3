"""The event processor: a member of a Kafka consumer group, exactly once.

For every poll it turns detections into events with one :class:`CameraProcessor` per camera,
then, in one Kafka transaction, produces the events, the dead letters, a snapshot of every
touched camera's state (to a compacted state topic) and the consumed offsets. Either all of
it becomes visible to ``read_committed`` readers or none of it does, so a crash or a restart
neither loses nor duplicates an event: the next owner of the partition reloads the states and
re-reads from the committed offsets, and since events are derived deterministically, any
replay yields the same event ids.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from kafka import ConsumerRebalanceListener
from pydantic import ValidationError

from consumers.engine import CameraProcessor, CameraState, FrameMeta
from consumers.rules import RulesFile
from pipeline.messages import DeadLetter, Event, FrameDetections, dead_letter_topic

log = logging.getLogger(__name__)

MAX_DEAD_LETTER_VALUE = 64 * 1024


@dataclass
class ConsumerTopics:
    detections: str = "detections"
    events: str = "events"

    @property
    def state(self) -> str:
        return f"{self.events}.consumer-state"

    @property
    def dead_letter(self) -> str:
        return dead_letter_topic(self.detections)


@dataclass
class ConsumerStats:
    messages: int = 0
    events: Counter[str] = field(default_factory=Counter)
    dead_letters: int = 0
    replayed: int = 0  # frames at or before a camera's last processed frame (already done)
    transactions: int = 0
    busy_s: float = 0.0


def ensure_topics(bootstrap: str, topics: ConsumerTopics, partitions: int = 4) -> None:
    """Create the topics if missing (the state topic compacted)."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="sparseinst-admin")
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(topics.detections, partitions, 1),
            NewTopic(topics.events, partitions, 1),
            NewTopic(topics.dead_letter, 1, 1),
            NewTopic(topics.state, partitions, 1, topic_configs={"cleanup.policy": "compact"}),
        ]
        new = [t for t in wanted if t.name not in existing]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):  # another member was first
                admin.create_topics(new)
    finally:
        admin.close()


def load_states(bootstrap: str, topic: str, timeout_s: float = 10.0) -> dict[str, CameraState]:
    """The latest committed state of every camera from the compacted state topic."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                             enable_auto_commit=False, group_id=None)  # fmt: skip
    states: dict[str, CameraState] = {}
    try:
        parts = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or [])]
        if not parts:
            return states
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        end = consumer.end_offsets(parts)
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(p) < end[p] for p in parts) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    if r.value is None:
                        states.pop(r.key.decode(), None)
                    else:
                        states[r.key.decode()] = CameraState.model_validate_json(r.value)
    finally:
        consumer.close()
    return states


class _Reassigned(ConsumerRebalanceListener):
    """Rebalance listener: marks that states must be reloaded before the next records."""

    def __init__(self, owner: EventProcessor) -> None:
        self.owner = owner

    def on_partitions_revoked(self, revoked) -> None:
        pass

    def on_partitions_assigned(self, assigned) -> None:
        self.owner._reassigned = True


class EventProcessor:
    """``run()`` until ``stop()``; one instance is one member of the group ``group_id``."""

    def __init__(self, bootstrap: str, rules: RulesFile, *, topics: ConsumerTopics | None = None,
                 group_id: str = "sparseinst-events", transactional_id: str | None = None,
                 max_poll_records: int = 64) -> None:  # fmt: skip
        from kafka import KafkaConsumer, KafkaProducer

        self.bootstrap, self.rules, self.topics = bootstrap, rules, topics or ConsumerTopics()
        self.group_id = group_id
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False,
            isolation_level="read_committed", auto_offset_reset="earliest", max_poll_records=max_poll_records,
        )  # fmt: skip
        self._reassigned = False
        self.consumer.subscribe([self.topics.detections], listener=_Reassigned(self))
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, transactional_id=transactional_id or group_id,
                                      compression_type="gzip", acks="all")  # fmt: skip
        self.producer.init_transactions()  # fences any earlier instance with the same transactional id
        self.states: dict[str, CameraState] = {}  # loaded when partitions are assigned (first poll)
        self.processors: dict[str, CameraProcessor] = {}
        self.stats = ConsumerStats()
        self._stop = threading.Event()
        self.on_commit = None  # optional callable(list of (camera id, frame index)) after each commit (benchmarks)

    def processor(self, camera_id: str) -> CameraProcessor:
        if camera_id not in self.processors:
            self.processors[camera_id] = CameraProcessor(camera_id, self.rules, self.states.get(camera_id))
        return self.processors[camera_id]

    def handle(self, record) -> tuple[list[Event], DeadLetter | None, str | None]:
        """Events of one record, or its dead letter; and the camera whose state changed."""
        try:
            frame = FrameDetections.model_validate_json(record.value)
        except (ValidationError, ValueError, TypeError) as exc:
            if isinstance(exc, ValidationError):
                detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
            else:
                detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return [], self._dead_letter(record, f"invalid detections message: {detail}"), None
        proc = self.processor(frame.camera_id)
        if frame.end_of_stream:
            meta = FrameMeta(frame.camera_id, frame.vehicle_id, frame.frame_index, frame.capture_time, 1, 1)
            events = proc.flush(meta) if frame.frame_index > proc.state.last_index else []
            proc.state.last_index = max(proc.state.last_index, frame.frame_index)
            return events, None, frame.camera_id
        if frame.frame_index <= proc.state.last_index:
            self.stats.replayed += 1
            return [], None, None
        try:
            # masks are decoded before any state changes, so a bad one leaves the camera's state as it was
            return proc.process(frame), None, frame.camera_id
        except ValueError as exc:  # e.g. an RLE mask that does not fit its frame: this message only
            return [], self._dead_letter(record, f"unusable detections: {exc}"), None

    def _dead_letter(self, record, reason: str) -> DeadLetter:
        log.warning("dead letter: %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason)
        return DeadLetter(
            topic=record.topic, partition=record.partition, offset=record.offset,
            key=record.key.decode("utf-8", errors="replace") if record.key else None, reason=reason,
            value=(record.value or b"")[:MAX_DEAD_LETTER_VALUE].decode("utf-8", errors="replace"),
        )  # fmt: skip

    def poll_once(self, timeout_ms: int = 500) -> int:
        """Process one poll's records in one transaction; returns how many records."""
        from kafka import OffsetAndMetadata

        batches = self.consumer.poll(timeout_ms=timeout_ms)
        if self._reassigned:  # partitions moved between members: their cameras' states moved too
            self._reassigned = False
            self._reload_states()
        records = [r for rs in batches.values() for r in rs]
        if not records:
            return 0
        started = time.monotonic()
        self.producer.begin_transaction()
        try:
            touched: set[str] = set()
            done: list[tuple[str, int]] = []
            for r in records:
                events, dead, camera = self.handle(r)
                if camera:
                    done.append((camera, self.processors[camera].state.last_index))
                for e in events:
                    self.producer.send(self.topics.events, key=e.camera_id.encode(), value=e.model_dump_json().encode())
                    self.stats.events[e.type] += 1
                if dead is not None:
                    self.producer.send(self.topics.dead_letter, key=(dead.key or "").encode(),
                                       value=dead.model_dump_json().encode())  # fmt: skip
                    self.stats.dead_letters += 1
                if camera:
                    touched.add(camera)
            for cam in sorted(touched):
                self.producer.send(self.topics.state, key=cam.encode(),
                                   value=self.processors[cam].snapshot().model_dump_json().encode())  # fmt: skip
            offsets = {tp: OffsetAndMetadata(rs[-1].offset + 1, "", -1) for tp, rs in batches.items()}
            self.producer.send_offsets_to_transaction(offsets, self.consumer.group_metadata())
            self.producer.commit_transaction()
        except BaseException:
            self.producer.abort_transaction()
            # the uncommitted records and state changes will be redone from the last commit
            self._rewind()
            raise
        if self.on_commit is not None:
            self.on_commit(done)
        self.stats.messages += len(records)
        self.stats.transactions += 1
        self.stats.busy_s += time.monotonic() - started
        return len(records)

    def _reload_states(self) -> None:
        """Drop the in-memory processors; cameras resume from their last committed state."""
        self.processors.clear()
        self.states = load_states(self.bootstrap, self.topics.state)

    def _rewind(self) -> None:
        self._reload_states()
        for tp in self.consumer.assignment():
            committed = self.consumer.committed(tp)
            if committed is None:
                self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, committed)

    def run(self, *, idle_exit_s: float | None = None) -> ConsumerStats:
        """Process until :meth:`stop` (or ``idle_exit_s`` seconds without messages)."""
        idle_since = time.monotonic()
        while not self._stop.is_set():
            if self.poll_once():
                idle_since = time.monotonic()
            elif idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
                break
        return self.stats

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self.consumer.close()
        self.producer.close()
