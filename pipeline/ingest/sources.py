"""Camera sources. Each yields :class:`CapturedFrame` objects stamped with camera id, vehicle id,
frame index and capture time, reports its state, and (for streams) reconnects with backoff.

- :class:`SyntheticVehicle`: the simulator's front/right/rear/left cameras of one vehicle, with
  the true instances of every frame (for scoring);
- :class:`VideoSource`: a video file or a stream URL (RTSP, HTTP MJPEG) through OpenCV/FFmpeg;
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
    stream_epoch: int = 0  # the run of the source that read it (set by the ingest runner)


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
    def frames(self) -> Iterator[CapturedFrame]: ...

    def stop(self) -> None:
        self._stop.set()

    def describe(self) -> dict:
        return {"cameras": self.camera_ids, "state": self.state.value, "errors": self.errors,
                "reconnects": self.reconnects}  # fmt: skip


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
    """A video file (as fast as possible, or paced) or a live stream URL (paced, reconnecting)."""

    def __init__(self, camera_id: str, uri: str, *, vehicle_id: str | None = None, realtime: bool | None = None,
                 max_reconnects: int = 10, backoff_s: float = 0.5, max_backoff_s: float = 10.0,
                 keep_images: int = 0) -> None:  # fmt: skip
        super().__init__()
        self.keep_images = keep_images
        self.camera_id, self.uri, self.vehicle_id = camera_id, uri, vehicle_id
        self.is_stream = "://" in uri
        self.realtime = self.is_stream if realtime is None else realtime
        self.max_reconnects, self.backoff_s, self.max_backoff_s = max_reconnects, backoff_s, max_backoff_s
        if not self.is_stream and not Path(uri).is_file():
            raise FileNotFoundError(f"camera {camera_id}: video file not found: {uri}")

    @property
    def camera_ids(self) -> list[str]:
        return [self.camera_id]

    def _open(self) -> cv2.VideoCapture | None:
        cap = cv2.VideoCapture(self.uri)
        if not cap.isOpened():
            cap.release()
            return None
        fps = cap.get(cv2.CAP_PROP_FPS)
        if fps and fps > 0 and np.isfinite(fps):
            self.nominal_fps = float(fps)
        return cap

    def frames(self) -> Iterator[CapturedFrame]:
        index, delay, started = 0, self.backoff_s, time.time()
        while not self._stop.is_set():
            cap = self._open()
            if cap is None:
                if not self.is_stream or self.reconnects >= self.max_reconnects:
                    self.state = SourceState.FAILED
                    log.error("camera %s: cannot open %s; giving up", self.camera_id, self.uri)
                    return
                self._backoff(delay, "cannot open")
                delay = min(delay * 2, self.max_backoff_s)
                continue
            self.state, delay = SourceState.STREAMING, self.backoff_s
            while not self._stop.is_set():
                ok, bgr = cap.read()
                if not ok:
                    break
                stamp = time.time() - started if self.is_stream else index / self.nominal_fps
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                yield CapturedFrame(
                    self.camera_id,
                    self.vehicle_id,
                    index,
                    stamp,
                    encode_jpeg(rgb),
                    image=rgb if self._keep(index) else None,
                )
                index += 1
            cap.release()
            if not self.is_stream:
                self.state = SourceState.ENDED
                return
            if self.reconnects >= self.max_reconnects:
                self.state = SourceState.FAILED
                log.error("camera %s: stream %s lost %d times; giving up", self.camera_id, self.uri, self.reconnects)
                return
            self._backoff(delay, "stream ended")
            delay = min(delay * 2, self.max_backoff_s)

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


def source_for(uri: str, camera_id: str, **kwargs: object) -> Source:
    """A folder of JPEGs, or a video file or stream URL."""
    if "://" not in uri and Path(uri).is_dir():
        return JpegFolder(camera_id, uri, **kwargs)  # type: ignore[arg-type]
    return VideoSource(camera_id, uri, **kwargs)  # type: ignore[arg-type]
