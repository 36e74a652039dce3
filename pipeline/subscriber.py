"""Subscribe to the events topic: typed events, filtered, each ``event_id`` once, resumable.

This is the client for applications that use the events (a notebook, a service, an operator's
terminal). It needs only the package's core (kafka-python and pydantic): no PyTorch, DALI or
Triton client. ::

    from pipeline.subscriber import EventFilter, EventSubscriber, SeenIds

    with EventSubscriber("127.0.0.1:9092", group_id="alerts-app", seen=SeenIds("seen.sqlite"),
                         filter=EventFilter(types=["proximity.alert"], vehicles=["veh-1"])) as sub:
        for event in sub.events(idle_s=10):
            print(event.camera_id, event.track_id, event.details["distance_px"])
            sub.commit()  # handled: neither re-read nor delivered again after a restart

Records are read ``read_committed``: the event processors publish in transactions, so an
aborted transaction (a member killed mid-batch) is never seen. What is left is the same event
delivered twice: a replay of archived frames re-publishes its events with the same ids, a
subscriber restarted before its last commit reads again what it had been given, and a read from
a time or from offsets can overlap an earlier one. :class:`SeenIds` keeps the ids handed out
and, with a file, the ids committed, so none of these delivers an id twice.

Where to start: ``"committed"`` (the group's offsets; the start of the topic for a new group),
``"earliest"``, ``"latest"``, a time (``float``, seconds since the epoch: the first record
written at or after it) or explicit offsets (``{partition: offset}``). A record that is not a
valid event is skipped, counted in ``skipped["invalid"]`` and logged; it never stops the
subscriber.
"""

from __future__ import annotations

import fnmatch
import logging
import sqlite3
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipeline.errors import ConfigError, KafkaUnavailableError
from pipeline.kafka.connection import KafkaConnection, check_connection
from pipeline.messages import Event, EventType

log = logging.getLogger(__name__)

Start = Literal["committed", "earliest", "latest"] | float | dict[int, int]


class EventFilter(BaseModel):
    """Which events a subscriber wants; unset fields match everything. Camera ids may be patterns (``veh-1/*``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    types: tuple[EventType, ...] | None = None
    cameras: tuple[str, ...] | None = Field(None, description="camera ids or shell patterns")
    vehicles: tuple[str, ...] | None = None
    zones: tuple[str, ...] | None = None
    since: float | None = Field(None, description="frame_time >= since (seconds since the epoch)")
    until: float | None = Field(None, description="frame_time < until")

    @model_validator(mode="after")
    def _ordered(self) -> EventFilter:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError(f"since ({self.since}) must be before until ({self.until})")
        for name in ("types", "cameras", "vehicles", "zones"):
            if getattr(self, name) == ():
                raise ValueError(f"{name}: an empty list matches nothing; leave it unset to match all")
        return self

    def matches(self, e: Event) -> bool:
        return (
            (self.types is None or e.type in self.types)
            and (self.cameras is None or any(fnmatch.fnmatchcase(e.camera_id, c) for c in self.cameras))
            and (self.vehicles is None or e.vehicle_id in self.vehicles)
            and (self.zones is None or e.zone in self.zones)
            and (self.since is None or e.frame_time >= self.since)
            and (self.until is None or e.frame_time < self.until)
        )


class SeenIds:
    """The event ids a subscriber has handed out, to deliver each once.

    In memory it remembers the last ``capacity`` ids. With ``path`` (a SQLite file) the ids are also
    written at each :meth:`commit`, with the Kafka offsets after them, so a restarted subscriber
    delivers again only what it had not committed, and never an id it had.
    """

    def __init__(self, path: str | Path | None = None, capacity: int = 1_000_000) -> None:
        self.path = Path(path) if path is not None else None
        self.capacity = capacity
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._pending: list[str] = []
        self._db: sqlite3.Connection | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path)
            self._db.execute("CREATE TABLE IF NOT EXISTS seen (event_id TEXT PRIMARY KEY, at REAL NOT NULL)")
            self._db.commit()

    def first_time(self, event_id: str) -> bool:
        """True the first time ``event_id`` is offered (and then remembers it)."""
        if event_id in self._recent:
            self._recent.move_to_end(event_id)
            return False
        if self._db is not None and self._db.execute("SELECT 1 FROM seen WHERE event_id = ?", (event_id,)).fetchone():
            return False
        self._recent[event_id] = None
        if len(self._recent) > self.capacity:
            self._recent.popitem(last=False)
        self._pending.append(event_id)
        return True

    def commit(self) -> None:
        """Make the ids handed out so far durable (a no-op without a file)."""
        if self._db is not None and self._pending:
            now = time.time()
            with self._db:
                self._db.executemany("INSERT OR IGNORE INTO seen VALUES (?, ?)", [(i, now) for i in self._pending])
        self._pending = []

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


class EventSubscriber:
    """Typed, filtered, de-duplicated events from the events topic (see the module's text)."""

    def __init__(self, conn: KafkaConnection | str, topic: str = "events", *, group_id: str | None = None,
                 filter: EventFilter | None = None, start: Start = "committed", seen: SeenIds | None = None,
                 client_id: str = "sparseinst-subscriber", check: bool = True) -> None:  # fmt: skip
        from kafka import KafkaConsumer

        if start == "committed" and group_id is None:
            raise ConfigError("start='committed' needs a group_id (or start from 'earliest', 'latest', a time or "
                              "offsets)")  # fmt: skip
        self.conn, self.topic, self.group_id = KafkaConnection.of(conn), topic, group_id
        if check:  # an unreachable cluster or a refused login: one clear error now, not a client retrying forever
            check_connection(self.conn)
        self.filter = filter or EventFilter()
        self.seen = seen if seen is not None else SeenIds()
        self.delivered = 0
        self.skipped: Counter[str] = Counter()  # invalid, filtered, duplicate
        self._consumer = KafkaConsumer(**self.conn.client_args(), group_id=group_id, client_id=client_id,
                                       isolation_level="read_committed", enable_auto_commit=False,
                                       auto_offset_reset="earliest" if start == "committed" else "latest",
                                       fetch_max_bytes=32 * 1024 * 1024)  # fmt: skip
        self._end: dict | None = None
        self._queue: deque = deque()  # fetched records not handed out yet
        self._handled: dict = {}  # partition -> the offset after the last record handed out (to commit)
        try:
            self._start(start)
        except Exception:
            self._consumer.close()
            raise

    def _start(self, start: Start) -> None:
        from kafka import TopicPartition

        c = self._consumer
        if start == "committed":
            c.subscribe([self.topic])
            return
        found = c.partitions_for_topic(self.topic)
        if not found:
            raise KafkaUnavailableError(f"no topic {self.topic!r} on {self.conn.describe()}")
        parts = [TopicPartition(self.topic, p) for p in sorted(found)]
        c.assign(parts)
        if start == "earliest":
            c.seek_to_beginning(*parts)
        elif start == "latest":
            c.seek_to_end(*parts)
        elif isinstance(start, dict):
            unknown = sorted(set(start) - set(found))
            if unknown:
                raise ConfigError(f"offsets name partitions {unknown} that {self.topic} lacks "
                                  f"(it has {sorted(found)})")  # fmt: skip
            c.seek_to_end(*parts)  # partitions not named: only what comes from now on
            for p, offset in start.items():
                if offset < 0:
                    raise ConfigError(f"offset {offset} of partition {p} is negative")
                c.seek(TopicPartition(self.topic, p), offset)
        else:
            when_ms = int(float(start) * 1000)
            if when_ms < 0 or when_ms > (time.time() + 86400) * 1000:
                raise ConfigError(f"start time {start!r} is not a time in seconds since the epoch (up to now)")
            end = c.end_offsets(parts)
            for tp, at in c.offsets_for_times({tp: when_ms for tp in parts}).items():
                c.seek(tp, at.offset if at is not None else end[tp])

    def positions(self) -> dict[int, int]:
        """Partition -> the next offset this subscriber reads (what ``start=`` takes to resume here)."""
        return {tp.partition: self._consumer.position(tp) for tp in self._consumer.assignment()}

    def _fetch(self, timeout_s: float) -> bool:
        """One fetch into the queue of records to hand out; False when nothing came."""
        batches = self._consumer.poll(timeout_ms=int(timeout_s * 1000))
        for records in batches.values():
            self._queue.extend(records)
        return bool(batches)

    def _take(self) -> Event | None:
        """The next queued record as a new matching event, or None (invalid, filtered, duplicate); it counts as
        handled from here on (see :meth:`commit`)."""
        from kafka import TopicPartition

        r = self._queue.popleft()
        self._handled[TopicPartition(r.topic, r.partition)] = r.offset + 1
        try:
            event = Event.model_validate_json(r.value)
        except (ValidationError, ValueError, TypeError) as exc:
            self.skipped["invalid"] += 1
            log.warning("%s[%d]@%d is not a valid event, skipped: %s", r.topic, r.partition, r.offset,
                        str(exc).splitlines()[0])  # fmt: skip
            return None
        if not self.filter.matches(event):
            self.skipped["filtered"] += 1
            return None
        if not self.seen.first_time(event.event_id):
            self.skipped["duplicate"] += 1
            return None
        self.delivered += 1
        return event

    def poll(self, timeout_s: float = 1.0) -> list[Event]:
        """The new matching events of one fetch (possibly none)."""
        if not self._queue:
            self._fetch(timeout_s)
        out = []
        while self._queue:
            event = self._take()
            if event is not None:
                out.append(event)
        return out

    def at_end(self) -> bool:
        """Every partition read up to the end it had at the first call (for reads of a range, not follows)."""
        if self._end is None:
            parts = list(self._consumer.assignment())
            self._end = self._consumer.end_offsets(parts) if parts else {}
        return (bool(self._end) and not self._queue
                and all(self._consumer.position(tp) >= end for tp, end in self._end.items()))  # fmt: skip

    def events(self, *, idle_s: float | None = None, to_end: bool = False) -> Iterator[Event]:
        """Events one by one as they come; stops after ``idle_s`` without a record, or with ``to_end`` at the end
        the topic had when reading began. Leaving the loop early loses nothing: what was not handed out is
        handed out by the next call, and :meth:`commit` covers only what was."""
        quiet_since = time.monotonic()
        while True:
            if self._queue:
                event = self._take()
                if event is not None:
                    yield event
                continue
            if to_end and self._consumer.assignment() and self.at_end():
                return
            if self._fetch(0.5):
                quiet_since = time.monotonic()
            elif idle_s is not None and time.monotonic() - quiet_since > idle_s:
                return

    def commit(self) -> None:
        """Everything handed out so far is handled: the seen ids first, then the group's offsets past it."""
        from kafka.structs import OffsetAndMetadata

        self.seen.commit()
        if self.group_id is not None and self._handled:
            owned = self._consumer.assignment()
            offsets = {tp: OffsetAndMetadata(o, "", -1) for tp, o in self._handled.items() if tp in owned}
            if offsets:
                self._consumer.commit(offsets)
        self._handled = {}

    def close(self) -> None:
        try:
            self._consumer.close(autocommit=False)
        finally:
            self.seen.close()

    def __enter__(self) -> EventSubscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
