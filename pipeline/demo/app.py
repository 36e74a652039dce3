"""``sparseinst-pipeline demo``: everything on one machine, scored against the simulator, with a report."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from consumers.processor import EventProcessor
from consumers.rules import DEMO_RULES, RulesFile, load_rules
from consumers.scoring import SCORED_TYPES, score_events
from pipeline import rle
from pipeline.apps.common import client_config, progress_line
from pipeline.apps.wiring import consumer_side, ingest_side
from pipeline.config import Settings
from pipeline.data.classes import CLASS_INDEX
from pipeline.ingest.sources import CapturedFrame, Source, SyntheticVehicle, source_for
from pipeline.kafka.topics import Topics, ensure_topics
from pipeline.messages import Event, FrameDetections

log = logging.getLogger(__name__)


@dataclass
class DemoOptions:
    cameras: int = 4
    seconds: float = 10.0
    seed: int = 0
    fps: float = 10.0
    sources: list[str] = field(default_factory=list)
    rules: Path | None = None
    out: Path = Path("runs/demo")
    summary_json: Path | None = None
    realtime: bool = False
    report_frames: int = 12


def _demo_sources(opts: DemoOptions) -> list[Source]:
    if opts.sources:
        return [source_for(uri, f"cam-{i}", vehicle_id="given", keep_images=10) for i, uri in enumerate(opts.sources)]
    vehicles = math.ceil(opts.cameras / 4)
    out = []
    for v in range(vehicles):
        n = min(4, opts.cameras - 4 * v)
        out.append(SyntheticVehicle(f"veh-{v + 1}", opts.seed + v, cameras=n, fps=opts.fps, seconds=opts.seconds,
                                    realtime=opts.realtime, keep_images=10))  # fmt: skip
    return out


def run_demo(settings: Settings, opts: DemoOptions) -> dict:
    from pipeline.local.kafka import LocalKafka
    from pipeline.local.stack import ensure_repository
    from pipeline.local.triton import LocalTriton, LocalTritonConfig

    rules = load_rules(opts.rules or settings.consumer.rules or DEMO_RULES)
    with contextlib.ExitStack() as stack:
        bootstrap = settings.kafka.bootstrap
        if bootstrap is None:
            print("starting the embedded Kafka broker ...", flush=True)
            bootstrap = stack.enter_context(LocalKafka()).bootstrap
        grpc = settings.triton.grpc_url
        if grpc is None:
            print("starting the embedded Triton server (CPU profile) ...", flush=True)
            repo = ensure_repository(settings)
            grpc = stack.enter_context(LocalTriton(LocalTritonConfig(model_repository=repo))).grpc_url
        return _stream_demo(settings, opts, rules, bootstrap, grpc)


def _stream_demo(settings: Settings, opts: DemoOptions, rules: RulesFile, bootstrap: str, grpc: str) -> dict:
    tag = time.strftime("%Y%m%d-%H%M%S")
    topics = Topics(detections=f"demo-{tag}.detections", events=f"demo-{tag}.events")
    conn = settings.kafka.connection(bootstrap)
    ensure_topics(conn, topics, settings.kafka.topics)
    opts.out.mkdir(parents=True, exist_ok=True)
    db = opts.out / "events.sqlite"
    db.unlink(missing_ok=True)
    sources = _demo_sources(opts)
    kept: list[tuple[CapturedFrame, FrameDetections]] = []
    published_at: list[tuple[float, float]] = []  # (wall s since start, latency ms)
    start = time.monotonic()

    def on_published(captured: CapturedFrame, result: FrameDetections) -> None:
        now = time.monotonic()
        published_at.append((now - start, (now - captured.enqueued) * 1000.0))
        kept.append((captured, result))

    total = sum(int(opts.seconds * opts.fps) * len(s.camera_ids) for s in sources) if not opts.sources else None
    with consumer_side(conn, topics, rules, settings.consumer, member_id="demo", group_id=f"demo-{tag}",
                       sink_path=db) as consumer:  # fmt: skip
        processor = consumer.run_in_background().processor
        ingest = ingest_side(conn, topics, sources, client_config(settings, grpc), settings.ingest,
                             follow_rollout=False, on_published=on_published)  # fmt: skip
        with ingest as runner, progress_line(runner.progress, lambda: sum(processor.stats.events.values()), total):
            stats = runner.run()
        counts = runner.publisher.counts
        expected = sum(stats.published.values()) + sum(len(s.camera_ids) for s in sources if s.state.value == "ended")
        deadline = time.monotonic() + 60
        while processor.stats.messages < expected and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
        consumer.stop()
        assert consumer.store is not None
        events = consumer.store.events()

    summary = _summary(stats.summary(), processor, events, sources, counts)
    summary["segments_by_decoder"] = {cam: dict(d) for cam, d in runner.decoders.items()}
    if not opts.sources:
        from pipeline.demo.truth import truth_events

        truth = [e for s in sources for e in truth_events(s.vehicle_id, s.seed, rules, cameras=len(s.camera_ids),
                                                           fps=opts.fps, seconds=opts.seconds)]  # fmt: skip
        scores = score_events(events, truth, tolerance=3, types=SCORED_TYPES)
        summary["event_precision"] = {t: round(s.precision, 3) for t, s in scores.items()}
        summary["event_recall"] = {t: round(s.recall, 3) for t, s in scores.items()}
        summary["truth_events"] = dict(Counter(e.type for e in truth if e.type in SCORED_TYPES))
    summary["headline"] = (f"{summary['frames_published']} frames from {summary['cameras']} cameras, "
                           f"{summary['fps']} frames/s, {len(events)} events")  # fmt: skip
    frames = _report_frames(kept, events, opts.report_frames)
    from pipeline.demo.report import write_demo_report

    report = write_demo_report(opts.out / "report.html", summary=summary, frames=frames, events=events,
                          fps_series=_rate(published_at), latency_series=_latency(published_at))  # fmt: skip
    summary["report"] = str(report)
    summary["events_db"] = str(db)
    if opts.summary_json:
        opts.summary_json.parent.mkdir(parents=True, exist_ok=True)
        opts.summary_json.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _summary(ingest: dict, processor: EventProcessor, events: list, sources: list[Source], counts: Counter) -> dict:
    return {
        "cameras": sum(len(s.camera_ids) for s in sources),
        "frames_read": ingest["frames_read"],
        "frames_published": ingest["frames_published"],
        "frames_dropped": dict(ingest["frames_dropped"]),
        "truncated_frames": counts.get("truncated_frames", 0),
        "fps": ingest["fps"],
        "latency_p50_ms": ingest["latency_p50_ms"],
        "latency_p99_ms": ingest["latency_p99_ms"],
        "events": dict(sorted(Counter(e.type for e in events).items())),
        "dead_letters": processor.stats.dead_letters,
        "sources": [s.describe() for s in sources],
    }


def _rate(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if not points:
        return []
    seconds = np.floor(np.array([p[0] for p in points])).astype(int)
    counts = np.bincount(seconds)
    return [(float(s), float(c)) for s, c in enumerate(counts)]


def _latency(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    by_second: dict[int, list[float]] = {}
    for t, ms in points:
        by_second.setdefault(int(t), []).append(ms)
    return [(float(s), float(np.median(v))) for s, v in sorted(by_second.items())]


def _report_frames(kept: list[tuple[CapturedFrame, FrameDetections]], events: list[Event], n: int) -> list:
    """Frames as ingest published them, evenly over time for every camera, each captioned with the events
    the consumer raised at it (as the sink stored them): the report shows what the pipeline produced."""
    raised: dict[tuple[str, int, int], list[Event]] = defaultdict(list)
    for e in events:
        raised[(e.camera_id, e.stream_epoch, e.frame_index)].append(e)
    by_camera: dict[str, list[tuple[CapturedFrame, FrameDetections]]] = {}
    for captured, result in kept:
        if (captured.image is not None or captured.segment is not None) and result.instances:
            by_camera.setdefault(result.camera_id, []).append((captured, result))
    if not by_camera:
        return []
    per_camera, chosen = max(1, n // len(by_camera)), []
    for items in by_camera.values():
        picks = np.linspace(0, len(items) - 1, min(per_camera, len(items))).round().astype(int)
        chosen += [items[i] for i in sorted(set(picks.tolist()))]
    frames = []
    for captured, result in chosen:
        rows = [(rle.decode(d.mask.model_dump()), CLASS_INDEX.get(d.class_name, 0), d.score, None)
                for d in result.instances]  # fmt: skip
        here = raised.get((result.camera_id, result.stream_epoch, result.frame_index), [])
        said = "; ".join(f"{e.type} {e.track_id.rsplit('#', 1)[-1]}" if e.track_id else e.type for e in here)
        caption = (f"{result.camera_id} frame {result.frame_index} t={result.capture_time:.1f}s, "
                   f"{len(result.instances)} instances" + (f": {said}" if said else ""))  # fmt: skip
        frames.append((_picture(captured), rows, caption))
    return frames


def _picture(captured: CapturedFrame) -> np.ndarray:
    """The frame's RGB picture: kept by the source, or decoded from its segment (only for frames shown)."""
    if captured.image is not None:
        return captured.image
    from pipeline.ingest.segments import decode_segment

    assert captured.segment is not None
    return decode_segment(captured.segment.segment)[captured.frame_index - captured.segment.frame_index]
