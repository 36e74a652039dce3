"""The parts of the pipeline, built in one place, each side with one shutdown order.

``run``, ``consume``, the demo and the benchmarks build their ingest and consumer sides here:

- :func:`ingest_side`: the detections publisher, the rollout follower (when ingest follows
  rollouts) and the :class:`~pipeline.ingest.runner.IngestRunner`; on exit the follower stops and
  the publisher waits for its outstanding acknowledgements.
- :func:`consumer_side`: one :class:`~consumers.processor.EventProcessor` member and, when it has
  one, its SQLite sink on a thread of its own (a sink that must stop stops the member too); on exit
  the member finishes its transaction and leaves the group, then the sink stores what was committed
  last and closes.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.config import ConsumerSettings, IngestSettings
from pipeline.ingest.runner import IngestRunner
from pipeline.ingest.sources import CapturedFrame, Source
from pipeline.kafka.connection import KafkaConnection
from pipeline.kafka.topics import Topics
from pipeline.messages import FrameDetections
from pipeline.publish import DetectionPublisher
from pipeline.serving.client import ClientConfig

if TYPE_CHECKING:  # the ingest side never imports the consumers
    from consumers.processor import EventProcessor
    from consumers.rules import RulesFile
    from consumers.sink import EventSink, EventStore

log = logging.getLogger(__name__)


@contextlib.contextmanager
def ingest_side(conn: KafkaConnection, topics: Topics, sources: list[Source], client: ClientConfig,
                ingest: IngestSettings, *, follow_rollout: bool | None = None,
                on_published: Callable[[CapturedFrame, FrameDetections], None] | None = None,
                ) -> Iterator[IngestRunner]:  # fmt: skip
    """The runner for ``sources``, publishing to ``topics.detections``; ``follow_rollout`` overrides the setting."""
    from pipeline.rollout.follow import RolloutFollower

    publisher = DetectionPublisher(conn, topics.detections, max_message_bytes=ingest.max_message_bytes)
    follow = ingest.follow_rollout if follow_rollout is None else follow_rollout
    follower = RolloutFollower(conn, topics.rollout_state).start() if follow else None
    runner = IngestRunner(sources, client, publisher, max_batch=ingest.max_batch, budget=ingest.budget,
                          in_flight=ingest.in_flight, speed=ingest.speed, rollout=follower,
                          archive_every=ingest.archive_every, topics=topics, on_published=on_published)  # fmt: skip
    try:
        yield runner
    finally:
        if follower is not None:
            follower.stop()
        publisher.close()


@dataclass
class ConsumerSide:
    """A running member and its sink; :meth:`stop` is the one shutdown order (idempotent)."""

    processor: EventProcessor
    sink: EventSink | None = None
    store: EventStore | None = None
    sink_path: Path | None = None
    _member_thread: threading.Thread | None = None
    _sink_thread: threading.Thread | None = None
    _stopped: bool = False

    def start_sink(self) -> None:
        assert self.sink is not None
        # a sink that must stop stops the member too: events would go on while none is stored
        self._sink_thread = threading.Thread(target=self.sink.run, args=(lambda _: self.processor.stop(),),
                                             daemon=True, name="sink")  # fmt: skip
        self._sink_thread.start()

    def run_in_background(self) -> ConsumerSide:
        """Run the member on a thread (the demo and the benchmarks drive ingest meanwhile)."""
        self._member_thread = threading.Thread(target=self.processor.run, daemon=True, name="event-processor")
        self._member_thread.start()
        return self

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.processor.stop()
        if self._member_thread is not None:
            self._member_thread.join(timeout=30)
        self.processor.close()
        if self.sink is not None:
            self.sink.stop()
            if self._sink_thread is not None:
                self._sink_thread.join(timeout=10)
            if self.sink.error is None:
                while self.sink.poll_once(timeout_ms=1000):  # what was committed last
                    pass
            self.sink.close()


@contextlib.contextmanager
def consumer_side(conn: KafkaConnection, topics: Topics, rules: RulesFile, consumer: ConsumerSettings, *,
                  member_id: str, group_id: str | None = None, sink_path: Path | None = None,
                  **processor_options: object) -> Iterator[ConsumerSide]:  # fmt: skip
    """One member of ``group_id`` (default ``consumer.group_id``) and, with ``sink_path``, its sink.

    The sink's group is ``<group>-sink-<member>``; a sink that has to stop (SQLite or Kafka trouble
    past its retries) stops the member, and its error is raised when the block ends.
    """
    from consumers.processor import EventProcessor
    from consumers.sink import EventSink, EventStore

    c, group = consumer, group_id or consumer.group_id
    options = {"session_timeout_s": c.session_timeout_s, "max_poll_records": c.max_poll_records,
               "transaction_timeout_s": c.transaction_timeout_s, "limits": c.limits, "camera_ttl_s": c.camera_ttl_s,
               "stream_takeover_s": c.stream_takeover_s} | processor_options  # fmt: skip
    processor = EventProcessor(conn, rules, topics=topics, group_id=group, member_id=member_id, **options)
    side = ConsumerSide(processor, sink_path=sink_path)
    if sink_path is not None:
        side.store = EventStore(sink_path)
        side.sink = EventSink(conn, topics.events, side.store, group_id=f"{group}-sink-{member_id}")
        side.start_sink()
    try:
        yield side
    finally:
        side.stop()
        if side.store is not None:
            side.store.close()
    if side.sink is not None and side.sink.error is not None:
        raise side.sink.error
