"""Video cameras in the benchmarks: segments against JPEG frames, end to end and at the server.

``bench pipeline --source video``: video cameras end to end, JPEG re-encoding in ingest against segments.

Each camera is an H.264 file made from the simulator (GOP 1 s, no B-frames). Both transports read
the same files in the same run through the CPU profile, Kafka and one event processor:

- flat out: frames per second until the last frame's events are committed, per transport;
- paced in real time at ``load`` % of the slower transport's capacity: frame-to-event latency from
  each frame's capture (a segment's frames wait for the segment to close, so its length is the
  latency floor) to the commit of its events.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

TRANSPORTS = ("jpeg", "segments")  # decode + JPEG re-encode in ingest | encoded segments decoded in Triton


def encode_cameras(out: Path, *, cameras: int, seconds: float, fps: int, seed: int,
                   gop: int | None = None) -> dict[str, Path]:  # fmt: skip
    """One H.264 file per simulated camera (GOP ``gop`` frames, default 1 s at ``fps``): camera name -> file."""
    import av
    import numpy as np

    from pipeline.data.synthetic import iter_synthetic_sequence, vehicle_cameras

    out.mkdir(parents=True, exist_ok=True)
    cams = vehicle_cameras()[:cameras]
    gop = gop or fps
    files = {c.name: out / f"{c.name}_{fps}fps_gop{gop}.mp4" for c in cams}
    containers = {name: av.open(str(path), "w") for name, path in files.items()}
    streams = {}
    for cam in cams:
        s = containers[cam.name].add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = cam.width, cam.height, "yuv420p"
        s.options = {"g": str(gop), "bf": "0", "preset": "veryfast", "crf": "23", "sc_threshold": "0"}
        streams[cam.name] = s
    try:
        for step in iter_synthetic_sequence(seed, cameras=cams, fps=float(fps), seconds=seconds):
            for cam, frame in zip(cams, step):
                picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame.image), format="rgb24")
                for packet in streams[cam.name].encode(picture):
                    containers[cam.name].mux(packet)
        for name, s in streams.items():
            for packet in s.encode():
                containers[name].mux(packet)
    finally:
        for c in containers.values():
            c.close()
    return files


def bench_video_pipeline(*, cameras: int = 2, seconds: float = 10.0, seed: int = 0, load: int = 50, batch: int = 8,
                         in_flight: int = 2, out: Path = Path("runs/bench_video"),
                         json_path: Path | None = None) -> dict:  # fmt: skip
    from pipeline.bench.streaming import _write, streaming_stack
    from pipeline.config import Settings
    from pipeline.ingest.sources import VideoSource
    from pipeline.local.stack import ensure_repository

    if not 1 <= cameras <= 4:
        raise ValueError(f"cameras must be 1 to 4 (one simulated vehicle), got {cameras}")
    settings = Settings()
    repo = ensure_repository(settings)
    ingest = settings.ingest.model_copy(update={"max_batch": batch, "in_flight": in_flight})
    flat = encode_cameras(out, cameras=cameras, seconds=seconds, fps=10, seed=seed)
    runs: dict[str, dict] = {}
    with streaming_stack(repo) as stack:

        def run(tag: str, files: dict[str, Path], transport: str, realtime: bool) -> dict:
            sources = [VideoSource(f"{tag}-{name}", str(path), vehicle_id=tag, realtime=realtime, transport=transport)
                       for name, path in files.items()]  # fmt: skip
            figures = stack.run(sources, ingest)
            figures["transport"] = [s.describe()["transport"] for s in sources]
            return figures

        for transport in TRANSPORTS:
            log.info("capacity, %s: %d video cameras flat out", transport, cameras)
            runs[f"capacity_{transport}"] = run(f"cap-{transport}", flat, transport, False)
        capacity = min(runs[f"capacity_{t}"]["fps"] for t in TRANSPORTS)
        fps = max(1, round(capacity * load / 100 / cameras))
        paced = encode_cameras(out, cameras=cameras, seconds=seconds, fps=fps, seed=seed)
        for transport in TRANSPORTS:
            log.info("paced, %s: %d cameras at %d fps in real time, 1 s segments", transport, cameras, fps)
            runs[f"paced_{transport}"] = run(f"paced-{transport}", paced, transport, True)
    figures = {
        "video_pipeline_fps": {t: round(runs[f"capacity_{t}"]["fps"], 2) for t in TRANSPORTS},
        "video_paced_fps_per_camera": fps,
        "video_segment_s": 1.0,
        "video_latency_p50_ms": {t: round(runs[f"paced_{t}"]["p50_ms"], 1) for t in TRANSPORTS},
        "video_latency_p99_ms": {t: round(runs[f"paced_{t}"]["p99_ms"], 1) for t in TRANSPORTS},
        "video_frames": {k: v["frames"] for k, v in runs.items()},
        "video_frames_dropped": {k: v["dropped"] for k, v in runs.items() if v["dropped"]},
        "video_decoders": runs["capacity_segments"]["decoders"],
        "video_cameras": cameras,
    }
    _write(figures, None)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def bench_video_serving(*, frames: int = 32, repeats: int = 3, seed: int = 0, out: Path = Path("runs/bench_video"),
                        json_path: Path | None = None) -> dict:  # fmt: skip
    """One request of a ``frames``-frame H.264 segment at ``sparseinst_video`` against the same decoded frames
    as q90 JPEGs at ``sparseinst_pipeline`` in requests of 8: ms per frame, and where it goes (server statistics).

    Says how a segment is batched into the network: its F frames reach ``sparseinst`` as one batch of F.
    """
    import asyncio

    from pipeline.bench.serving import _stage_ms
    from pipeline.bench.streaming import _write
    from pipeline.config import Settings
    from pipeline.ingest.segments import decode_segment, iter_segments
    from pipeline.ingest.sources import encode_jpeg
    from pipeline.local.stack import ensure_repository
    from pipeline.local.triton import LocalTriton, LocalTritonConfig
    from pipeline.serving import contract
    from pipeline.serving.client import ClientConfig, Frame, FrameId, SegmentationClient, VideoSegment

    if not 1 <= frames <= contract.MAX_BATCH:
        raise ValueError(f"frames must be 1 to {contract.MAX_BATCH}, got {frames}")
    clip = encode_cameras(out, cameras=1, seconds=frames / 10 + 0.5, fps=10, seed=seed, gop=frames)["front"]
    segment = next(iter(iter_segments(str(clip), max_frames=frames)))
    jpegs = [encode_jpeg(f) for f in decode_segment(segment)]
    ids = tuple(FrameId("cam", segment.first_index + i, t) for i, t in enumerate(segment.times))
    stages = ("preprocess", "preprocess_video", "sparseinst", "postprocess")

    async def timed(url: str, stats: object) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
        """Best seconds per path, and each path's server time per model over its timed calls (ms)."""
        import time

        video = SegmentationClient(ClientConfig(url=url, model_name=contract.VIDEO_ENSEMBLE, segment_timeout_s=300))
        image = SegmentationClient(ClientConfig(url=url, timeout_s=120))

        async def segments() -> None:
            await video.infer_segment(VideoSegment(segment.data, segment.skip, ids))

        async def jpeg() -> None:
            for i in range(0, len(jpegs), 8):
                await image.infer([Frame(j, "cam", i + k, 0.0) for k, j in enumerate(jpegs[i : i + 8])])

        best, spent = {}, {}
        async with video, image:
            for name, call in (("segments", segments), ("jpeg", jpeg)):
                await call()  # warm-up
                before, times = _stage_ms(stats, stages), []
                for _ in range(repeats):
                    start = time.perf_counter()
                    await call()
                    times.append(time.perf_counter() - start)
                after = _stage_ms(stats, stages)
                best[name] = min(times)
                spent[name] = {s: after[s] - before[s] for s in stages}
        return best, spent

    import tritonclient.grpc as grpcclient

    with LocalTriton(LocalTritonConfig(model_repository=ensure_repository(Settings()))) as triton:
        stats = grpcclient.InferenceServerClient(triton.grpc_url)
        best, spent = asyncio.run(timed(triton.grpc_url, stats))
        stats.close()
    n = segment.frames
    figures = {
        "video_serving_ms_per_frame": {k: round(1000 * v / n, 1) for k, v in best.items()},
        "video_serving_stage_ms_per_frame": {k: {s: round(ms / (repeats * n), 1) for s, ms in v.items() if ms}
                                             for k, v in spent.items()},
        "video_serving_segment_frames": n,
        "video_serving_frame_size": f"{segment.width}x{segment.height}",
        "video_serving_network_batch": {"segments": n, "jpeg": 8},
    }  # fmt: skip
    _write(figures, json_path)
    return figures
