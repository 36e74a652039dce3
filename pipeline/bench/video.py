"""``bench pipeline --source video``: video cameras end to end, JPEG re-encoding in ingest against segments.

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


def encode_cameras(out: Path, *, cameras: int, seconds: float, fps: int, seed: int) -> dict[str, Path]:
    """One H.264 file per simulated camera (GOP = 1 s at ``fps``): camera name -> file."""
    import av
    import numpy as np

    from pipeline.data.synthetic import iter_synthetic_sequence, vehicle_cameras

    out.mkdir(parents=True, exist_ok=True)
    cams = vehicle_cameras()[:cameras]
    files = {c.name: out / f"{c.name}_{fps}fps.mp4" for c in cams}
    containers = {name: av.open(str(path), "w") for name, path in files.items()}
    streams = {}
    for cam in cams:
        s = containers[cam.name].add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = cam.width, cam.height, "yuv420p"
        s.options = {"g": str(fps), "bf": "0", "preset": "veryfast", "crf": "23", "sc_threshold": "0"}
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
