"""Live RTSP cameras for real: GStreamer's RTSP server publishes the shared clips on loopback and
``run``'s ingest reads them as segments; one server is SIGKILLed and restarted mid-run.

Four live cameras into a two-core CPU server are far over its capacity, so most segments are
dropped as ``behind`` (oldest first): the test is that every frame read is published or dropped
by reason, that the killed camera reconnects with a new stream epoch, and that frame identity
stays ordered and unique within each epoch.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

from pipeline.ingest.runner import IngestRunner
from pipeline.ingest.sources import VideoSource
from pipeline.local.rtsp import PACKAGES, LocalRtsp, rtsp_available
from pipeline.messages import FrameDetections
from pipeline.publish import DetectionPublisher
from pipeline.serving.client import ClientConfig
from tests.streams import new_topics, read_topic, wait_for

VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "media" / "videos"
# The Intel clips are one group of pictures each, with B-frames: re-encoded as cameras stream (GOP 1 s).
CLIPS = {
    "cam-a": (VIDEOS / "udacity_highway_solidWhiteRight.mp4", False),
    "cam-b": (VIDEOS / "intel_car_detection_overhead_15s.mp4", True),
    "cam-c": (VIDEOS / "intel_person_bicycle_car_overhead_15s.mp4", True),
    "cam-d": (VIDEOS / "udacity_highway_solidWhiteRight.mp4", False),
}
KILLED = "cam-b"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not VIDEOS.is_dir(), reason="the shared media folder is not next to this checkout"),
]


def camera_clip(path: Path, reencode: bool, out: Path) -> Path:
    if not reencode:
        return path
    from pipeline.bench.ingest import make_clip

    return make_clip(out / f"{path.stem}_gop1s.mp4", source=path, seconds=15.0, fps=25, width=768, height=432)


def test_four_live_rtsp_cameras_with_one_stream_killed_and_restarted_account_for_every_frame(kafka, triton, tmp_path):
    assert rtsp_available(), f"GStreamer's RTSP server is missing: 'make setup' installs {PACKAGES}"
    clips = {cam: camera_clip(path, reencode, tmp_path) for cam, (path, reencode) in CLIPS.items()}
    servers = {cam: LocalRtsp({"live": clip}).start() for cam, clip in clips.items()}
    try:
        sources = [VideoSource(cam, servers[cam].url("live"), vehicle_id="fleet", max_reconnects=30, backoff_s=0.2,
                               max_backoff_s=1.0) for cam in CLIPS]  # fmt: skip
        killed = sources[list(CLIPS).index(KILLED)]
        topics = new_topics(kafka.bootstrap)
        publisher = DetectionPublisher(kafka.bootstrap, topics.detections)
        runner = IngestRunner(sources, ClientConfig(url=triton.grpc_url), publisher, max_batch=8, budget=2,
                              topics=topics)  # fmt: skip
        worker = threading.Thread(target=runner.run, daemon=True)
        worker.start()
        wait_for(lambda: runner.stats.published[KILLED] > 0, 90, f"{KILLED}'s first published frames")
        servers[KILLED].kill()  # SIGKILL: the camera's stream dies mid-segment
        time.sleep(1.5)
        servers[KILLED].restart()
        wait_for(lambda: killed.epochs >= 2, 60, f"{KILLED} to reconnect")
        # frames of the new stream on the topic (the old stream's last segments may still be in flight)
        wait_for(lambda: len(_epochs(kafka.bootstrap, topics.detections, KILLED)) >= 2, 120,
                 f"{KILLED}'s frames after restart", every_s=2.0)  # fmt: skip
        wait_for(lambda: all(runner.stats.published[c] for c in CLIPS), 90, "every camera's first published frames")
        runner.stop()
        worker.join(timeout=120)
        assert not worker.is_alive()
        publisher.close()
    finally:
        for server in servers.values():
            server.stop()

    stats = runner.stats
    summary = stats.summary()
    assert summary["frames_unaccounted"] == 0, summary
    for cam in CLIPS:
        dropped = sum(n for (c, _), n in stats.dropped_by_camera.items() if c == cam)
        assert stats.frames_read[cam] == stats.published[cam] + dropped > 0, [s.describe() for s in sources]
        assert stats.published[cam] > 0, cam
    assert killed.reconnects >= 1 and killed.describe()["transport"] == "segments"
    assert set(stats.dropped) <= {"behind", "shutdown"}, stats.dropped  # live cameras over capacity, then the stop

    messages = [m for m in read_topic(kafka.bootstrap, topics.detections, FrameDetections) if not m.end_of_stream]
    by_stream: dict[tuple[str, int], list[int]] = defaultdict(list)
    for m in messages:
        by_stream[(m.camera_id, m.stream_epoch)].append(m.frame_index)
    for cam in CLIPS:
        assert sum(len(v) for (c, _), v in by_stream.items() if c == cam) == stats.published[cam], cam
    for indices in by_stream.values():
        assert indices == sorted(set(indices))  # in order and once within each epoch
    assert len({e for c, e in by_stream if c == KILLED}) >= 2  # the restarted stream is a new epoch


def _epochs(bootstrap: str, topic: str, camera: str) -> set[int]:
    """The stream epochs of ``camera``'s frames published so far."""
    return {m.stream_epoch for m in read_topic(bootstrap, topic, FrameDetections, timeout_ms=1000)
            if m.camera_id == camera and not m.end_of_stream}  # fmt: skip
