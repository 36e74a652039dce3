"""Camera sources. Each yields :class:`CapturedFrame` (one JPEG) or :class:`CapturedSegment` (a
video camera's encoded, keyframe-aligned segment) objects stamped with camera id, vehicle id, frame
index and capture time, reports its state, and (for streams) reconnects with backoff.

- :class:`SyntheticVehicle`: the simulator's front/right/rear/left cameras of one vehicle;
- :class:`VideoSource`: a video file or a stream URL (RTSP, HTTP), demuxed into segments by PyAV
  without decoding (the server decodes them); a codec that cannot travel as segments is decoded
  and re-encoded as JPEG frames instead, and the source says so;
- :class:`JpegFolder`: a folder of JPEG files, sent as they are (no re-encoding);
- :class:`ReplayedFrames`: JPEG frames encoded beforehand, replayed for a set of cameras at a given
  rate (benchmarks: nothing is rendered or encoded while the pipeline is measured).
"""

from __future__ import annotations

import abc
import enum
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from pipeline.ingest.segments import DEFAULT_MAX_FRAMES, DEFAULT_MAX_SECONDS, Segment, Segmenter, UnsupportedVideo

log = logging.getLogger(__name__)

JPEG_QUALITY = 90


class SourceState(enum.StrEnum):
    CONNECTING = "connecting"
    STREAMING = "streaming"
    RECONNECTING = "reconnecting"
    ENDED = "ended"
    FAILED = "failed"


@dataclass
class CapturedFrame:
    camera_id: str
    vehicle_id: str | None
    frame_index: int
    capture_time: float
    jpeg: bytes
    image: np.ndarray | None = None  # the RGB frame, kept by sources that have it (for reports)
    enqueued: float = field(default=0.0)  # monotonic time it entered the pipeline (latency)
    stream_epoch: int = 0  # the run of the source that read it (set by the ingest runner unless the source did)
    segment: CapturedSegment | None = None  # the segment holding this frame's pixels (then ``jpeg`` is empty)

    @property
    def frames(self) -> int:
        return 1

    @property
    def ready_time(self) -> float:
        """Stream time at which a live camera has this item to send."""
        return self.capture_time


@dataclass
class CapturedSegment:
    """A video camera's encoded segment: the frames ``segment.first_index`` onwards, decoded by the server."""

    camera_id: str
    vehicle_id: str | None
    segment: Segment
    time_offset: float = 0.0  # added to the segment's stream times: the capture time of the stream's start
    enqueued: float = field(default=0.0)
    stream_epoch: int = 0

    @property
    def frames(self) -> int:
        return self.segment.frames

    @property
    def frame_index(self) -> int:
        return self.segment.first_index

    @property
    def capture_time(self) -> float:
        return self.time_offset + self.segment.times[0]

    @property
    def ready_time(self) -> float:
        return self.time_offset + self.segment.times[-1]  # a segment is complete once its last frame is

    def frame_refs(self) -> list[CapturedFrame]:
        """One :class:`CapturedFrame` per answered frame, pointing back here (identity, latency, archive)."""
        return [CapturedFrame(self.camera_id, self.vehicle_id, self.segment.first_index + i, self.time_offset + t,
                              b"", enqueued=self.enqueued, stream_epoch=self.stream_epoch, segment=self)
                for i, t in enumerate(self.segment.times)]  # fmt: skip


Captured = CapturedFrame | CapturedSegment


def encode_jpeg(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


class Source(abc.ABC):
    """A producer of frames for one or more cameras."""

    realtime: bool = False  # paced by the wall clock (live) rather than as fast as possible
    nominal_fps: float = 10.0
    keep_images: int = 0  # keep the RGB picture of every n-th frame (reports); 0 = none

    def _keep(self, index: int) -> bool:
        return bool(self.keep_images) and index % self.keep_images == 0

    def __init__(self) -> None:
        self.state = SourceState.CONNECTING
        self.errors = 0  # reads or decodes that failed
        self.reconnects = 0
        self._stop = threading.Event()

    @property
    @abc.abstractmethod
    def camera_ids(self) -> list[str]: ...

    @abc.abstractmethod
    def frames(self) -> Iterator[Captured]: ...

    def stop(self) -> None:
        self._stop.set()

    transport = "jpeg"  # what the source sends: JPEG frames, or (video cameras) encoded segments

    def describe(self) -> dict:
        return {"cameras": self.camera_ids, "state": self.state.value, "errors": self.errors,
                "reconnects": self.reconnects, "transport": self.transport}  # fmt: skip


class SyntheticVehicle(Source):
    """One simulated vehicle with its cameras."""

    def __init__(self, vehicle_id: str, seed: int, *, cameras: int = 4, fps: float = 10.0, seconds: float = 10.0,
                 realtime: bool = False, keep_images: int = 0) -> None:  # fmt: skip
        from pipeline.data.synthetic import vehicle_cameras

        super().__init__()
        self.vehicle_id, self.seed, self.seconds = vehicle_id, seed, seconds
        self.nominal_fps, self.realtime, self.keep_images = fps, realtime, keep_images
        self.cameras = vehicle_cameras()[:cameras]

    @property
    def camera_ids(self) -> list[str]:
        return [f"{self.vehicle_id}/{c.name}" for c in self.cameras]

    def frames(self) -> Iterator[CapturedFrame]:
        from pipeline.data.synthetic import iter_synthetic_sequence

        self.state = SourceState.STREAMING
        steps = iter_synthetic_sequence(self.seed, cameras=self.cameras, fps=self.nominal_fps, seconds=self.seconds)
        for index, frames in enumerate(steps):
            if self._stop.is_set():
                break
            for cam_id, f in zip(self.camera_ids, frames):
                yield CapturedFrame(
                    camera_id=cam_id, vehicle_id=self.vehicle_id, frame_index=index, capture_time=f.time_s,
                    jpeg=encode_jpeg(f.image), image=f.image if self._keep(index) else None,
                )  # fmt: skip
        self.state = SourceState.ENDED


class VideoSource(Source):
    """A video file (as fast as possible, or paced) or a live stream URL (paced, reconnecting), as segments.

    Each connection to a stream is a new stream epoch: its frame indices start again at 0 (the
    consumers treat it as a restarted camera); capture times are seconds since the source started.
    ``transport`` says what the camera sends:
    ``segments`` (the encoded stream, decoded in Triton) or ``jpeg`` (decoded here and re-encoded:
    asked for, for a server without the segment ensemble, or forced by a codec that cannot travel
    as segments).
    """

    def __init__(self, camera_id: str, uri: str, *, vehicle_id: str | None = None, realtime: bool | None = None,
                 max_reconnects: int = 10, backoff_s: float = 0.5, max_backoff_s: float = 10.0,
                 keep_images: int = 0, max_segment_frames: int = DEFAULT_MAX_FRAMES,
                 max_segment_s: float = DEFAULT_MAX_SECONDS, open_timeout_s: float = 10.0,
                 transport: str = "segments") -> None:  # fmt: skip
        super().__init__()
        self.keep_images = keep_images
        self.camera_id, self.uri, self.vehicle_id = camera_id, uri, vehicle_id
        self.is_stream = "://" in uri
        self.realtime = self.is_stream if realtime is None else realtime
        self.max_reconnects, self.backoff_s, self.max_backoff_s = max_reconnects, backoff_s, max_backoff_s
        self.max_segment_frames, self.max_segment_s, self.open_timeout_s = (max_segment_frames, max_segment_s,
                                                                           open_timeout_s)  # fmt: skip
        if transport not in ("segments", "jpeg"):
            raise ValueError(f"camera {camera_id}: transport must be 'segments' or 'jpeg', got {transport!r}")
        self.transport = transport
        self.codec: str | None = None
        self.epochs = 0  # connections that delivered a stream
        self.skipped_packets = 0  # packets before a connection's first keyframe (undecodable, never frames)
        if not self.is_stream and not Path(uri).is_file():
            raise FileNotFoundError(f"camera {camera_id}: video file not found: {uri}")

    @property
    def camera_ids(self) -> list[str]:
        return [self.camera_id]

    def describe(self) -> dict:
        return {**super().describe(), "codec": self.codec, "epochs": self.epochs,
                "packets_before_keyframe": self.skipped_packets}  # fmt: skip

    def _open(self) -> object | None:
        from pipeline.ingest.segments import open_video

        try:
            container = open_video(self.uri, timeout_s=self.open_timeout_s)
        except Exception as exc:  # FFmpeg's errors for refused, missing or unparsable streams
            log.debug("camera %s: open %s failed: %s", self.camera_id, self.uri, exc)
            return None
        if not container.streams.video:
            container.close()
            log.error("camera %s: %s has no video stream", self.camera_id, self.uri)
            return None
        rate = container.streams.video[0].average_rate
        if rate and float(rate) > 0:
            self.nominal_fps = float(rate)
        return container

    def frames(self) -> Iterator[Captured]:
        delay, started = self.backoff_s, time.time()
        while not self._stop.is_set():
            container = self._open()
            if container is None:
                if not self.is_stream or self.reconnects >= self.max_reconnects:
                    self.state = SourceState.FAILED
                    log.error("camera %s: cannot open %s; giving up", self.camera_id, self.uri)
                    return
                self._backoff(delay, "cannot open")
                delay = min(delay * 2, self.max_backoff_s)
                continue
            self.state, delay = SourceState.STREAMING, self.backoff_s
            epoch = time.time_ns() // 1_000_000 if self.is_stream else 0  # 0: the ingest runner stamps its own
            offset = time.time() - started if self.is_stream else 0.0
            self.epochs += 1
            try:
                yield from self._read(container, epoch, offset)
            except Exception as exc:  # a stream that breaks mid-read (network, server killed)
                self.errors += 1
                log.warning("camera %s: stream %s broke: %s", self.camera_id, self.uri, exc)
            finally:
                container.close()
            if not self.is_stream:
                self.state = SourceState.ENDED
                return
            if self._stop.is_set():
                return
            if self.reconnects >= self.max_reconnects:
                self.state = SourceState.FAILED
                log.error("camera %s: stream %s lost %d times; giving up", self.camera_id, self.uri, self.reconnects)
                return
            self._backoff(delay, "stream ended")
            delay = min(delay * 2, self.max_backoff_s)

    def _read(self, container: object, epoch: int, offset: float) -> Iterator[Captured]:
        stream = container.streams.video[0]  # type: ignore[attr-defined]
        self.codec = stream.codec_context.name
        if self.transport == "jpeg":
            yield from self._decoded(container, stream, epoch, offset)
            return
        try:
            segmenter = Segmenter(stream, max_frames=self.max_segment_frames, max_seconds=self.max_segment_s)
        except UnsupportedVideo as exc:
            self.transport = "jpeg"
            log.warning("camera %s: %s; decoding here and sending JPEG frames", self.camera_id, exc)
            yield from self._decoded(container, stream, epoch, offset)
            return
        try:
            for packet in container.demux(stream):  # type: ignore[attr-defined]
                if self._stop.is_set():
                    return
                for segment in segmenter.push(packet):
                    yield CapturedSegment(self.camera_id, self.vehicle_id, segment, offset, stream_epoch=epoch)
        except Exception as exc:  # FFmpeg's errors when a stream breaks (server gone, network): keep what came
            self.errors += 1
            log.warning("camera %s: stream %s broke: %s", self.camera_id, self.uri, exc)
        finally:
            self.skipped_packets += segmenter.skipped_before_keyframe
        for segment in segmenter.flush():  # end of file or stream: the group so far decodes from its keyframe
            yield CapturedSegment(self.camera_id, self.vehicle_id, segment, offset, stream_epoch=epoch)

    def _decoded(self, container: object, stream: object, epoch: int, offset: float) -> Iterator[CapturedFrame]:
        base = None
        for index, frame in enumerate(container.decode(stream)):  # type: ignore[attr-defined]
            if self._stop.is_set():
                return
            stamp = float(frame.time or 0.0)
            base = stamp if base is None else base
            rgb = frame.to_ndarray(format="rgb24")
            yield CapturedFrame(self.camera_id, self.vehicle_id, index, offset + stamp - base, encode_jpeg(rgb),
                                image=rgb if self._keep(index) else None, stream_epoch=epoch)  # fmt: skip

    def _backoff(self, delay: float, why: str) -> None:
        self.state = SourceState.RECONNECTING
        self.reconnects += 1
        self.errors += 1
        log.warning("camera %s: %s (%s); reconnect %d/%d in %.1f s", self.camera_id, why, self.uri,
                    self.reconnects, self.max_reconnects, delay)  # fmt: skip
        self._stop.wait(delay)


class JpegFolder(Source):
    """The ``*.jpg``/``*.jpeg`` files of a folder in name order, at ``fps`` (capture time = index / fps)."""

    def __init__(self, camera_id: str, folder: str | Path, *, vehicle_id: str | None = None, fps: float = 10.0,
                 realtime: bool = False, keep_images: int = 0) -> None:  # fmt: skip
        super().__init__()
        self.keep_images = keep_images
        self.camera_id, self.folder, self.vehicle_id = camera_id, Path(folder), vehicle_id
        self.nominal_fps, self.realtime = fps, realtime
        if not self.folder.is_dir():
            raise FileNotFoundError(f"camera {camera_id}: folder not found: {folder}")

    @property
    def camera_ids(self) -> list[str]:
        return [self.camera_id]

    def frames(self) -> Iterator[CapturedFrame]:
        self.state = SourceState.STREAMING
        files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
        for index, path in enumerate(files):
            if self._stop.is_set():
                break
            data = path.read_bytes()
            image = None
            if self._keep(index):
                bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
                image = None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            yield CapturedFrame(self.camera_id, self.vehicle_id, index, index / self.nominal_fps, data, image=image)
        self.state = SourceState.ENDED


class ReplayedFrames(Source):
    """``count`` frames per camera from ``jpegs`` (camera id -> encoded frames, reused in turn), at ``fps`` each."""

    def __init__(self, vehicle_id: str, jpegs: dict[str, list[bytes]], *, count: int, fps: float = 10.0,
                 realtime: bool = False) -> None:  # fmt: skip
        super().__init__()
        if not jpegs or not all(jpegs.values()):
            raise ValueError("replayed frames: every camera needs at least one frame")
        self.vehicle_id, self.jpegs, self.count = vehicle_id, jpegs, count
        self.nominal_fps, self.realtime = fps, realtime

    @property
    def camera_ids(self) -> list[str]:
        return list(self.jpegs)

    def frames(self) -> Iterator[CapturedFrame]:
        self.state = SourceState.STREAMING
        for index in range(self.count):
            if self._stop.is_set():
                break
            for camera_id, frames in self.jpegs.items():
                yield CapturedFrame(camera_id, self.vehicle_id, index, index / self.nominal_fps,
                                    frames[index % len(frames)])  # fmt: skip
        self.state = SourceState.ENDED


VIDEO_ONLY = ("max_segment_s", "max_segment_frames", "transport")


def source_for(uri: str, camera_id: str, **kwargs: object) -> Source:
    """A folder of JPEGs, or a video file or stream URL (sent as segments)."""
    if "://" not in uri and Path(uri).is_dir():
        folder_args = {k: v for k, v in kwargs.items() if k not in VIDEO_ONLY}
        return JpegFolder(camera_id, uri, **folder_args)  # type: ignore[arg-type]
    return VideoSource(camera_id, uri, **kwargs)  # type: ignore[arg-type]
