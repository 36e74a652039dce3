"""Run sources -> per-camera queues -> cross-camera batches -> Triton -> Kafka, and count everything.

One reader thread per source (pacing live-like sources on the wall clock), one asyncio loop
that batches across cameras and keeps up to ``in_flight`` requests at Triton. Results are
published in the order the batches were formed, so each camera's frames reach Kafka in order.
A frame counts as published once the broker acknowledged it. Every frame read that is not
published is counted by reason: ``behind`` (a live camera fell behind; oldest dropped),
``refused`` (the server refused the frame: corrupt, oversized), ``server_error`` (timeouts,
unavailability after the retries), ``publish_failed`` (the broker did not acknowledge it) and
``shutdown`` (still waiting when the runner was stopped).

With a rollout running (``rollout``: the state ingest follows), each batch is split by version:
canary cameras go to the candidate's ensemble, the others to live, and a share of live frames is
also sent to the candidate (shadow; its answers go to the shadow topic, never to detections).
A canary batch the candidate fails is answered by live instead and the failure is reported to
the shadow topic, so a frame is published exactly once whatever the candidate does.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from pipeline.archive import FrameArchive
from pipeline.errors import BadAnswerError, InferenceError
from pipeline.ingest.pacing import Pacer
from pipeline.ingest.queues import CameraQueues
from pipeline.ingest.refusals import RefusedFrames
from pipeline.ingest.routing import Planned, Router, ShadowReports, plan
from pipeline.ingest.sources import Captured, CapturedFrame, CapturedSegment, Source, SourceState
from pipeline.kafka.topics import Topics
from pipeline.messages import DeadLetter, FrameDetections
from pipeline.publish import DetectionPublisher
from pipeline.serving.client import ClientConfig, Frame, FrameFailure, FrameId, SegmentationClient, VideoSegment
from pipeline.serving.contract import video_ensemble

log = logging.getLogger(__name__)


LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


@dataclass
class IngestStats:
    """What happened to every frame read: published (acknowledged) or dropped by reason, per camera.

    Updated from the reader threads, the asyncio loop and the producer's I/O thread, hence the lock.
    """

    frames_read: Counter[str] = field(default_factory=Counter)  # camera -> frames
    published: Counter[str] = field(default_factory=Counter)  # camera -> frames acknowledged by the broker
    dropped: Counter[str] = field(default_factory=Counter)  # reason -> frames
    dropped_by_camera: Counter[tuple[str, str]] = field(default_factory=Counter)  # (camera, reason) -> frames
    latencies_s: deque[float] = field(default_factory=lambda: deque(maxlen=200_000))  # queue entry -> acknowledged
    latency_buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_S) + 1))
    latency_sum_s: float = 0.0
    batches: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def read(self, camera: str, n: int = 1) -> None:
        with self.lock:
            self.frames_read[camera] += n

    def drop(self, camera: str, reason: str, n: int = 1) -> None:
        with self.lock:
            self.dropped[reason] += n
            self.dropped_by_camera[camera, reason] += n

    def acknowledged(self, camera: str, latency_s: float) -> None:
        with self.lock:
            self.published[camera] += 1
            self.latencies_s.append(latency_s)
            self.latency_sum_s += latency_s
            self.latency_buckets[bisect.bisect_left(LATENCY_BUCKETS_S, latency_s)] += 1

    @property
    def elapsed_s(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    def summary(self) -> dict:
        with self.lock:
            lat = np.asarray(self.latencies_s) * 1000.0
            published, read = sum(self.published.values()), sum(self.frames_read.values())
            dropped = dict(self.dropped)
        return {
            "frames_read": read,
            "frames_published": published,
            "frames_dropped": dropped,
            "frames_unaccounted": read - published - sum(dropped.values()),
            "batches": self.batches,
            "elapsed_s": round(self.elapsed_s, 3),
            "fps": round(published / self.elapsed_s, 2) if self.elapsed_s > 0 else 0.0,
            "latency_p50_ms": round(float(np.percentile(lat, 50)), 1) if lat.size else None,
            "latency_p99_ms": round(float(np.percentile(lat, 99)), 1) if lat.size else None,
        }


class Answer(NamedTuple):
    """What one request to an ensemble came back with."""

    results: list[FrameDetections | FrameFailure] | None  # None when the request failed
    error: InferenceError | None
    ms: float  # request latency


@dataclass
class _Request:
    """One planned request in flight, with its shadow request beside it."""

    task: asyncio.Task  # -> Answer
    planned: Planned
    shadow: asyncio.Task | None = None  # the shadow frames at the candidate -> Answer


class IngestRunner:
    def __init__(
        self,
        sources: list[Source],
        client: ClientConfig,
        publisher: DetectionPublisher,
        *,
        max_batch: int = 8,
        budget: int = 4,
        in_flight: int = 2,
        speed: float = 1.0,
        on_published: Callable[[CapturedFrame, FrameDetections], None] | None = None,
        rollout: Router | None = None,
        archive_every: int = 0,
        topics: Topics | None = None,
    ) -> None:
        self.sources, self.client_config, self.publisher = sources, client, publisher
        self.max_batch, self.in_flight, self.speed = max_batch, in_flight, speed
        self.queues = CameraQueues(budget, on_drop=lambda camera, n: self.stats.drop(camera, "behind", n))
        self.stats = IngestStats()
        self.on_published = on_published
        topics = topics or Topics()
        self.rollout = rollout
        self.archive = FrameArchive(publisher, topics.archive, archive_every)
        self.shadow_reports = ShadowReports(publisher, topics.shadow)
        self.routed: Counter[str] = Counter()  # version -> frames of it sent for publishing
        self._clients: dict[str, SegmentationClient] = {}
        self._readers: list[threading.Thread] = []
        self._refused = RefusedFrames()
        self.epochs: dict[str, int] = {}  # first camera of a source -> stream epoch of this run
        self._ends: dict[str, tuple[int, int, float]] = {}  # camera -> (epoch, next frame index, its time)
        self.decoders: dict[str, Counter[str]] = {}  # camera -> decoder the server used -> segments
        self._stop = threading.Event()

    # ------------------------------------------------------------------------------ readers

    def _read(self, source: Source) -> None:
        pacer = Pacer(self.speed) if source.realtime and not getattr(source, "is_stream", False) else None
        # one run of this source: frame indices count within it, so a restarted process is a new stream
        epoch = time.time_ns() // 1_000_000
        self.epochs[source.camera_ids[0]] = epoch
        try:
            for item in source.frames():
                if self._stop.is_set():
                    break
                if pacer is not None:
                    pacer.wait(item.ready_time, self._stop)
                item.stream_epoch = item.stream_epoch or epoch  # a stream source stamps each connection itself
                step = 1.0 / source.nominal_fps if source.nominal_fps > 0 else 0.0
                self._ends[item.camera_id] = (item.stream_epoch, item.frame_index + item.frames, item.ready_time + step)
                self.stats.read(item.camera_id, item.frames)
                if not self.queues.put(item, drop_oldest=source.realtime):
                    self.stats.drop(item.camera_id, "shutdown", item.frames)  # read while the runner was stopping
        except Exception:
            source.state = SourceState.FAILED
            log.exception("source %s failed", source.camera_ids)

    def stop(self) -> None:
        self._stop.set()
        for s in self.sources:
            s.stop()
        self.queues.close()

    # ------------------------------------------------------------------------------ main loop

    def run(self) -> IngestStats:
        for source in self.sources:
            t = threading.Thread(target=self._read, args=(source,), name=f"source-{source.camera_ids[0]}", daemon=True)
            t.start()
            self._readers.append(t)
        try:
            asyncio.run(self._loop())
        finally:
            self.stop()
            for reader in self._readers:  # a reader that was mid-read counts what it read as ``shutdown``
                reader.join(timeout=2.0)
            for item in self.queues.drain():  # stopped early (Ctrl-C): what still waited is not lost silently
                self.stats.drop(item.camera_id, "shutdown", item.frames)
            self.publisher.flush()  # published means acknowledged: wait for the outstanding ones
            self.stats.finished = time.monotonic()
        return self.stats

    def _sources_done(self) -> bool:
        return all(not t.is_alive() for t in self._readers)

    async def _loop(self) -> None:
        pending: deque[_Request] = deque()
        try:
            while not self._stop.is_set():
                batch = await asyncio.to_thread(self.queues.take_batch, self.max_batch, 0.05)
                if batch:
                    pending.extend(self._send(batch))
                    self.stats.batches += 1
                while pending and (pending[0].task.done() or len(pending) >= self.in_flight):
                    await self._publish(pending.popleft())
                if not batch and not pending and self._sources_done() and self.queues.pending() == 0:
                    break
            while pending:
                await self._publish(pending.popleft())
        finally:
            for client in self._clients.values():
                await client.close()
        self._end_streams()

    def _client(self, ensemble: str) -> SegmentationClient:
        if ensemble not in self._clients:
            self._clients[ensemble] = SegmentationClient(self.client_config.model_copy(update={"model_name": ensemble}))
        return self._clients[ensemble]

    async def _ask(self, ensemble: str, frames: Sequence[CapturedFrame], segment: CapturedSegment | None = None
                   ) -> Answer:  # fmt: skip
        """``frames`` at the image ensemble ``ensemble``; a segment's frames at its segment ensemble."""
        started = time.perf_counter()
        try:
            if segment is None:
                wire = [Frame(f.jpeg, f.camera_id, f.frame_index, f.capture_time, f.vehicle_id) for f in frames]
                results: list = await self._client(ensemble).infer_isolating(wire)
            else:
                results = await self._ask_segment(video_ensemble(ensemble), frames, segment)
            return Answer(results, None, (time.perf_counter() - started) * 1000)
        except InferenceError as exc:
            return Answer(None, exc, (time.perf_counter() - started) * 1000)

    async def _ask_segment(self, ensemble: str, frames: Sequence[CapturedFrame], captured: CapturedSegment) -> list:
        ids = tuple(FrameId(f.camera_id, f.frame_index, f.capture_time, f.vehicle_id) for f in frames)
        segment = VideoSegment(captured.segment.data, captured.segment.skip, ids)
        results, decoder = await self._client(ensemble).infer_segment_isolating(segment)
        if decoder is not None:
            self.decoders.setdefault(captured.camera_id, Counter())[decoder] += 1
        return results

    def _send(self, batch: list[Captured]) -> list[_Request]:
        """Requests for one batch: by version when a rollout runs, with the shadow request beside live."""
        route = self.rollout.current() if self.rollout is not None else None
        out = []
        for planned in plan(batch, route, self.client_config.model_name):
            req = _Request(asyncio.create_task(self._ask(planned.ensemble, planned.frames, planned.segment)), planned)
            if planned.shadow and route is not None and route.candidate_ensemble:
                req.shadow = asyncio.create_task(self._ask(route.candidate_ensemble, planned.shadow, planned.segment))
            out.append(req)
        return out

    async def _publish(self, req: _Request) -> None:
        p = req.planned
        results, error, ms = await req.task
        if p.candidate and error is not None:  # the candidate failed canary frames: live answers them
            assert p.route is not None
            log.error("candidate %s failed %d canary frames (%s); live %s answers them", p.ensemble,
                      len(p.frames), error, p.route.live_ensemble)  # fmt: skip
            for f in p.frames:
                self.shadow_reports.report(p.route, f, candidate_error=f"{type(error).__name__}: {error}",
                                           candidate_latency_ms=ms)  # fmt: skip
            results, error, ms = await self._ask(p.route.live_ensemble, p.frames, p.segment)
        if error is not None:
            reason = "bad_answer" if isinstance(error, BadAnswerError) else "server_error"
            for captured in p.frames:
                self.stats.drop(captured.camera_id, reason)
            log.error("batch of %d frames lost: %s", len(p.frames), error)
        else:
            assert results is not None
            for captured, result in zip(p.frames, results):
                self._publish_one(captured, result)
            answered = [r for r in results if isinstance(r, FrameDetections)]
            if p.segment is not None and answered:
                self.archive.segment(p.segment, answered[0].decode_errors)
        if req.shadow is not None:
            assert p.route is not None
            shadow = await req.shadow
            self.shadow_reports.compare(p.route, p.frames, results, ms, p.shadow, *shadow)

    def _publish_one(self, captured: CapturedFrame, result: FrameDetections | FrameFailure) -> None:
        if isinstance(result, FrameFailure):
            self.stats.drop(captured.camera_id, "refused")
            self._refused.refused(captured.camera_id)
            log.warning("camera %s frame %d refused: %s", captured.camera_id, captured.frame_index, result.reason)
            seg = captured.segment
            what = f"{len(captured.jpeg)} bytes of JPEG" if seg is None else (
                f"frame {captured.frame_index - seg.frame_index} of a {len(seg.segment.data)}-byte "
                f"{seg.segment.codec} segment")  # fmt: skip
            self.publisher.dead_letter(DeadLetter(
                topic=f"camera:{captured.camera_id}", partition=-1, offset=captured.frame_index,
                key=captured.camera_id, reason=result.reason, error_type="InvalidRequestError", value=f"<{what}>",
            ))  # fmt: skip
            return
        self._refused.report_in(result)
        result.stream_epoch = captured.stream_epoch
        self.routed[result.model_version] += 1
        if captured.segment is None:  # a segment is archived whole, once its frames are published
            self.archive.published(captured.jpeg, captured.camera_id, captured.vehicle_id, captured.stream_epoch,
                                   captured.frame_index, captured.capture_time, result.decode_errors)  # fmt: skip
        self.publisher.publish(result, on_ack=functools.partial(self._acked, captured, result))

    def _acked(self, captured: CapturedFrame, result: FrameDetections, error: BaseException | None) -> None:
        """Runs in the producer's I/O thread once the broker answered for this frame."""
        if error is not None:
            self.stats.drop(captured.camera_id, "publish_failed")
            return
        self.stats.acknowledged(captured.camera_id, time.monotonic() - captured.enqueued)
        if self.on_published is not None:
            self.on_published(captured, result)

    def _end_streams(self) -> None:
        """Tell the consumers that the cameras of finished sources have ended (they close open tracks)."""
        for source in self.sources:
            if source.state != SourceState.ENDED:
                continue
            for cam in source.camera_ids:
                epoch, last, stamp = self._ends.get(cam, (self.epochs.get(source.camera_ids[0], 0), 0, 0.0))
                vehicle = getattr(source, "vehicle_id", None)
                self.archive.ended(cam, vehicle, epoch, last, stamp)
                self.publisher.publish(FrameDetections.end_marker(cam, vehicle, epoch, last, stamp))

    def progress(self) -> dict:
        return {
            "read": sum(self.stats.frames_read.values()),
            "published": sum(self.stats.published.values()),
            "dropped": sum(self.stats.dropped.values()),
            "queued": self.queues.pending(),
            "fps": sum(self.stats.published.values()) / max(self.stats.elapsed_s, 1e-9),
        }
