"""``sparseinst-pipeline consume``: one member of the event-processor group, plus its SQLite sink."""

from __future__ import annotations

import logging
import threading

from consumers.processor import EventProcessor, default_member_id
from consumers.rules import RulesFile, load_rules
from consumers.sink import EventSink, EventStore
from pipeline.apps.common import addresses, kafka_ready, metrics_endpoint, on_sigterm
from pipeline.config import Settings

log = logging.getLogger(__name__)


def rules_of(settings: Settings) -> RulesFile:
    return load_rules(settings.consumer.rules) if settings.consumer.rules else RulesFile()


def run_consume(settings: Settings, *, idle_exit_s: float | None = None, on_metrics=None) -> dict:
    """Events exactly once, and this member's sink, until SIGTERM or Ctrl-C (or ``idle_exit_s`` idle)."""
    bootstrap, _ = addresses(settings, need_triton=False)
    conn = kafka_ready(settings, bootstrap)
    topics = settings.kafka.topic_names()
    c = settings.consumer
    member = c.member_id or default_member_id()
    processor = EventProcessor(conn, rules_of(settings), topics=topics, group_id=c.group_id, member_id=member,
                               session_timeout_s=c.session_timeout_s, max_poll_records=c.max_poll_records,
                               transaction_timeout_s=c.transaction_timeout_s, limits=c.limits,
                               camera_ttl_s=c.camera_ttl_s, stream_takeover_s=c.stream_takeover_s)  # fmt: skip
    sink_path = c.sink_path(member)
    sink = store = worker = None
    if sink_path:
        store = EventStore(sink_path)
        sink = EventSink(conn, topics.events, store, group_id=f"{c.group_id}-sink-{member}")
        # a sink that must stop stops the member too: events would go on while none is stored
        worker = threading.Thread(target=sink.run, args=(lambda _: processor.stop(),), daemon=True, name="sink")
        worker.start()

    try:
        with on_sigterm(processor.stop), metrics_endpoint(settings, lambda: _collector(processor)) as port:
            if port is not None and on_metrics is not None:
                on_metrics(port)
            try:
                stats = processor.run(idle_exit_s=idle_exit_s)
            except KeyboardInterrupt:
                stats = processor.stats
    finally:
        processor.close()
        if sink is not None and worker is not None:
            sink.stop()
            worker.join(timeout=10)
            if sink.error is None:
                while sink.poll_once(timeout_ms=1000):  # what was committed last
                    pass
            sink.close()
    if sink is not None and sink.error is not None:
        raise sink.error
    return {"member": member, "messages": stats.messages, "events": dict(stats.events),
            "dead_letters": stats.dead_letters, "dead_by_reason": dict(stats.dead_by_reason),
            "skipped": dict(stats.skipped), "aborted": stats.aborted, "state_trimmed": stats.state_trimmed,
            "cameras_expired": dict(stats.expired), "sink": str(sink_path) if store else None,
            "sink_dead_letters": dict(sink.dead_letters) if sink else {}}  # fmt: skip


def _collector(processor: EventProcessor):
    from pipeline.metrics import consumer_collector

    return consumer_collector(processor.stats)
