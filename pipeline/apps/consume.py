"""``sparseinst-pipeline consume``: one member of the event-processor group, plus its SQLite sink."""

from __future__ import annotations

import logging

from consumers.processor import EventProcessor, default_member_id
from consumers.rules import RulesFile, load_rules
from pipeline.apps.common import addresses, kafka_ready, metrics_endpoint, on_sigterm
from pipeline.apps.wiring import consumer_side
from pipeline.config import Settings

log = logging.getLogger(__name__)


def rules_of(settings: Settings) -> RulesFile:
    return load_rules(settings.consumer.rules) if settings.consumer.rules else RulesFile()


def run_consume(settings: Settings, *, idle_exit_s: float | None = None, on_metrics=None) -> dict:
    """Events exactly once, and this member's sink, until SIGTERM or Ctrl-C (or ``idle_exit_s`` idle)."""
    bootstrap, _ = addresses(settings, need_triton=False)
    conn = kafka_ready(settings, bootstrap)
    c = settings.consumer
    member = c.member_id or default_member_id()
    with consumer_side(conn, settings.kafka.topic_names(), rules_of(settings), c, member_id=member,
                       sink_path=c.sink_path(member)) as side:  # fmt: skip
        processor = side.processor
        with on_sigterm(processor.stop), metrics_endpoint(settings, lambda: _collector(processor)) as port:
            if port is not None and on_metrics is not None:
                on_metrics(port)
            try:
                stats = processor.run(idle_exit_s=idle_exit_s)
            except KeyboardInterrupt:
                stats = processor.stats
    sink = side.sink
    return {"member": member, "messages": stats.messages, "events": dict(stats.events),
            "dead_letters": stats.dead_letters, "dead_by_reason": dict(stats.dead_by_reason),
            "skipped": dict(stats.skipped), "aborted": stats.aborted, "state_trimmed": stats.state_trimmed,
            "cameras_expired": dict(stats.expired), "sink": str(side.sink_path) if side.sink_path else None,
            "sink_dead_letters": dict(sink.dead_letters) if sink else {}}  # fmt: skip


def _collector(processor: EventProcessor):
    from pipeline.metrics import consumer_collector

    return consumer_collector(processor.stats)
