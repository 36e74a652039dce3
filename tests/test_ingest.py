"""Per-camera budgets, drop-oldest, fair batching, pacing and the message size guard."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest

from pipeline import rle
from pipeline.ingest.pacing import Pacer
from pipeline.ingest.queues import CameraQueues
from pipeline.ingest.routing import plan
from pipeline.ingest.segments import Segment
from pipeline.ingest.sources import CapturedFrame, CapturedSegment
from pipeline.messages import Detection, FrameDetections, RleMask
from pipeline.publish import fit_message


def frame(cam: str, i: int) -> CapturedFrame:
    return CapturedFrame(cam, None, i, i / 10, b"")


def test_a_live_camera_that_falls_behind_loses_its_oldest_frames_and_they_are_counted():
    q = CameraQueues(budget=3)
    for i in range(7):
        q.put(frame("a", i), drop_oldest=True)
    assert q.dropped["a"] == 4
    assert [f.frame_index for f in q.take_batch(8)] == [4, 5, 6]


def segment(cam: str, first: int, frames: int) -> CapturedSegment:
    times = tuple((first + i) / 25 for i in range(frames))
    return CapturedSegment(cam, None, Segment(b"mp4", "mp4", "h264", first, times, 0, 960, 540))


def test_a_live_video_camera_behind_loses_whole_segments_oldest_first_counted_in_frames():
    lost: list[tuple[str, int]] = []
    q = CameraQueues(budget=2, on_drop=lambda cam, n: lost.append((cam, n)))
    for first, n in ((0, 30), (30, 30), (60, 12), (72, 30)):
        q.put(segment("cam", first, n), drop_oldest=True)
    assert lost == [("cam", 30), ("cam", 30)] and q.dropped["cam"] == 60
    assert q.pending() == 42  # frames, not segments
    batch = q.take_batch(8)  # a segment is sent whole even past max_batch frames
    assert [s.frame_index for s in batch] == [60]
    refs = batch[0].frame_refs()
    assert [(r.frame_index, r.capture_time, r.segment) for r in refs[:2]] == [(60, 2.4, batch[0]), (61, 2.44, batch[0])]


def test_a_segment_is_one_request_and_frames_share_theirs():
    planned = plan([frame("jpeg-cam", 0), segment("video-cam", 0, 30), frame("jpeg-cam", 1)], None,
                   "sparseinst_pipeline")  # fmt: skip
    assert [(len(p.frames), p.segment is not None, p.ensemble) for p in planned] == [
        (2, False, "sparseinst_pipeline"), (30, True, "sparseinst_pipeline")]  # fmt: skip


def test_batches_take_cameras_in_turn():
    q = CameraQueues(budget=10)
    for i in range(6):
        q.put(frame("busy", i), drop_oldest=True)
    q.put(frame("quiet-1", 0), drop_oldest=True)
    q.put(frame("quiet-2", 0), drop_oldest=True)
    batch = q.take_batch(4)
    assert [f.camera_id for f in batch] == ["busy", "quiet-1", "quiet-2", "busy"]
    assert [f.frame_index for f in batch if f.camera_id == "busy"] == [0, 1]


def test_a_recorded_source_waits_instead_of_dropping():
    q = CameraQueues(budget=2)
    q.put(frame("file", 0), drop_oldest=False)
    q.put(frame("file", 1), drop_oldest=False)
    blocked = threading.Thread(target=q.put, args=(frame("file", 2),), kwargs={"drop_oldest": False})
    blocked.start()
    time.sleep(0.3)
    assert blocked.is_alive() and q.pending() == 2
    assert [f.frame_index for f in q.take_batch(1)] == [0]
    blocked.join(timeout=2)
    assert not blocked.is_alive() and q.dropped["file"] == 0
    assert [f.frame_index for f in q.take_batch(8)] == [1, 2]


def test_pacing_follows_capture_times():
    pacer = Pacer(speed=2.0)
    start = time.monotonic()
    for t in (0.0, 0.2, 0.4):
        pacer.wait(t)
    assert 0.18 <= time.monotonic() - start < 0.4  # 0.4 s of capture at double speed


def test_an_oversized_frame_keeps_its_best_instances_and_says_how_many_it_lost():
    mask = np.random.default_rng(0).random((360, 640)) < 0.5  # incompressible: a huge RLE
    enc = rle.encode(mask)
    dets = [Detection(class_id=2, class_name="car", score=s, box=(0, 0, 1, 1), area=1, query=q,
                      mask=RleMask(size=(360, 640), counts=enc["counts"]))
            for q, s in enumerate([0.5, 0.9, 0.7, 0.6])]  # fmt: skip
    big = FrameDetections(camera_id="c", frame_index=0, capture_time=0.0, width=640, height=360,
                          model_name="m", model_version="1", instances=dets)  # fmt: skip
    one = len(dets[0].mask.counts)
    value, dropped = fit_message(big, max_bytes=int(2.5 * one))
    kept = FrameDetections.model_validate_json(value)
    assert dropped == 2 and kept.truncated == 2 and len(value) <= 2.5 * one
    assert [d.query for d in kept.instances] == [1, 2]  # the two best, back in query order
    assert fit_message(big, 10**7) == (big.model_dump_json().encode(), 0)


@dataclass
class _Route:
    rollout_id: str = "r"
    live_ensemble: str = "live"
    candidate_ensemble: str | None = "cand"
    canary: frozenset[str] = frozenset({"b"})

    def serves_candidate(self, camera_id: str) -> bool:
        return camera_id in self.canary

    def shadows(self, camera_id: str, frame_index: int) -> bool:
        return frame_index % 2 == 0


@pytest.mark.parametrize(("route", "expected"), [
    (None, [("default", ["a0", "a1", "b0", "b1"], False, [])]),
    (_Route(), [("live", ["a0", "a1"], False, ["a0"]), ("cand", ["b0", "b1"], True, [])]),
    (_Route(candidate_ensemble=None), [("live", ["a0", "a1", "b0", "b1"], False, [])]),  # nothing to canary on
    (_Route(canary=frozenset({"a", "b"})), [("cand", ["a0", "a1", "b0", "b1"], True, [])]),
])  # fmt: skip
def test_a_batch_is_planned_by_version_and_every_frame_is_in_exactly_one_request(route, expected):
    batch = [frame(c, i) for c in "ab" for i in range(2)]
    planned = plan(batch, route, "default")
    name = lambda f: f"{f.camera_id}{f.frame_index}"  # noqa: E731
    assert [
        (p.ensemble, [name(f) for f in p.frames], p.candidate, [name(f) for f in p.shadow]) for p in planned
    ] == expected
    assert sorted(name(f) for p in planned for f in p.frames) == sorted(name(f) for f in batch)
