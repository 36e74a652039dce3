"""Prometheus endpoints of ``run`` and ``consume``: figures read from the running stats at scrape time.

Ingest (``run``):

- ``sparseinst_ingest_frames_read_total{camera}``
- ``sparseinst_ingest_frames_published_total{camera}`` (acknowledged by the broker)
- ``sparseinst_ingest_frames_dropped_total{camera,reason}`` (behind, refused, server_error, publish_failed, shutdown)
- ``sparseinst_ingest_publish_latency_seconds`` (histogram: queue entry to acknowledgement)
- ``sparseinst_ingest_frames_queued`` (waiting for inference now)

Consumers (``consume``):

- ``sparseinst_consumer_messages_total`` (committed), ``sparseinst_consumer_skipped_total{reason}``
- ``sparseinst_consumer_events_total{type}``, ``sparseinst_consumer_dead_letters_total``
- ``sparseinst_consumer_transactions_total``, ``sparseinst_consumer_transactions_aborted_total``
- ``sparseinst_consumer_lag{partition}`` (messages behind the end of each assigned partition)

Rollout controller (``rollout controller``):

- ``sparseinst_rollout_running`` (1 while a rollout is judged), ``sparseinst_rollout_frames_judged``
- ``sparseinst_rollout_agreement`` (instances matched with the same class, share)
- ``sparseinst_rollout_latency_ms{version,quantile}`` (live and candidate, p50 and p99)
- ``sparseinst_rollout_errors{version}``
- ``sparseinst_rollout_count_diff_mean``, ``sparseinst_rollout_score_drift_mean``
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from consumers.processor import ConsumerStats
    from pipeline.ingest.runner import IngestRunner
    from pipeline.rollout.controller import RolloutController


class _Collector:
    def __init__(self, collect: Callable[[], Iterator]) -> None:
        self.collect = collect


def ingest_collector(runner: IngestRunner) -> _Collector:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    from pipeline.ingest.runner import LATENCY_BUCKETS_S

    def collect() -> Iterator:
        st = runner.stats
        with st.lock:
            read, published = dict(st.frames_read), dict(st.published)
            dropped, buckets, total_s = dict(st.dropped_by_camera), list(st.latency_buckets), st.latency_sum_s
        m = CounterMetricFamily("sparseinst_ingest_frames_read", "frames read from the cameras", labels=["camera"])
        for cam, n in sorted(read.items()):
            m.add_metric([cam], n)
        yield m
        m = CounterMetricFamily("sparseinst_ingest_frames_published", "frames acknowledged by Kafka",
                                labels=["camera"])  # fmt: skip
        for cam, n in sorted(published.items()):
            m.add_metric([cam], n)
        yield m
        m = CounterMetricFamily("sparseinst_ingest_frames_dropped", "frames read and not published, by reason",
                                labels=["camera", "reason"])  # fmt: skip
        for (cam, reason), n in sorted(dropped.items()):
            m.add_metric([cam, reason], n)
        yield m
        cumulative, running = [], 0
        for bound, n in zip([*map(str, LATENCY_BUCKETS_S), "+Inf"], buckets):
            running += n
            cumulative.append((bound, running))
        yield HistogramMetricFamily("sparseinst_ingest_publish_latency_seconds",
                                    "from entering the queue to the broker's acknowledgement",
                                    buckets=cumulative, sum_value=total_s)  # fmt: skip
        yield GaugeMetricFamily("sparseinst_ingest_frames_queued", "frames waiting for inference",
                                value=runner.queues.pending())  # fmt: skip
        m = CounterMetricFamily("sparseinst_ingest_segments", "video segments answered, by the decoder the server "
                                "used", labels=["camera", "decoder"])  # fmt: skip
        for cam, decoders in sorted(list(runner.decoders.items())):
            for decoder, n in sorted(dict(decoders).items()):
                m.add_metric([cam, decoder], n)
        yield m

    return _Collector(collect)


def consumer_collector(stats: ConsumerStats) -> _Collector:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    def collect() -> Iterator:
        yield CounterMetricFamily("sparseinst_consumer_messages", "detection messages committed", value=stats.messages)
        m = CounterMetricFamily("sparseinst_consumer_skipped", "messages skipped (duplicate, stale_stream)",
                                labels=["reason"])  # fmt: skip
        for reason, n in sorted(stats.skipped.items()):
            m.add_metric([reason], n)
        yield m
        m = CounterMetricFamily("sparseinst_consumer_events", "events published", labels=["type"])
        for kind, n in sorted(stats.events.items()):
            m.add_metric([kind], n)
        yield m
        yield CounterMetricFamily("sparseinst_consumer_dead_letters", "records sent to the dead-letter topic",
                                  value=stats.dead_letters)  # fmt: skip
        yield CounterMetricFamily("sparseinst_consumer_transactions", "transactions committed",
                                  value=stats.transactions)  # fmt: skip
        yield CounterMetricFamily("sparseinst_consumer_transactions_aborted", "transactions aborted",
                                  value=stats.aborted)  # fmt: skip
        m = GaugeMetricFamily("sparseinst_consumer_lag", "messages behind the end of the partition",
                              labels=["partition"])  # fmt: skip
        for p, n in sorted(dict(stats.lag).items()):
            m.add_metric([str(p)], n)
        yield m

    return _Collector(collect)


def rollout_collector(controller: RolloutController) -> _Collector:
    from prometheus_client.core import GaugeMetricFamily

    def collect() -> Iterator:
        state = controller.stats.state
        running = state is not None and state.phase == "running"
        yield GaugeMetricFamily("sparseinst_rollout_running", "1 while a rollout is being judged", value=int(running))
        if state is None:
            return
        s = state.judgement.summary()
        simple = (
            ("frames_judged", "frames", "shadow frames judged in the current rollout"),
            ("agreement", "agreement", "instances matched with the same class, share"),
            ("count_diff_mean", "count_diff_mean", "candidate minus live instances per frame"),
            ("score_drift_mean", "score_drift_mean", "candidate minus live score of matched instances"),
        )
        for name, key, text in simple:
            if s[key] is not None:
                yield GaugeMetricFamily(f"sparseinst_rollout_{name}", text, value=float(s[key]))  # type: ignore[arg-type]
        m = GaugeMetricFamily("sparseinst_rollout_latency_ms", "request latency of shadowed frames",
                              labels=["version", "quantile"])  # fmt: skip
        for who in ("live", "candidate"):
            for q in ("p50", "p99"):
                value = s[f"{who}_latency_{q}_ms"]
                if value is not None:
                    m.add_metric([who, q], float(value))  # type: ignore[arg-type]
        yield m
        m = GaugeMetricFamily("sparseinst_rollout_errors", "errors of each version", labels=["version"])
        for who in ("live", "candidate"):
            m.add_metric([who], float(s[f"{who}_errors"] or 0))  # type: ignore[arg-type]
        yield m

    return _Collector(collect)


def serve(collector: _Collector, address: str = "127.0.0.1", port: int = 0) -> tuple[object, int]:
    """Start ``/metrics`` in a background thread; returns (server, bound port). ``server.shutdown()`` stops it."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)  # type: ignore[arg-type]
    server, _thread = start_http_server(port, addr=address, registry=registry)
    return server, server.server_address[1]
