"""Synthetic detection streams: what the model would publish, without running it (benchmarks, fault tests)."""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.messages import Detection, FrameDetections, RleMask
from pipeline.runmasks import RunMasks


def moving_cars(n: int, *, camera_id: str, instances: int = 10, width: int = 640, height: int = 360, seed: int = 0,
                stream_epoch: int = 0, fps: float = 10.0) -> list[FrameDetections]:  # fmt: skip
    """``n`` frames of one camera with ``instances`` cars moving across it (elliptic masks, RLE)."""
    rng = np.random.default_rng(seed)
    starts = rng.uniform(0, width, instances)
    rows = np.linspace(60, height - 60, instances)
    speeds = rng.uniform(-12, 12, instances)
    axes = (round(40 * width / 640), round(22 * height / 360))  # the same scene at any resolution
    out = []
    for i in range(n):
        dets = []
        for k in range(instances):
            cx = (starts[k] + speeds[k] * i) % width
            counts, area, box = _ellipse(int(cx), int(rows[k]), axes, width, height)
            dets.append(Detection(class_id=2, class_name="car", score=0.8, area=area, query=k, box=box,
                                  mask=RleMask(size=(height, width), counts=counts)))  # fmt: skip
        out.append(FrameDetections(camera_id=camera_id, stream_epoch=stream_epoch,
                                   frame_index=i, capture_time=i / fps, width=width, height=height,
                                   model_name="synthetic", model_version="1", instances=dets))  # fmt: skip
    return out


def _ellipse(cx: int, cy: int, axes: tuple[int, int], width: int, height: int) -> tuple[str, int, tuple]:
    """RLE, area and box of a filled ellipse, drawn in a strip of the frame (same pixels as on the whole frame)."""
    ax = axes[0]
    x0, x1 = max(cx - ax - 1, 0), min(cx + ax + 2, width)
    strip = np.zeros((height, x1 - x0), np.uint8)
    cv2.ellipse(strip, (cx - x0, cy), axes, 0, 0, 360, 1, -1)
    one = RunMasks.from_arrays([strip.astype(bool)])
    shift = x0 * height
    placed = RunMasks(height, width, one.starts + shift, one.ends + shift, one.first, last=one.last)
    bx0, by0, bx1, by1 = placed.boxes()[0]
    return placed.rle(0)["counts"], int(placed.areas()[0]), (float(bx0), float(by0), float(bx1), float(by1))
