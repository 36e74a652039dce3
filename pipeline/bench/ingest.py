"""Ingest-side cost of a video camera: decode and re-encode every frame as JPEG, against demuxing segments.

The benchmark makes its own 1920x1080 H.264 clip (GOP 1 s, no B-frames, as cameras stream):
from a given video (scaled, played forward then backward until long enough) or from the
simulator's street scenes. Both paths read the same file in the same run; CPU time is the
process's (all threads), bytes are what each path would send to Triton per frame.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

log = logging.getLogger(__name__)

WIDTH, HEIGHT = 1920, 1080


def _frames_from(source: Path | None, count: int, width: int, height: int):
    """``count`` RGB frames at width x height: from ``source`` (forward, then backward, repeated) or the simulator."""
    import cv2

    if source is None:
        from pipeline.data.synthetic import iter_synthetic_sequence, vehicle_cameras

        camera = vehicle_cameras(width, height)[:1]
        steps = iter_synthetic_sequence(7, cameras=camera, fps=30.0, seconds=count / 30.0 + 1)
        for _, step in zip(range(count), steps):
            yield step[0].image
        return
    import av

    with av.open(str(source)) as container:
        clip = [cv2.resize(f.to_ndarray(format="rgb24"), (width, height), interpolation=cv2.INTER_LINEAR)
                for f in container.decode(video=0)]  # fmt: skip
    if not clip:
        raise ValueError(f"{source}: no video frames")
    cycle = clip + clip[-2:0:-1] if len(clip) > 2 else clip
    for i in range(count):
        yield cycle[i % len(cycle)]


def make_clip(out: Path, *, source: Path | None = None, seconds: float = 12.0, fps: int = 30, width: int = WIDTH,
              height: int = HEIGHT, gop_s: float = 1.0) -> Path:  # fmt: skip
    """Encode the benchmark's H.264 clip (kept at ``out`` and reused when it exists)."""
    import av

    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    count = round(seconds * fps)
    partial = out.with_suffix(".partial.mp4")
    with av.open(str(partial), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"g": str(round(gop_s * fps)), "bf": "0", "preset": "veryfast", "crf": "23",
                          "sc_threshold": "0"}  # fmt: skip
        for rgb in tqdm(_frames_from(source, count, width, height), total=count, desc="encoding the test clip",
                        unit="frame"):  # fmt: skip
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    partial.rename(out)
    return out


def measure_decode_reencode(path: Path) -> tuple[float, int, int]:
    """(CPU seconds, frames, JPEG bytes): OpenCV decodes every frame and re-encodes it as a q90 JPEG."""
    import cv2

    from pipeline.ingest.sources import encode_jpeg

    cap = cv2.VideoCapture(str(path))
    frames = size = 0
    start = time.process_time()
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        size += len(encode_jpeg(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
        frames += 1
    cpu = time.process_time() - start
    cap.release()
    return cpu, frames, size


def measure_segments(path: Path) -> tuple[float, int, int]:
    """(CPU seconds, frames, segment bytes): PyAV demuxes keyframe-aligned segments, nothing decoded."""
    from pipeline.ingest.segments import iter_segments

    frames = size = 0
    start = time.process_time()
    for segment in iter_segments(str(path)):
        frames += segment.frames
        size += len(segment.data)
    return time.process_time() - start, frames, size


def bench_ingest(*, clip: Path | None = None, source: Path | None = None, seconds: float = 12.0, repeats: int = 3,
                 json_path: Path | None = None) -> dict:  # fmt: skip
    """Both paths on one clip; the segment path, being ~1000x cheaper, is timed as the best of ``repeats``."""
    if seconds < 10:
        raise ValueError(f"seconds must be at least 10 (the clip needs ten 1 s groups), got {seconds}")
    clip = clip or Path("runs") / f"bench_ingest_{'sim' if source is None else source.stem}_1080p.mp4"
    make_clip(clip, source=source, seconds=seconds)
    cpu_old, frames_old, bytes_old = measure_decode_reencode(clip)
    runs = [measure_segments(clip) for _ in range(max(repeats, 1))]
    cpu_new, frames_new, bytes_new = min(runs)
    if frames_old != frames_new:
        log.warning("the two paths read %d and %d frames of %s", frames_old, frames_new, clip)
    old_ms, new_ms = 1000 * cpu_old / frames_old, 1000 * cpu_new / frames_new
    figures = {
        "ingest_cpu_ms_per_frame": {"decode_reencode": round(old_ms, 4), "segments": round(new_ms, 4)},
        "ingest_cpu_ratio": round(old_ms / new_ms, 1),
        "ingest_bytes_per_frame": {"decode_reencode": round(bytes_old / frames_old), "segments": round(bytes_new /
                                                                                                       frames_new)},
        "ingest_frame_width": WIDTH,
        "ingest_frame_height": HEIGHT,
        "ingest_frames": frames_new,
        "ingest_clip": str(clip),
    }  # fmt: skip
    b_old, b_new = figures["ingest_bytes_per_frame"].values()
    print(f"\ningest of one 1920x1080 H.264 camera ({frames_new} frames, GOP 1 s, {clip}):")
    print(f"{'path':<28} | {'CPU ms/frame':>12} | {'KiB/frame to Triton':>19}")
    print(f"{'decode + JPEG q90 (OpenCV)':<28} | {old_ms:>12.3f} | {b_old / 1024:>19.1f}")
    print(f"{'segments (PyAV demux)':<28} | {new_ms:>12.4f} | {b_new / 1024:>19.1f}")
    print(f"ratio: {old_ms / new_ms:.0f}x less CPU, {b_old / b_new:.1f}x fewer bytes")
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(figures, indent=2) + "\n")
    return figures
