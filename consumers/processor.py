"""The event processor: one member of a Kafka consumer group, exactly once, any number of members.

For every poll it turns detections into events with one :class:`CameraStep` per camera,
then, in one Kafka transaction, produces the events, the dead letters, a snapshot of every
touched camera's state (to a compacted state topic) and the consumed offsets. Either all of
it becomes visible to ``read_committed`` readers or none of it does.

- **Many members.** Each member has its own transactional id (``<group>.<member id>``): the pod's
  name where an orchestrator gives one, else host and process id, so any number of processes on
  one host run side by side. A member whose id is held by a live process refuses to start
  (:mod:`pipeline.kafka.claim`) rather than fence it. Zombie members are fenced by the group
  metadata sent with the offsets (KIP-447).
- **Bounded input.** A record that is not valid detections, whose key is not its camera, or that
  breaks :class:`~pipeline.messages.FrameLimits` is dead-lettered with the reason; its camera goes on.
- **Bounded state.** One compressed record per camera, trimmed to fit the state topic's cap
  (:mod:`consumers.snapshots`); a camera whose stream ended, or that was idle past
  ``camera_ttl_s``, is forgotten: its open tracks end and its record is tombstoned.
- **No record skipped.** After any failure between poll and commit the member goes back to the
  last commit (the committed offsets, else the first record of each batch, where every poll
  starts) or stops; it never polls past uncommitted records.
- **State follows partitions.** The state topic is co-partitioned with ``detections``: a member
  loads the states of exactly the partitions it was assigned, completely or not at all, and
  keeps in memory the partitions a rebalance gives back to it.
- **Failure policy.** Any exception while handling one record sends that record to the
  dead-letter topic with the exception's type and message; the poll is redone without it, so
  a half-applied record never reaches the committed state. Errors that are not the record's
  fault (fenced, not authorised, the cluster gone for longer than ``kafka_retry_s``) stop the
  member with :class:`ConsumerFatalError`; an error while aborting never hides the first one.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from kafka import ConsumerRebalanceListener, TopicPartition
from pydantic import ValidationError

from consumers.camera import CameraState, CameraStep
from consumers.rules import RulesFile
from consumers.snapshots import state_record
from pipeline.errors import ConsumerFatalError, StateLoadError
from pipeline.kafka.claim import check_group, claim_on_host
from pipeline.kafka.connection import KafkaConnection
from pipeline.kafka.dead_letters import dead_letter
from pipeline.kafka.state import STATE_RECORD_MAX_BYTES, decode_value, load_partitions
from pipeline.kafka.topics import Topics
from pipeline.messages import DeadLetter, Event, FrameDetections, FrameLimits, OutOfBoundsError

log = logging.getLogger(__name__)


class TxnStep(StrEnum):
    """The transaction steps that wait on the broker (named as the producer's methods)."""

    SEND_OFFSETS = "send_offsets_to_transaction"
    COMMIT = "commit_transaction"
    ABORT = "abort_transaction"


def default_member_id() -> str:
    """The pod's name (``POD_NAME``, stable across restarts), else host and process id (unique among live ones)."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class ConsumerStats:
    messages: int = 0
    events: Counter[str] = field(default_factory=Counter)
    dead_letters: int = 0
    dead_by_reason: Counter[str] = field(default_factory=Counter)  # 'out of bounds', 'invalid detections message', ...
    state_trimmed: int = 0  # tracks whose saved state was cut to fit the state record's cap
    expired: Counter[str] = field(default_factory=Counter)  # ended / idle -> cameras forgotten and tombstoned
    skipped: Counter[str] = field(default_factory=Counter)  # duplicate / stale_stream -> messages
    transactions: int = 0
    aborted: int = 0
    state_loads: int = 0
    lag: dict[int, int] = field(default_factory=dict)  # partition -> messages behind the end
    busy_s: float = 0.0

    @property
    def replayed(self) -> int:
        return self.skipped["duplicate"]


class _Redo(Exception):
    """A record failed part-way: redo the poll from the last commit, with the record dead-lettered."""


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, owner: EventProcessor) -> None:
        self.owner = owner

    def on_partitions_revoked(self, revoked) -> None:
        self.owner._revoked(set(revoked), lost=False)

    def on_partitions_lost(self, lost) -> None:
        self.owner._revoked(set(lost), lost=True)

    def on_partitions_assigned(self, assigned) -> None:
        self.owner._assigned(set(assigned))


# Errors after which this member must stop; anything else from Kafka is retried for a while.
_FATAL = ("ProducerFencedError", "TransactionalIdAuthorizationFailedError", "TopicAuthorizationFailedError",
          "GroupAuthorizationFailedError", "ClusterAuthorizationFailedError", "SaslAuthenticationFailedError",
          "InvalidTransactionTimeoutError", "UnsupportedVersionError", "InvalidProducerEpochError")  # fmt: skip


class EventProcessor:
    """``run()`` until ``stop()``; one instance is one member (``member_id``) of the group ``group_id``."""

    def __init__(self, conn: KafkaConnection | str, rules: RulesFile, *, topics: Topics | None = None,
                 group_id: str = "sparseinst-events", member_id: str | None = None, max_poll_records: int = 64,
                 session_timeout_s: float = 15.0, transaction_timeout_s: float = 60.0,
                 state_load_timeout_s: float | None = None, kafka_retry_s: float = 60.0,
                 limits: FrameLimits | None = None, camera_ttl_s: float = 3600.0, stream_takeover_s: float = 60.0,
                 state_max_bytes: int = STATE_RECORD_MAX_BYTES) -> None:  # fmt: skip
        from kafka import KafkaConsumer

        self.conn, self.rules, self.topics = KafkaConnection.of(conn), rules, topics or Topics()
        self.group_id, self.member_id = group_id, member_id or default_member_id()
        self.transactional_id = f"{group_id}.{self.member_id}"
        self.limits, self.camera_ttl_s, self.stream_takeover_s = (
            limits or FrameLimits(),
            camera_ttl_s,
            stream_takeover_s,
        )
        self.state_max_bytes = min(state_max_bytes, STATE_RECORD_MAX_BYTES)
        # before the producer exists: its init_transactions would fence a live holder of the id
        self._claim = claim_on_host(self.conn.bootstrap, self.transactional_id)
        try:
            check_group(self.conn, group_id, self.transactional_id, session_timeout_s=session_timeout_s)
        except BaseException:
            self._claim.release()
            raise
        # a dead member's open transaction holds the state back until the broker aborts it
        self.state_load_timeout_s = state_load_timeout_s or transaction_timeout_s + 30.0
        self.kafka_retry_s = kafka_retry_s
        args = self.conn.client_args()
        self.consumer = KafkaConsumer(
            **args, group_id=group_id, client_id=self.transactional_id, enable_auto_commit=False,
            isolation_level="read_committed", auto_offset_reset="earliest", max_poll_records=max_poll_records,
            session_timeout_ms=int(session_timeout_s * 1000), heartbeat_interval_ms=int(session_timeout_s * 1000 / 5),
        )  # fmt: skip
        self._producer_args = {**args, "transactional_id": self.transactional_id, "compression_type": "gzip",
                               "acks": "all", "transaction_timeout_ms": int(transaction_timeout_s * 1000)}  # fmt: skip
        # past the transaction timeout the broker has aborted the transaction anyway
        self.step_timeout_s = transaction_timeout_s
        try:
            self.producer = self._new_producer()
        except Exception as exc:
            self.consumer.close()
            self._claim.release()
            raise self._fatal("could not initialise transactions", exc) from exc
        self.consumer.subscribe([self.topics.detections], listener=_Rebalance(self))
        self.states: dict[str, CameraState] = {}  # loaded per assigned partition
        self.processors: dict[str, CameraStep] = {}
        self.camera_partition: dict[str, int] = {}
        self._to_load: set[int] = set()  # detections partitions assigned whose states are not loaded yet
        self._owned: set[int] = set()
        self._pending_revoke: set[int] = set()  # revoked in the rebalance under way
        self._poison: dict[tuple[str, int, int], BaseException] = {}
        self._seen: dict[str, float] = {}  # camera -> when this member last handled or loaded it (monotonic)
        self._accepted: dict[str, float] = {}  # camera -> when a frame of its stream was last taken (monotonic)
        self._ended: dict[str, bool] = {}  # camera -> its last record this poll ended its stream
        self._dead_reasons: Counter[str] = Counter()  # of the open transaction
        self._outbox: list[tuple[str, bytes, bytes | None]] = []  # (topic, key, value) of the open transaction
        self._failing_since: float | None = None
        self.stats = ConsumerStats()
        self._stop = threading.Event()
        self.on_commit: Callable[[list[tuple[str, int]]], None] | None = None  # after each commit (benchmarks)

    def _new_producer(self):
        from kafka import KafkaProducer

        producer = KafkaProducer(**self._producer_args)
        producer.init_transactions()  # aborts what an earlier producer of this member left open
        return producer

    def _step(self, step: TxnStep, *args: object) -> None:
        """Send offsets / commit / abort, waiting at most ``step_timeout_s``.

        kafka-python waits without a limit; after a broker crash a request to the dead
        coordinator can then hang forever, so a step without an answer raises a timeout and
        the producer is replaced (its successor's ``init_transactions`` aborts the open one).
        """
        from kafka.errors import KafkaTimeoutError

        manager, sender = getattr(self.producer, "_transaction_manager", None), getattr(self.producer, "_sender", None)
        if manager is None or sender is None:  # a kafka-python without these internals: its own waits
            getattr(self.producer, step.value)(*args)
            return
        begin = {TxnStep.SEND_OFFSETS: lambda: manager.send_offsets_to_transaction(*args),
                 TxnStep.COMMIT: manager.begin_commit, TxnStep.ABORT: manager.begin_abort}  # fmt: skip
        result = begin[step]()
        sender.wakeup()
        if not result.wait(timeout_ms=int(self.step_timeout_s * 1000)):
            raise KafkaTimeoutError(f"{step.value} got no answer within {self.step_timeout_s:.0f} s")

    # ------------------------------------------------------------------------------ partitions and state

    def _revoked(self, partitions: set[TopicPartition], *, lost: bool) -> None:
        gone = {tp.partition for tp in partitions if tp.topic == self.topics.detections}
        if lost:  # another member may have moved these on: never reuse what is in memory
            self._forget(gone)
        self._pending_revoke = gone

    def _assigned(self, partitions: set[TopicPartition]) -> None:
        now = {tp.partition for tp in partitions if tp.topic == self.topics.detections}
        # eager rebalancing revokes everything and hands some partitions straight back: those keep
        # their in-memory state (no other member could have processed them in between)
        self._forget(self._pending_revoke - now)
        self._pending_revoke = set()
        self._to_load |= now - self._owned
        self._owned = now
        log.info("member %s assigned partitions %s", self.member_id, sorted(now))

    def _forget(self, partitions: set[int]) -> None:
        for cam in [c for c, p in self.camera_partition.items() if p in partitions]:
            self.processors.pop(cam, None)
            self.states.pop(cam, None)
            self.camera_partition.pop(cam, None)
        self._owned -= partitions
        self._to_load -= partitions

    def _load_assigned_states(self) -> None:
        if not self._to_load:
            return
        parts = sorted(self._to_load)
        raw = load_partitions(self.conn, self.topics.state, parts, timeout_s=self.state_load_timeout_s)
        now = time.monotonic()
        for cam, value in raw.items():
            self.states[cam] = CameraState.model_validate_json(decode_value(value))
            self.processors.pop(cam, None)
            self._seen[cam] = now
        self._to_load.clear()
        self.stats.state_loads += 1
        log.info("member %s loaded the state of %d cameras of partitions %s", self.member_id, len(raw), parts)

    def processor(self, camera_id: str) -> CameraStep:
        if camera_id not in self.processors:
            self.processors[camera_id] = CameraStep(camera_id, self.rules, self.states.get(camera_id))
        return self.processors[camera_id]

    # ------------------------------------------------------------------------------ records

    def handle(self, record) -> tuple[list[Event], DeadLetter | None, str | None]:
        """Events of one record, or its dead letter; and the camera whose state changed."""
        try:
            frame = FrameDetections.model_validate_json(record.value)
        except (ValidationError, ValueError, TypeError) as exc:
            return [], self._dead_letter(record, "invalid detections message", exc), None
        key = record.key.decode("utf-8", errors="replace") if record.key else None
        if key != frame.camera_id:  # its camera's state lives in the partition of the camera's own key
            exc = ValueError(f"record key {key!r} is not camera_id {frame.camera_id!r}")
            return [], self._dead_letter(record, "wrong key", exc), None
        try:
            self.limits.check(frame)
        except OutOfBoundsError as exc:
            return [], self._dead_letter(record, "out of bounds", exc), None
        self.camera_partition[frame.camera_id] = record.partition
        cam, now = frame.camera_id, time.monotonic()
        self._seen[cam] = now
        # anything raised from here on redoes the poll without this record (see _transaction)
        proc = self.processor(cam)
        events, skipped = proc.consume(frame)
        if skipped == "stale_stream" and now - self._accepted.setdefault(cam, now) > self.stream_takeover_s:
            # the camera's stream has had no frame for a while and an older epoch keeps coming: a source
            # restarted on a host whose clock is behind the one that started the stream
            log.warning("camera %s: stream %d silent for %.0f s while stream %d sends: taking the new one",
                        cam, proc.state.stream_epoch, now - self._accepted[cam], frame.stream_epoch)  # fmt: skip
            self.stats.skipped["stream_takeover"] += 1
            events = proc.restart(frame.stream_epoch)
            more, skipped = proc.consume(frame)
            events += more
        if not skipped:
            self._accepted[cam] = now
        if skipped:
            self.stats.skipped[skipped] += 1
            return events, None, frame.camera_id if events else None
        self._ended[frame.camera_id] = frame.end_of_stream
        return events, None, frame.camera_id

    def _dead_letter(self, record, reason: str, exc: BaseException) -> DeadLetter:
        dead = dead_letter(record, reason, exc)
        log.warning("dead letter: %s[%d]@%d: %s", record.topic, record.partition, record.offset, dead.reason)
        self._dead_reasons[reason] += 1
        return dead

    # ------------------------------------------------------------------------------ one poll, one transaction

    def poll_once(self, timeout_ms: int = 500) -> int:
        """Process one poll's records in one transaction; returns how many records were committed."""
        from kafka.errors import KafkaError, KafkaTimeoutError

        try:
            batches = self.consumer.poll(timeout_ms=timeout_ms)
        except KafkaError as exc:
            self._kafka_trouble("polling", exc)
            return 0
        try:
            self._load_assigned_states()
        except (KafkaError, StateLoadError) as exc:
            # the poll has moved past records that are not handled: go back before trying again
            self._rewind(batches)
            self._kafka_trouble("loading the state of assigned partitions", exc)
            return 0
        self._measure_lag()
        records = [r for rs in batches.values() for r in rs]
        if not records:
            return 0
        started = time.monotonic()
        try:
            done = self._transaction(batches, records)
        except _Redo:
            self._abort_and_rewind(batches)
            return 0
        except KafkaError as exc:
            # a step that got no answer leaves the producer stuck: replace it rather than wait on an abort
            self._abort_and_rewind(batches, replace=isinstance(exc, KafkaTimeoutError))
            self._kafka_trouble("committing", exc)
            return 0
        except BaseException:
            self._abort_and_rewind(batches)
            raise
        self._failing_since = None
        if self.on_commit is not None:
            self.on_commit(done)
        self.stats.messages += len(records)
        self.stats.transactions += 1
        self.stats.busy_s += time.monotonic() - started
        return len(records)

    def _transaction(self, batches, records) -> list[tuple[str, int]]:
        from kafka import OffsetAndMetadata

        self.producer.begin_transaction()
        # what the transaction writes, sent in one go after the poll is handled: the producer's thread then
        # batches it in a few requests instead of waking for every event while the records are handled
        self._outbox = []
        touched: set[str] = set()
        done: list[tuple[str, int]] = []
        events_by_type: Counter[str] = Counter()
        self._dead_reasons = Counter()
        self._ended = {}
        for r in records:
            where = (r.topic, r.partition, r.offset)
            if where in self._poison:
                dead = self._dead_letter(r, "handling failed", self._poison[where])
                events: list[Event] = []
            else:
                try:
                    events, dead, camera = self.handle(r)
                except Exception as exc:  # the record's fault: dead-letter it and redo the poll without it
                    log.warning("record %s[%d]@%d failed: %s: %s", *where, type(exc).__name__, exc)
                    self._poison[where] = exc
                    raise _Redo from exc
                if camera:
                    touched.add(camera)
                    done.append((camera, self.processors[camera].state.last_index))
            self._send_events(events, events_by_type)
            if dead is not None:
                self._outbox.append(
                    (self.topics.dead_letter, (dead.key or "").encode(), dead.model_dump_json().encode())
                )
        gone = self._expire(touched, events_by_type)
        trimmed = 0
        for cam in sorted(touched - set(gone)):
            value, cut = state_record(self.processors[cam], self.state_max_bytes)
            if cut:
                log.warning("state of camera %s trimmed to fit %d bytes (%d tracks)", cam, self.state_max_bytes, cut)
            trimmed += cut
            self._outbox.append((self.topics.state, cam.encode(), value))
        for cam in gone:
            self._outbox.append((self.topics.state, cam.encode(), None))  # tombstone
        for topic, key, value in self._outbox:
            self.producer.send(topic, key=key, value=value)
        self._outbox = []
        offsets = {tp: OffsetAndMetadata(rs[-1].offset + 1, "", -1) for tp, rs in batches.items()}
        self._step(TxnStep.SEND_OFFSETS, offsets, self.consumer.group_metadata())
        self._step(TxnStep.COMMIT)
        committed = {(tp.topic, tp.partition): o.offset for tp, o in offsets.items()}
        self._poison = {w: e for w, e in self._poison.items() if w[2] >= committed.get(w[:2], -1)}  # not yet passed
        for cam, why in gone.items():
            self._drop_camera(cam)
            self.stats.expired[why] += 1
        self.stats.events.update(events_by_type)
        self.stats.dead_letters += sum(self._dead_reasons.values())
        self.stats.dead_by_reason.update(self._dead_reasons)
        self.stats.state_trimmed += trimmed
        return done

    def _send_events(self, events: list[Event], counts: Counter[str]) -> None:
        for e in events:
            self._outbox.append((self.topics.events, e.camera_id.encode(), e.model_dump_json().encode()))
            counts[e.type] += 1

    def _expire(self, touched: set[str], counts: Counter[str]) -> dict[str, str]:
        """Cameras to forget in this transaction (-> why): streams that ended, cameras idle past the TTL."""
        gone = {cam: "ended" for cam in sorted(touched) if self._ended.get(cam)}
        horizon = time.monotonic() - self.camera_ttl_s
        for cam in sorted(c for c, seen in self._seen.items() if seen < horizon and c not in touched):
            if cam in self.states or cam in self.processors:
                self._send_events(self.processor(cam).end_stream(), counts)
                gone[cam] = "idle"
            else:
                self._seen.pop(cam, None)
        return gone

    def _drop_camera(self, cam: str) -> None:
        for table in (self.processors, self.states, self.camera_partition, self._seen, self._accepted):
            table.pop(cam, None)

    def _rewind(self, batches) -> None:
        """Back to the last commit for every partition this poll read from.

        The committed offsets where the coordinator answers; else the first record of each batch,
        which is where the poll started (every poll starts at the last commit: a transaction either
        commits everything it read or is rewound). A member that cannot rewind stops.
        """
        assigned = self.consumer.assignment()
        for tp, rs in batches.items():
            if tp not in assigned or not rs:  # revoked meanwhile: its next owner starts from the commit
                continue
            target = rs[0].offset
            try:
                committed = self.consumer.committed(tp)
                if committed is not None:
                    target = committed
            except Exception as exc:
                log.warning("reading the committed offset of %s[%d] failed (%s: %s): going back to offset %d, where "
                            "the poll started", tp.topic, tp.partition, type(exc).__name__, exc, target)  # fmt: skip
            try:
                self.consumer.seek(tp, target)
            except Exception as exc:
                raise ConsumerFatalError(f"event processor {self.member_id} stopped: could not go back to offset "
                                         f"{target} of {tp.topic}[{tp.partition}] ({type(exc).__name__}: {exc}); "
                                         "stopping rather than skip uncommitted records") from exc  # fmt: skip

    def _abort_and_rewind(self, batches, *, replace: bool = False) -> None:
        """Abort the open transaction and go back to the last commit; never hides the error being handled."""
        self.stats.aborted += 1
        if replace:
            self._replace_producer()
        else:
            try:
                self._step(TxnStep.ABORT)
            except Exception as exc:  # logged, not raised: the caller is already handling the first error
                log.warning("aborting the transaction failed too (%s: %s): replacing the producer",
                            type(exc).__name__, exc)  # fmt: skip
                self._replace_producer()
        # the uncommitted records and state changes are redone from the last commit
        self.processors.clear()
        self.states.clear()
        self.camera_partition.clear()
        self._seen.clear()
        self._to_load = set(self._owned)
        self._rewind(batches)

    def _replace_producer(self) -> None:
        from kafka.errors import KafkaError

        close_producer(self.producer, 1, "the stuck producer")
        try:
            self.producer = self._new_producer()
        except KafkaError as exc:
            self._kafka_trouble("replacing the producer", exc)
            self._replace_producer()

    def _kafka_trouble(self, doing: str, exc: BaseException) -> None:
        """Retry what Kafka can recover from; stop for what it cannot, or when it lasts too long."""
        if type(exc).__name__ in _FATAL or not getattr(exc, "retriable", True):
            raise self._fatal(doing, exc) from exc
        now = time.monotonic()
        self._failing_since = self._failing_since or now
        if now - self._failing_since > self.kafka_retry_s:
            raise self._fatal(f"{doing} (failing for {now - self._failing_since:.0f} s)", exc) from exc
        log.warning("member %s: %s failed, retrying: %s: %s", self.member_id, doing, type(exc).__name__, exc)
        time.sleep(min(2.0, 0.2 + (now - self._failing_since) / 10))

    def _fatal(self, doing: str, exc: BaseException) -> ConsumerFatalError:
        name = type(exc).__name__
        hint = ""
        if name in ("ProducerFencedError", "InvalidProducerEpochError"):
            hint = (f" (another process uses transactional id {self.transactional_id!r}: give every member its own "
                    "consumer.member_id)")  # fmt: skip
        elif "Authorization" in name or "Sasl" in name:
            hint = f" (check the credentials and ACLs of {self.conn.describe()})"
        return ConsumerFatalError(f"event processor {self.member_id} stopped: {doing}: {name}: {exc}{hint}")

    def _measure_lag(self) -> None:
        """Messages behind per partition (a metric: a failure here never stops or rewinds anything)."""
        from kafka.errors import KafkaError

        try:
            for tp in self.consumer.assignment():
                high = self.consumer.highwater(tp)
                if high is not None:
                    self.stats.lag[tp.partition] = max(0, high - self.consumer.position(tp))
        except KafkaError as exc:
            log.debug("measuring the lag failed: %s", exc)
        for p in [p for p in self.stats.lag if p not in self._owned]:
            del self.stats.lag[p]

    # ------------------------------------------------------------------------------ lifecycle

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
        try:
            self.consumer.close()
        finally:
            close_producer(self.producer, 10, "the producer")
            self._claim.release()


def close_producer(producer, timeout_s: float, what: str) -> None:
    """Close a transactional producer; if its pending records cannot be flushed, stop it without them.

    kafka-python's ``close()`` raises while flushing, before it stops the sender thread: each
    replaced producer would leave a thread running, and its ``__del__`` would raise again. The
    pending records belong to an uncommitted transaction, which the group redoes from the last commit.
    """
    try:
        producer.close(timeout=timeout_s)
        return
    except Exception as exc:
        log.warning("closing %s: %s: %s; stopping it without its pending records", what, type(exc).__name__, exc)
    sender = getattr(producer, "_sender", None)
    if sender is not None and sender.is_alive():
        sender.force_close()
        sender.join(5)
    producer._closed = True  # nothing left for __del__ to flush
