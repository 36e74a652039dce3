"""Keep events queryable: a SQLite file fed from the events topic (``read_committed``).

Rows are keyed by ``event_id`` and inserted with ``INSERT OR IGNORE``, so re-reading the topic
(a restart before the sink's offsets were committed) never duplicates a row; offsets are
committed only after the rows are, so a restart never loses one either.

Failure policy, as the event processor's: a record that is not an event goes to the events
dead-letter topic with the reason; Kafka or SQLite trouble is retried for ``retry_s`` and then
stops the sink with :class:`SinkError`, which its owner turns into one ``error:`` line.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

from pydantic import ValidationError

from pipeline.errors import PipelineError
from pipeline.kafka.connection import KafkaConnection
from pipeline.kafka.dead_letters import dead_letter
from pipeline.messages import DeadLetter, Event, dead_letter_topic
from pipeline.subscriber import EventFilter

log = logging.getLogger(__name__)


class SinkError(PipelineError):
    """The sink cannot go on (the store or Kafka failing past the retry window)."""


SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY, type TEXT NOT NULL, camera_id TEXT NOT NULL, vehicle_id TEXT,
    stream_epoch INTEGER NOT NULL DEFAULT 0, frame_index INTEGER NOT NULL, frame_time REAL NOT NULL,
    track_id TEXT, class_name TEXT, zone TEXT, line TEXT, direction TEXT, model_name TEXT, model_version TEXT,
    details TEXT, mask TEXT
);
CREATE INDEX IF NOT EXISTS events_by_camera_time ON events (camera_id, frame_time);
CREATE INDEX IF NOT EXISTS events_by_type ON events (type);
"""
COLUMNS = ("event_id", "type", "camera_id", "vehicle_id", "stream_epoch", "frame_index", "frame_time", "track_id",
           "class_name", "zone", "line", "direction", "model_name", "model_version")  # fmt: skip


class EventStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, check_same_thread=False)
        self.db.executescript(SCHEMA)
        have = {row[1] for row in self.db.execute("PRAGMA table_info(events)")}
        # files written before rows carried the stream, or the track's mask
        for column, kind in (("stream_epoch", "INTEGER NOT NULL DEFAULT 0"), ("mask", "TEXT")):
            if column not in have:
                self.db.execute(f"ALTER TABLE events ADD COLUMN {column} {kind}")
        self.db.commit()

    def add(self, events: list[Event]) -> int:
        """Store ``events`` in one SQLite transaction (all or none); returns how many rows were new."""
        rows = [(*(getattr(e, c) for c in COLUMNS), json.dumps(e.details),
                 e.mask.model_dump_json() if e.mask else None) for e in events]  # fmt: skip
        names, marks = ", ".join((*COLUMNS, "details", "mask")), ", ".join("?" * (len(COLUMNS) + 2))
        before = self.db.total_changes
        with self.db:  # commits, or rolls back on error
            self.db.executemany(f"INSERT OR IGNORE INTO events ({names}) VALUES ({marks})", rows)
        return self.db.total_changes - before

    def events(self, where: EventFilter | None = None) -> list[Event]:
        """The stored events (those ``where`` matches), by frame time."""
        return list(self.select(where))

    def select(self, where: EventFilter | None = None) -> Iterator[Event]:
        """Stored events that ``where`` matches, by frame time then camera, read as they are iterated."""
        sql, params = _where(where or EventFilter())
        cur = self.db.execute(f"SELECT {', '.join(COLUMNS)}, details, mask FROM events{sql} "
                              "ORDER BY frame_time, camera_id, event_id", params)  # fmt: skip
        for row in cur:
            mask = json.loads(row[-1]) if row[-1] else None
            yield Event(**dict(zip(COLUMNS, row[:-2])), details=json.loads(row[-2]), mask=mask)

    def count(self, where: EventFilter | None = None) -> int:
        sql, params = _where(where or EventFilter())
        return int(self.db.execute(f"SELECT COUNT(*) FROM events{sql}", params).fetchone()[0])

    def counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT type, COUNT(*) FROM events GROUP BY type ORDER BY type").fetchall())

    def close(self) -> None:
        self.db.close()


def _where(f: EventFilter) -> tuple[str, list]:
    """The SQL of a filter (camera patterns as GLOB, which matches as the filter's shell patterns do)."""
    clauses, params = [], []
    for column, values in (("type", f.types), ("vehicle_id", f.vehicles), ("zone", f.zones)):
        if values is not None:
            clauses.append(f"{column} IN ({', '.join('?' * len(values))})")
            params += list(values)
    if f.cameras is not None:
        clauses.append("(" + " OR ".join("camera_id GLOB ?" for _ in f.cameras) + ")")
        params += list(f.cameras)
    if f.since is not None:
        clauses.append("frame_time >= ?")
        params.append(f.since)
    if f.until is not None:
        clauses.append("frame_time < ?")
        params.append(f.until)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


class EventSink:
    """Consumes the events topic into an :class:`EventStore` until stopped (or until it must stop)."""

    def __init__(self, conn: KafkaConnection | str, topic: str, store: EventStore, group_id: str = "sparseinst-sink",
                 *, retry_s: float = 60.0) -> None:  # fmt: skip
        from kafka import KafkaConsumer, KafkaProducer

        self.conn, self.topic, self.store, self.retry_s = KafkaConnection.of(conn), topic, store, retry_s
        args = self.conn.client_args()
        self.consumer = KafkaConsumer(topic, **args, group_id=group_id, isolation_level="read_committed",
                                      auto_offset_reset="earliest", enable_auto_commit=False)  # fmt: skip
        self.producer = KafkaProducer(**args, acks="all", enable_idempotence=True)
        self.stored = 0
        self.dead_letters: Counter[str] = Counter()  # reason -> records
        self.error: SinkError | None = None
        self._failing_since: float | None = None
        self._stop = threading.Event()

    def poll_once(self, timeout_ms: int = 500) -> int:
        """One poll: store its events, dead-letter what is not one, then commit. Returns the records handled.

        Raises :class:`SinkError` when the store or Kafka fails for longer than ``retry_s``.
        """
        from kafka.errors import KafkaError

        try:
            batches = self.consumer.poll(timeout_ms=timeout_ms)
        except KafkaError as exc:
            self._trouble(exc, {})
            return 0
        records = [r for rs in batches.values() for r in rs]
        if not records:
            return 0
        events, dead = [], []
        for r in records:
            try:
                events.append(Event.model_validate_json(r.value))
            except (ValidationError, ValueError, TypeError) as exc:
                dead.append(self._dead_letter(r, exc))
        try:
            sent = [self.producer.send(dead_letter_topic(self.topic), key=(d.key or "").encode(),
                                       value=d.model_dump_json().encode()) for d in dead]  # fmt: skip
            for future in sent:  # acknowledged before the offsets move past them
                future.get(timeout=30)
            self.stored += self.store.add(events)
            self.consumer.commit()  # after the rows are stored: at-least-once, and the rows are idempotent
        except (KafkaError, sqlite3.Error) as exc:
            self._trouble(exc, batches)
            return 0
        self._failing_since = None
        for d in dead:
            self.dead_letters[d.reason.split(":", 1)[0]] += 1
        return len(records)

    def _dead_letter(self, record, exc: BaseException) -> DeadLetter:
        dead = dead_letter(record, "invalid event", exc)
        log.warning("sink dead letter: %s[%d]@%d: %s", record.topic, record.partition, record.offset, dead.reason)
        return dead

    def _trouble(self, exc: BaseException, batches) -> None:
        """Go back to the last commit and retry for a while; past ``retry_s`` the sink stops."""
        now = time.monotonic()
        self._failing_since = self._failing_since or now
        for tp, rs in batches.items():  # the records of this poll are read again
            try:
                self.consumer.seek(tp, rs[0].offset)
            except Exception as seek_exc:
                raise SinkError(f"event sink stopped: could not go back to offset {rs[0].offset} of "
                                f"{tp.topic}[{tp.partition}]: {seek_exc}") from exc  # fmt: skip
        if now - self._failing_since > self.retry_s:
            raise SinkError(f"event sink stopped: {type(exc).__name__}: {exc} (failing for "
                            f"{now - self._failing_since:.0f} s; store {self.store.path})") from exc  # fmt: skip
        log.warning("event sink: %s: %s; retrying", type(exc).__name__, exc)
        time.sleep(min(2.0, 0.2 + (now - self._failing_since) / 10))

    def run(self, on_error: Callable[[SinkError], None] | None = None) -> None:
        """Poll until :meth:`stop`; a :class:`SinkError` is kept in ``error`` and passed to ``on_error``."""
        try:
            while not self._stop.is_set():
                self.poll_once()
        except SinkError as exc:
            log.error("%s", exc)
            self.error = exc
            if on_error is not None:
                on_error(exc)

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        try:
            self.consumer.close()
        finally:
            self.producer.close(timeout=10)
