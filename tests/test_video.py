"""Video cameras travel as keyframe-aligned encoded segments and are decoded inside Triton.

The segmenter is checked against a full decode of the shared clips (every frame once, in order,
with its time); the ``sparseinst_video`` ensemble of the CPU profile is checked against the image
ensemble on the very frames its decoder produced (FFmpeg for H.264, DALI's CPU decoder for VP9).
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from pipeline import rle
from pipeline.errors import InvalidRequestError
from pipeline.ingest.segments import Segment, decode_segment, iter_segments
from pipeline.serving import contract
from pipeline.serving.client import ClientConfig, Frame, FrameId, SegmentationClient, VideoSegment

VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "media" / "videos"
H264 = VIDEOS / "udacity_highway_solidWhiteRight.mp4"  # 960x540, 25 fps, GOP 30
VP9 = VIDEOS / "udacity_highway_solidWhiteRight_vp9.webm"  # GOPs of 128 and 93 frames
MJPEG = VIDEOS / "udacity_highway_solidWhiteRight_mjpeg.avi"
B_FRAMES = VIDEOS / "intel_car_detection_overhead_15s.mp4"  # H.264 with B-frames and GOPs over 32

pytestmark = pytest.mark.skipif(not VIDEOS.is_dir(), reason="the shared media folder is not next to this checkout")


def full_decode(path: Path) -> tuple[list[np.ndarray], list[float]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames, times = [], []
        for f in container.decode(stream):
            frames.append(f.to_ndarray(format="rgb24"))
            times.append(float(f.pts * stream.time_base))
    return frames, [t - times[0] for t in times]


@pytest.mark.parametrize("path", [H264, VP9, MJPEG, B_FRAMES], ids=["h264", "vp9", "mjpeg", "h264-bframes"])
def test_segments_hold_every_frame_once_in_order_and_each_decodes_alone(path):
    frames, times = full_decode(path)
    segments = list(iter_segments(str(path), max_frames=32))
    assert all(1 <= s.frames <= 32 for s in segments)
    assert [s.first_index for s in segments] == list(np.cumsum([0] + [s.frames for s in segments[:-1]]))
    assert sum(s.frames for s in segments) == len(frames)
    got_times = [t for s in segments for t in s.times]
    assert got_times == pytest.approx(times, abs=1e-6)
    for s in segments[:3] + segments[-1:]:  # each decodes on its own, lead-in dropped, to the full decode's pixels
        decoded = decode_segment(s)
        assert len(decoded) == s.frames
        for i, image in enumerate(decoded):
            assert np.array_equal(image, frames[s.first_index + i]), (s.describe(), i)


def test_long_groups_are_cut_into_pieces_that_repeat_the_group_from_its_keyframe():
    segments = list(iter_segments(str(VP9), max_frames=32))
    assert [s.skip for s in segments[:5]] == [0, 32, 64, 96, 0]  # the first group has 128 frames
    assert segments[1].decoded_frames == 64
    intra = list(iter_segments(str(MJPEG), max_frames=32, max_seconds=1.0))
    assert {s.frames for s in intra[:-1]} == {25}  # every frame a keyframe: grouped by the 1 s limit (25 fps)


def test_a_segment_is_far_smaller_than_the_jpegs_of_its_frames():
    segment = next(iter(iter_segments(str(H264))))
    jpegs = sum(len(cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])[1])
                for f in decode_segment(segment))  # fmt: skip
    assert len(segment.data) * 2 < jpegs


# ---------------------------------------------------------------------------------------------- in Triton


def dali_cpu_frames(segment: Segment) -> list[np.ndarray]:
    """The frames DALI's CPU video decoder makes of a segment (what the server's VP9 path resizes)."""
    from nvidia.dali import fn, pipeline_def, types

    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def decode():
        return fn.decoders.video(fn.external_source(name="s", dtype=types.UINT8, ndim=1), device="cpu")

    pipe = decode()
    pipe.build()
    pipe.feed_input("s", [np.frombuffer(segment.data, np.uint8)])
    (out,) = pipe.run()
    return list(out.as_array()[0][segment.skip :])


def jpeg(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return buf.tobytes()


def ids(segment: Segment, camera: str) -> tuple[FrameId, ...]:
    return tuple(FrameId(camera, segment.first_index + i, 100.0 + t, "v1") for i, t in enumerate(segment.times))


def mask_iou(a, b) -> float:
    a, b = rle.decode(a.mask.model_dump()), rle.decode(b.mask.model_dump())
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def image_path_on_pixels(url: str, repository: Path, frames: list[np.ndarray], identity) -> list:
    """The image path from the decoded pixels on: its DALI resize-normalise-pad, then the served network and
    postprocess models (a JPEG round trip would change the pixels the two paths are compared on)."""
    import tritonclient.grpc as grpcclient

    from dali.preprocess import build_pipeline
    from pipeline.serving.client import decode_results
    from pipeline.serving.repository import preprocess_params, read_spec

    pipe = build_pipeline("cpu", preprocess_params(read_spec(repository)), batch_size=len(frames), source="frames")
    pipe.build()
    pipe.feed_input("decoded", frames)
    images, original, resized = (out.as_array() for out in pipe.run())
    client = grpcclient.InferenceServerClient(url)

    def call(model: str, tensors: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        inputs = []
        for name, arr in tensors.items():
            inputs.append(grpcclient.InferInput(name, list(arr.shape), "FP32" if arr.dtype == np.float32 else "INT32"))
            inputs[-1].set_data_from_numpy(arr)
        answer = client.infer(model, inputs, outputs=[grpcclient.InferRequestedOutput(n) for n in outputs])
        return {n: answer.as_numpy(n) for n in outputs}

    net = call(contract.NETWORK, {"images": images}, ["kept_scores", "kept_masks", "kept_queries"])
    post = call(contract.POSTPROCESS, {"class_scores": net["kept_scores"], "mask_logits": net["kept_masks"],
                                       "queries": net["kept_queries"],
                                       "original_size": original.astype(np.int32),
                                       "resized_size": resized.astype(np.int32)},
                [t.name for t in contract.RESULTS])  # fmt: skip
    client.close()
    return decode_results(post, identity, contract.ENSEMBLE, "1")


async def through_the_video_ensemble(url: str, segment: Segment, camera: str):
    async with SegmentationClient(ClientConfig(url=url, model_name=contract.VIDEO_ENSEMBLE, timeout_s=120)) as c:
        return await c.infer_segment(VideoSegment(segment.data, segment.skip, ids(segment, camera)))


async def through_the_image_ensemble(url: str, frames: list[np.ndarray], camera: str):
    async with SegmentationClient(ClientConfig(url=url, timeout_s=120)) as client:
        return await client.infer([Frame(jpeg(f), camera, i, 0.0) for i, f in enumerate(frames)])


@pytest.mark.slow
@pytest.mark.parametrize(("path", "piece", "decoder"), [(H264, 0, "ffmpeg"), (VP9, 1, "dali-cpu")],
                         ids=["h264-ffmpeg", "vp9-dali"])  # fmt: skip
def test_the_video_ensemble_equals_the_image_path_on_the_same_decoded_frames(triton, cpu_repository, path, piece,
                                                                            decoder):  # fmt: skip
    segment = list(iter_segments(str(path), max_frames=6))[piece]  # the VP9 piece has a lead-in of 6 frames
    assert (segment.skip > 0) == (piece > 0)
    frames = decode_segment(segment) if decoder == "ffmpeg" else dali_cpu_frames(segment)
    got, used = asyncio.run(through_the_video_ensemble(triton.grpc_url, segment, "cam-v"))
    assert used == decoder
    assert [(d.camera_id, d.vehicle_id, d.frame_index) for d in got] == [
        ("cam-v", "v1", segment.first_index + i) for i in range(segment.frames)
    ]
    assert [d.capture_time for d in got] == pytest.approx([100.0 + t for t in segment.times])
    expected = image_path_on_pixels(triton.grpc_url, cpu_repository, frames, ids(segment, "cam-v"))
    compared = 0
    for mine, ref in zip(got, expected, strict=True):
        assert (mine.height, mine.width) == (ref.height, ref.width) == (segment.height, segment.width)
        assert [d.query for d in mine.instances] == [d.query for d in ref.instances]
        for a, b in zip(mine.instances, ref.instances):
            assert a.class_id == b.class_id and a.score == pytest.approx(b.score, abs=1e-5)
            assert mask_iou(a, b) >= 0.99, (mine.frame_index, a.query, mask_iou(a, b))
            compared += 1
    assert compared >= 2 * segment.frames, "too few instances to make the comparison meaningful"
    # The same frames as JPEGs through the image ensemble: the JPEG round trip moves mask borders of this
    # small model by a few per cent, but the same objects are found in the same frames (no frame shifted).
    through_jpeg = asyncio.run(through_the_image_ensemble(triton.grpc_url, frames, "cam-v"))
    for mine, ref in zip(got, through_jpeg, strict=True):
        big = [d for d in ref.instances if d.area >= 5000 and d.score >= 0.4]
        ours = {d.query: d for d in mine.instances}
        assert big and all(d.query in ours and mask_iou(ours[d.query], d) >= 0.9 for d in big), mine.frame_index


@pytest.mark.slow
def test_a_corrupt_segment_is_refused_with_a_reason_and_the_server_goes_on(triton, tmp_path):
    segment = next(iter(iter_segments(str(H264), max_frames=2)))
    broken = bytearray(segment.data)
    broken[len(broken) // 3 : len(broken) // 3 + 4096] = b"\x00" * 4096

    async def ask(data: bytes) -> list:
        async with SegmentationClient(ClientConfig(url=triton.grpc_url, model_name=contract.VIDEO_ENSEMBLE,
                                                   timeout_s=60)) as client:  # fmt: skip
            return (await client.infer_segment(VideoSegment(data, 0, ids(segment, "cam-x"))))[0]

    for bad in (b"not a video at all", bytes(broken[:200])):
        with pytest.raises(InvalidRequestError, match="segment"):
            asyncio.run(ask(bad))
    too_long = clip_head(H264, tmp_path / "long.mp4", 45).read_bytes()  # 45 frames: more than one request's 32
    with pytest.raises(InvalidRequestError, match="answers for 45"):
        asyncio.run(ask(too_long))
    assert len(asyncio.run(ask(segment.data))) == segment.frames


@pytest.mark.slow
def test_bench_ingest_reports_both_paths_on_a_1080p_clip(tmp_path):
    import json

    from pipeline.cli import main

    out = tmp_path / "ingest.json"
    args = ["--source", str(H264), "--clip", str(tmp_path / "clip.mp4"), "--seconds", "10", "--json", str(out)]
    assert main(["bench", "ingest", *args]) == 0
    figures = json.loads(out.read_text())
    size = (figures["ingest_frame_width"], figures["ingest_frame_height"], figures["ingest_frames"])
    assert size == (1920, 1080, 300)
    for key in ("ingest_cpu_ms_per_frame", "ingest_bytes_per_frame"):
        assert set(figures[key]) == {"decode_reencode", "segments"} and min(figures[key].values()) > 0
    ratio = figures["ingest_cpu_ms_per_frame"]["decode_reencode"] / figures["ingest_cpu_ms_per_frame"]["segments"]
    assert figures["ingest_cpu_ratio"] == pytest.approx(ratio, rel=0.01)


# ---------------------------------------------------------------------------------------------- through ingest


def clip_head(src: Path, dst: Path, frames: int) -> Path:
    """The first ``frames`` packets of ``src`` remuxed into ``dst`` (streams without B-frames: the first frames)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for i, packet in enumerate(inp.demux(inp.streams.video[0])):
            if i >= frames or packet.size == 0:
                break
            packet.stream = stream
            out.mux(packet)
    return dst


@pytest.mark.slow
def test_video_cameras_stream_as_segments_and_every_frame_is_published_once(kafka, triton, tmp_path):
    from pipeline.archive import read_archive
    from pipeline.ingest.runner import IngestRunner
    from pipeline.ingest.sources import VideoSource
    from pipeline.messages import FrameDetections
    from pipeline.publish import DetectionPublisher
    from tests.streams import read_topic

    lengths = {"cam-h264": 45, "cam-vp9": 40}
    cameras = [VideoSource("cam-h264", str(clip_head(H264, tmp_path / "h264.mp4", 45)), vehicle_id="v1"),
               VideoSource("cam-vp9", str(clip_head(VP9, tmp_path / "vp9.webm", 40)), vehicle_id="v1",
                           max_segment_frames=16)]  # fmt: skip
    from pipeline.kafka.topics import Topics, ensure_topics

    tag = uuid.uuid4().hex[:8]  # the archive too: not the session's shared default topic
    topics = Topics(detections=f"vid-{tag}", events=f"vid-{tag}.events", archive=f"vid-{tag}.archive")
    ensure_topics(kafka.bootstrap, topics)
    publisher = DetectionPublisher(kafka.bootstrap, topics.detections)
    runner = IngestRunner(cameras, ClientConfig(url=triton.grpc_url, timeout_s=120), publisher, max_batch=8,
                          archive_every=1, topics=topics)  # fmt: skip
    stats = runner.run()
    publisher.close()
    assert dict(stats.frames_read) == dict(stats.published) == lengths
    assert not any(stats.dropped.values()) and stats.summary()["frames_unaccounted"] == 0
    assert {c: dict(d) for c, d in runner.decoders.items()} == {"cam-h264": {"ffmpeg": 2}, "cam-vp9": {"dali-cpu": 3}}
    assert [c.describe()["transport"] for c in cameras] == ["segments", "segments"]

    messages = read_topic(kafka.bootstrap, topics.detections, FrameDetections)
    for camera, n in lengths.items():
        mine = [m for m in messages if m.camera_id == camera]
        frames, ends = [m for m in mine if not m.end_of_stream], [m for m in mine if m.end_of_stream]
        assert [m.frame_index for m in frames] == list(range(n))
        assert [m.capture_time for m in frames] == pytest.approx([i / 25 for i in range(n)], abs=1e-6)
        assert all(m.model_name == contract.VIDEO_ENSEMBLE and m.vehicle_id == "v1" for m in frames)
        assert len({m.stream_epoch for m in mine}) == 1 and [e.frame_index for e in ends] == [n]
        assert (frames[0].width, frames[0].height) == (960, 540) and any(m.instances for m in frames)

    archived = [a for a in read_archive(kafka.bootstrap, topics.archive) if not a.end_of_stream]
    assert {c: sum(a.frames for a in archived if a.camera_id == c) for c in lengths} == lengths
    assert all(a.segment is not None and a.jpeg == b"" for a in archived)
    first = next(a for a in archived if a.camera_id == "cam-h264")
    assert len(decode_segment(first.segment)) == first.frames == 30  # archived segments decode on their own


@pytest.mark.gpu
@pytest.mark.parametrize("path", [H264, VP9], ids=["h264", "vp9"])
def test_the_gpu_video_step_decodes_segments_with_nvdec_like_the_cpu_profile(path):
    """The GPU profile's ``preprocess_video`` pipeline (DALI ``mixed`` decoder) against the CPU profile's."""
    from dali.preprocess import build_pipeline
    from pipeline.serving.repository import preprocess_params, spec_for_checkpoint

    params = preprocess_params(spec_for_checkpoint()[0])
    segment = list(iter_segments(str(path), max_frames=8))[1]
    outputs = {}
    for device in ("gpu", "cpu") if path == VP9 else ("gpu",):  # DALI's CPU decoder refuses H.264
        pipe = build_pipeline(device, params, batch_size=1, device_id=0 if device == "gpu" else None, source="video")
        pipe.build()
        pipe.feed_input("segment", [np.frombuffer(segment.data, np.uint8)])
        pipe.feed_input("skip", [np.array([segment.skip], np.int32)])
        images, original, resized = (o.as_cpu() if hasattr(o, "as_cpu") else o for o in pipe.run())
        outputs[device] = images.as_array()[0], original.as_array()[0], resized.as_array()[0]
    gpu = outputs["gpu"]
    assert gpu[0].shape == (segment.frames, 3, 384, 640)
    assert list(gpu[1]) == [segment.height, segment.width] and float(gpu[0].std()) > 0.1
    if path == VP9:  # NVDEC and the software decoder differ by rounding only
        cpu = outputs["cpu"]
        assert list(cpu[1]) == list(gpu[1]) and float(np.abs(gpu[0] - cpu[0]).mean()) < 0.05


@pytest.mark.slow
def test_the_archive_reader_skips_records_that_are_not_archived_frames(kafka):
    from kafka import KafkaProducer

    from pipeline.archive import headers_of, read_archive

    topic = f"archive-{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap)
    producer.send(topic, key=b"cam-x", value=b"\xff" * 100)  # no headers: someone else's record
    producer.send(
        topic, key=b"cam-x", value=b"x", headers=[("segment", b"{not json"), *headers_of("cam-x", None, 1, 0, 0.0)]
    )
    producer.send(topic, key=b"cam-x", value=b"jpeg", headers=headers_of("cam-x", None, 1, 1, 0.1))
    producer.flush()
    producer.close()
    assert [(a.camera_id, a.frame_index, a.jpeg) for a in read_archive(kafka.bootstrap, topic)] == [
        ("cam-x", 1, b"jpeg")
    ]


def test_an_http_stream_is_demuxed_into_the_same_segments_as_the_file(tmp_path):
    import functools
    import http.server
    import threading

    from pipeline.ingest.sources import CapturedSegment, VideoSource

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(VIDEOS))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        source = VideoSource("cam-http", f"http://127.0.0.1:{server.server_address[1]}/{H264.name}")
        got: list[CapturedSegment] = []
        for item in source.frames():  # a stream reconnects after its end: stop once the file has gone through
            assert isinstance(item, CapturedSegment)
            got.append(item)
            if sum(s.frames for s in got) >= 221:
                source.stop()
                break
    finally:
        server.shutdown()
    expected = list(iter_segments(str(H264)))
    assert [(s.frame_index, s.frames) for s in got] == [(s.first_index, s.frames) for s in expected]
    assert [s.segment.data for s in got] == [s.data for s in expected]
    assert source.describe()["transport"] == "segments" and len({s.stream_epoch for s in got}) == 1
