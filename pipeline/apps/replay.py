"""``sparseinst-pipeline replay``: archived frames through a chosen model version, into separate topics.

Frames come from the frame archive (a time range, optionally some cameras; video cameras' segments
go to the segment ensemble of the same version, which decodes them) with their original identity
(camera, stream epoch, frame index), so the events derived from them get the same ids
as the live ones whenever the model answers the same: a replay with the live version reproduces
the live events, a replay with a candidate shows what it would change. Detections go to
``<detections>.<tag>`` and events to ``<events>.<tag>``; a diff against the live events (or any
events topic) is written as JSON and HTML.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from consumers.camera import CameraStep
from consumers.rules import RulesFile
from pipeline.archive import ArchivedFrame
from pipeline.event_diff import EventDiff, diff_events, write_diff_report
from pipeline.ingest.refusals import RefusedFrames
from pipeline.kafka.connection import KafkaConnection
from pipeline.kafka.scan import scan
from pipeline.kafka.topics import Topics
from pipeline.messages import Event, FrameDetections
from pipeline.publish import DetectionPublisher
from pipeline.serving.client import ClientConfig, Frame, FrameFailure, FrameId, SegmentationClient, VideoSegment
from pipeline.serving.contract import video_ensemble
from pipeline.serving.versions import ensemble_name

log = logging.getLogger(__name__)


@dataclass
class ReplayResult:
    detections: list[FrameDetections] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    refused: int = 0  # frames the server refused (corrupt archive entries), counted into the next frame
    diff: EventDiff | None = None
    report: Path | None = None


def _batches(frames: Iterable[ArchivedFrame], size: int) -> Iterator[list[ArchivedFrame]]:
    batch: list[ArchivedFrame] = []
    for f in frames:
        batch.append(f)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


async def _segment(client: SegmentationClient, f: ArchivedFrame) -> list[FrameDetections | FrameFailure]:
    """An archived segment's frames, one answer each (all refused when the server refuses the segment)."""
    assert f.segment is not None
    ids = tuple(FrameId(f.camera_id, f.frame_index + i, t, f.vehicle_id) for i, t in enumerate(f.segment.times))
    return (await client.infer_segment_isolating(VideoSegment(f.segment.data, f.segment.skip, ids)))[0]


async def _infer(client_config: ClientConfig, frames: Iterable[ArchivedFrame], max_batch: int, result: ReplayResult,
                 progress: tqdm) -> None:  # fmt: skip
    refusals = RefusedFrames()
    video_config = client_config.model_copy(update={"model_name": video_ensemble(client_config.model_name)})
    async with SegmentationClient(client_config) as client, SegmentationClient(video_config) as video:
        for batch in _batches(frames, max_batch):
            images = [f for f in batch if not f.end_of_stream and f.segment is None]
            answers = await client.infer_isolating(
                [Frame(f.jpeg, f.camera_id, f.frame_index, f.capture_time, f.vehicle_id) for f in images]
            ) if images else []  # fmt: skip
            by_id: dict[int, list] = {id(f): [a] for f, a in zip(images, answers)}
            for f in batch:
                if f.segment is not None:
                    by_id[id(f)] = await _segment(video, f)
            for f in batch:
                if f.end_of_stream:
                    result.detections.append(FrameDetections.end_marker(f.camera_id, f.vehicle_id, f.stream_epoch,
                                                                        f.frame_index, f.capture_time))  # fmt: skip
                    continue
                for i, answer in enumerate(by_id[id(f)]):
                    if isinstance(answer, FrameFailure):
                        result.refused += 1
                        refusals.refused(f.camera_id)
                        log.warning("archived frame %s/%d refused: %s", f.camera_id, f.frame_index + i, answer.reason)
                        continue
                    answer.stream_epoch = f.stream_epoch
                    refusals.report_in(answer, already=f.decode_errors if i == 0 else 0)
                    result.detections.append(answer)
            progress.update(sum(max(f.frames, 1) for f in batch))


def derive_events(detections: list[FrameDetections], rules: RulesFile) -> list[Event]:
    """The events of each camera's detections, in order, as the consumers derive them."""
    procs: dict[str, CameraStep] = {}
    events: list[Event] = []
    for det in detections:
        proc = procs.setdefault(det.camera_id, CameraStep(det.camera_id, rules))
        events += proc.consume(det)[0]
    return events


def baseline_events(conn: KafkaConnection, topic: str, detections: list[FrameDetections]) -> list[Event]:
    """The events of ``topic`` about the replayed frames: same camera and stream, frame index in the range."""
    span: dict[tuple[str, int], tuple[int, int]] = {}
    for d in detections:
        key = (d.camera_id, d.stream_epoch)
        lo, hi = span.get(key, (d.frame_index, d.frame_index))
        span[key] = (min(lo, d.frame_index), max(hi, d.frame_index))
    out: list[Event] = []
    for record in scan(conn, topic, committed=True, client_id="sparseinst-replay-baseline"):
        try:
            e = Event.model_validate_json(record.value)
        except ValueError:
            continue  # not an event of ours: nothing to compare
        lo, hi = span.get((e.camera_id, e.stream_epoch), (1, 0))
        if lo <= e.frame_index <= hi:
            out.append(e)
    return out


def run_replay(conn: KafkaConnection | str, topics: Topics, frames: Iterable[ArchivedFrame], *, grpc_url: str,
               version: int, tag: str, rules: RulesFile, out: Path | None = None, baseline_topic: str | None = None,
               max_batch: int = 8, total: int | None = None) -> ReplayResult:  # fmt: skip
    """Replay ``frames`` with network ``version`` into ``<detections>.<tag>`` and ``<events>.<tag>``; diff them."""
    from pipeline.kafka.topics import TopicSpec, ensure_topics

    conn = KafkaConnection.of(conn)
    target = Topics(detections=f"{topics.detections}.{tag}", events=f"{topics.events}.{tag}")
    ensure_topics(conn, target, TopicSpec(partitions=1))
    result = ReplayResult()
    config = ClientConfig(url=grpc_url, model_name=ensemble_name(version))
    with tqdm(total=total, unit="frame", desc=f"replay v{version}", dynamic_ncols=True) as progress:
        asyncio.run(_infer(config, frames, max_batch, result, progress))
    result.events = derive_events(result.detections, rules)
    publisher = DetectionPublisher(conn, target.detections)
    try:
        for det in result.detections:
            publisher.publish(det)
        for e in result.events:
            publisher.send(target.events, e.camera_id, e.model_dump_json().encode(), "events_published")
    finally:
        publisher.close()
    failed = publisher.counts.get("publish_failed", 0)
    if failed:
        log.error("%d replay records not acknowledged by Kafka", failed)
    log.info("replayed %d frames with version %d: %d events into %s", len(result.detections), version,
             len(result.events), target.events)  # fmt: skip
    if baseline_topic:
        base = baseline_events(conn, baseline_topic, result.detections)
        result.diff = diff_events(base, result.events, baseline_name=baseline_topic, replay_name=target.events)
        if out is not None:
            meta = {"version": version, "frames": len(result.detections), "refused": result.refused,
                    "detections_topic": target.detections, "events_topic": target.events}  # fmt: skip
            result.report = write_diff_report(result.diff, out, meta)[1]
    return result
