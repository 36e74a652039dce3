"""Keep events queryable: a SQLite file fed from the events topic (``read_committed``).

Rows are keyed by ``event_id`` and inserted with ``INSERT OR IGNORE``, so re-reading the topic
(a restart before the sink's offsets were committed) never duplicates a row.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

from pipeline.kafka.connection import KafkaConnection
from pipeline.messages import Event

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY, type TEXT NOT NULL, camera_id TEXT NOT NULL, vehicle_id TEXT,
    frame_index INTEGER NOT NULL, frame_time REAL NOT NULL, track_id TEXT, class_name TEXT,
    zone TEXT, line TEXT, direction TEXT, model_name TEXT, model_version TEXT, details TEXT
);
CREATE INDEX IF NOT EXISTS events_by_camera_time ON events (camera_id, frame_time);
CREATE INDEX IF NOT EXISTS events_by_type ON events (type);
"""
COLUMNS = ("event_id", "type", "camera_id", "vehicle_id", "frame_index", "frame_time", "track_id", "class_name",
           "zone", "line", "direction", "model_name", "model_version")  # fmt: skip


class EventStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, check_same_thread=False)
        self.db.executescript(SCHEMA)

    def add(self, events: list[Event]) -> int:
        rows = [(*(getattr(e, c) for c in COLUMNS), json.dumps(e.details)) for e in events]
        before = self.db.total_changes
        self.db.executemany(f"INSERT OR IGNORE INTO events VALUES ({', '.join('?' * (len(COLUMNS) + 1))})", rows)
        self.db.commit()
        return self.db.total_changes - before

    def events(self) -> list[Event]:
        cur = self.db.execute(f"SELECT {', '.join(COLUMNS)}, details FROM events ORDER BY frame_time, camera_id")
        return [Event(**dict(zip(COLUMNS, row[:-1])), details=json.loads(row[-1])) for row in cur]

    def counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT type, COUNT(*) FROM events GROUP BY type ORDER BY type").fetchall())

    def close(self) -> None:
        self.db.close()


class EventSink:
    """Consumes the events topic into an :class:`EventStore` until stopped."""

    def __init__(self, conn: KafkaConnection | str, topic: str, store: EventStore,
                 group_id: str = "sparseinst-sink") -> None:  # fmt: skip
        from kafka import KafkaConsumer

        self.store = store
        self.consumer = KafkaConsumer(topic, **KafkaConnection.of(conn).client_args(), group_id=group_id,
                                      isolation_level="read_committed", auto_offset_reset="earliest",
                                      enable_auto_commit=False)  # fmt: skip
        self.stored = 0
        self._stop = threading.Event()

    def poll_once(self, timeout_ms: int = 500) -> int:
        batches = self.consumer.poll(timeout_ms=timeout_ms)
        events = [Event.model_validate_json(r.value) for rs in batches.values() for r in rs]
        if events:
            self.stored += self.store.add(events)
            self.consumer.commit()  # after the rows are stored: at-least-once, and the rows are idempotent
        return len(events)

    def run(self) -> None:
        while not self._stop.is_set():
            self.poll_once()

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self.consumer.close()
