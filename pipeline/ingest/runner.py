"""Run sources -> per-camera queues -> cross-camera batches -> Triton -> Kafka, and count everything.

One reader thread per source (pacing live-like sources on the wall clock), one asyncio loop
that batches across cameras and keeps up to ``in_flight`` requests at Triton. Results are
published in the order the batches were formed, so each camera's frames reach Kafka in order.
Every frame that does not reach Kafka is counted by reason: ``behind`` (a live camera fell
behind; oldest dropped), ``refused`` (the server refused the frame: corrupt, oversized),
``server_error`` (timeouts, unavailability after the retries).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pipeline.errors import InferenceError
from pipeline.ingest.pacing import Pacer
from pipeline.ingest.queues import CameraQueues
from pipeline.ingest.sources import CapturedFrame, Source, SourceState
from pipeline.messages import DeadLetter, FrameDetections
from pipeline.publish import DetectionPublisher
from pipeline.serving.client import ClientConfig, Frame, FrameFailure, SegmentationClient

log = logging.getLogger(__name__)


@dataclass
class IngestStats:
    frames_read: Counter[str] = field(default_factory=Counter)  # camera -> frames
    published: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)  # reason -> frames
    latencies_s: list[float] = field(default_factory=list)  # queue entry -> published
    batches: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def elapsed_s(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    def summary(self) -> dict:
        lat = np.asarray(self.latencies_s) * 1000.0
        published = sum(self.published.values())
        return {
            "frames_read": sum(self.frames_read.values()),
            "frames_published": published,
            "frames_dropped": dict(self.dropped),
            "batches": self.batches,
            "elapsed_s": round(self.elapsed_s, 3),
            "fps": round(published / self.elapsed_s, 2) if self.elapsed_s > 0 else 0.0,
            "latency_p50_ms": round(float(np.percentile(lat, 50)), 1) if lat.size else None,
            "latency_p99_ms": round(float(np.percentile(lat, 99)), 1) if lat.size else None,
        }


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
    ) -> None:
        self.sources, self.client_config, self.publisher = sources, client, publisher
        self.max_batch, self.in_flight, self.speed = max_batch, in_flight, speed
        self.queues = CameraQueues(budget)
        self.stats = IngestStats()
        self.on_published = on_published
        self._readers: list[threading.Thread] = []
        self._refused: Counter[str] = Counter()  # camera -> refused frames not yet reported in a message
        self._stop = threading.Event()

    # ------------------------------------------------------------------------------ readers

    def _read(self, source: Source) -> None:
        pacer = Pacer(self.speed) if source.realtime and not getattr(source, "is_stream", False) else None
        try:
            for frame in source.frames():
                if self._stop.is_set():
                    break
                if pacer is not None:
                    pacer.wait(frame.capture_time, self._stop)
                self.stats.frames_read[frame.camera_id] += 1
                self.queues.put(frame, drop_oldest=source.realtime)
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
            self.stats.finished = time.monotonic()
            self.publisher.flush()
        return self.stats

    def _sources_done(self) -> bool:
        return all(not t.is_alive() for t in self._readers)

    async def _loop(self) -> None:
        pending: deque[tuple[asyncio.Task, list[CapturedFrame]]] = deque()
        async with SegmentationClient(self.client_config) as client:
            while not self._stop.is_set():
                batch = await asyncio.to_thread(self.queues.take_batch, self.max_batch, 0.05)
                if batch:
                    frames = [Frame(f.jpeg, f.camera_id, f.frame_index, f.capture_time, f.vehicle_id) for f in batch]
                    pending.append((asyncio.create_task(client.infer_isolating(frames)), batch))
                    self.stats.batches += 1
                while pending and (pending[0][0].done() or len(pending) >= self.in_flight):
                    await self._publish(*pending.popleft())
                if not batch and not pending and self._sources_done() and self.queues.pending() == 0:
                    break
            while pending:
                await self._publish(*pending.popleft())
        self._end_streams()

    async def _publish(self, task: asyncio.Task, batch: list[CapturedFrame]) -> None:
        try:
            results = await task
        except InferenceError as exc:
            self.stats.dropped["server_error"] += len(batch)
            log.error("batch of %d frames lost: %s", len(batch), exc)
            return
        now = time.monotonic()
        for captured, result in zip(batch, results):
            if isinstance(result, FrameFailure):
                self.stats.dropped["refused"] += 1
                self._refused[captured.camera_id] += 1
                log.warning("camera %s frame %d refused: %s", captured.camera_id, captured.frame_index, result.reason)
                self.publisher.dead_letter(DeadLetter(
                    topic=f"camera:{captured.camera_id}", partition=-1, offset=captured.frame_index,
                    key=captured.camera_id, reason=result.reason, value=f"<{len(captured.jpeg)} bytes of JPEG>",
                ))  # fmt: skip
                continue
            if self._refused[captured.camera_id]:  # the consumers turn this into a camera.health event
                result.decode_errors = self._refused.pop(captured.camera_id)
            self.publisher.publish(result)
            self.stats.published[captured.camera_id] += 1
            self.stats.latencies_s.append(now - captured.enqueued)
            if self.on_published is not None:
                self.on_published(captured, result)

    def _end_streams(self) -> None:
        """Tell the consumers that the cameras of finished sources have ended (they close open tracks)."""
        for source in self.sources:
            if source.state != SourceState.ENDED:
                continue
            for cam in source.camera_ids:
                last = self.stats.frames_read[cam]
                self.publisher.publish(FrameDetections(
                    camera_id=cam, vehicle_id=getattr(source, "vehicle_id", None), frame_index=last,
                    capture_time=last / source.nominal_fps, width=1, height=1, model_name="", model_version="",
                    instances=[], end_of_stream=True,
                ))  # fmt: skip
        self.stats.dropped["behind"] = sum(self.queues.dropped.values())

    def progress(self) -> dict:
        behind = sum(self.queues.dropped.values())  # live count; copied into stats.dropped at the end
        other = sum(v for k, v in self.stats.dropped.items() if k != "behind")
        return {
            "read": sum(self.stats.frames_read.values()),
            "published": sum(self.stats.published.values()),
            "dropped": behind + other,
            "queued": self.queues.pending(),
            "fps": sum(self.stats.published.values()) / max(self.stats.elapsed_s, 1e-9),
        }
