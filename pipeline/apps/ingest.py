"""``sparseinst-pipeline run``: this shard's cameras through Triton to the detections topic."""

from __future__ import annotations

import logging

from pipeline.apps.common import addresses, client_config, kafka_ready, metrics_endpoint, on_sigterm, progress_line
from pipeline.apps.wiring import ingest_side
from pipeline.config import Settings
from pipeline.errors import ConfigError
from pipeline.ingest.runner import IngestRunner
from pipeline.ingest.sources import Source, SyntheticVehicle, source_for

log = logging.getLogger(__name__)


def build_sources(settings: Settings, *, shard: int = 0, shards: int = 1) -> list[Source]:
    """The configured cameras of this shard (camera ``i`` belongs to shard ``i % shards``)."""
    if not 0 <= shard < shards:
        raise ConfigError(f"shard must be in 0..{shards - 1}, got {shard}")
    if shards > len(settings.cameras):
        raise ConfigError(f"{shards} shards for {len(settings.cameras)} configured cameras: some shards would be idle")
    sources: list[Source] = []
    for i, cam in enumerate(settings.cameras):
        if i % shards != shard:
            continue
        if cam.synthetic_seed is not None:
            sources.append(SyntheticVehicle(cam.vehicle_id or cam.id or f"sim-{i}", cam.synthetic_seed,
                                            cameras=cam.cameras, fps=cam.fps, seconds=cam.seconds,
                                            realtime=bool(cam.realtime)))  # fmt: skip
        else:
            assert cam.uri is not None and cam.id is not None
            sources.append(source_for(cam.uri, cam.id, vehicle_id=cam.vehicle_id, realtime=cam.realtime,
                                      max_segment_s=cam.max_segment_s, transport=cam.transport))  # fmt: skip
    return sources


def run_ingest(settings: Settings, *, shard: int = 0, shards: int = 1, on_metrics=None) -> dict:
    """Stream this shard's cameras until they end, SIGTERM or Ctrl-C; returns the figures.

    Every frame read is either published (acknowledged by the broker) or dropped with a reason;
    on a stop, what was waiting is counted as ``shutdown`` and outstanding sends are awaited.
    """
    bootstrap, grpc = addresses(settings)
    assert grpc is not None
    sources = build_sources(settings, shard=shard, shards=shards)
    if not sources:
        raise ConfigError("no cameras for this shard: add 'cameras' to the settings")
    conn = kafka_ready(settings, bootstrap)
    side = ingest_side(conn, settings.kafka.topic_names(), sources, client_config(settings, grpc), settings.ingest)
    with side as runner, on_sigterm(runner.stop), metrics_endpoint(settings, lambda: _collector(runner)) as port:
        if port is not None and on_metrics is not None:
            on_metrics(port)
        with progress_line(runner.progress):
            try:
                stats = runner.run()
            except KeyboardInterrupt:
                runner.stop()
                stats = runner.stats
    return {**stats.summary(), "frames_by_version": dict(runner.routed), "sources": [s.describe() for s in sources],
            "segments_by_decoder": {cam: dict(d) for cam, d in runner.decoders.items()},
            **runner.publisher.counts}  # fmt: skip


def _collector(runner: IngestRunner):
    from pipeline.metrics import ingest_collector

    return ingest_collector(runner)
