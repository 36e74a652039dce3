"""Synthetic detection streams: what the model would publish, without running it (benchmarks, fault tests)."""

from __future__ import annotations

import cv2
import numpy as np

from pipeline import rle
from pipeline.messages import Detection, FrameDetections, RleMask


def moving_cars(n: int, *, camera_id: str, instances: int = 10, width: int = 640, height: int = 360, seed: int = 0,
                stream_epoch: int = 0, fps: float = 10.0) -> list[FrameDetections]:  # fmt: skip
    """``n`` frames of one camera with ``instances`` cars moving across it (elliptic masks, RLE)."""
    rng = np.random.default_rng(seed)
    starts = rng.uniform(0, width, instances)
    rows = np.linspace(60, height - 60, instances)
    speeds = rng.uniform(-12, 12, instances)
    out = []
    for i in range(n):
        dets = []
        for k in range(instances):
            cx = (starts[k] + speeds[k] * i) % width
            mask = np.zeros((height, width), np.uint8)
            cv2.ellipse(mask, (int(cx), int(rows[k])), (40, 22), 0, 0, 360, 1, -1)
            m = mask.astype(bool)
            ys, xs = np.nonzero(m)
            enc = rle.encode(m)
            dets.append(Detection(class_id=2, class_name="car", score=0.8, area=int(m.sum()), query=k,
                                  box=(float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)),
                                  mask=RleMask(size=(height, width), counts=enc["counts"])))  # fmt: skip
        out.append(FrameDetections(camera_id=camera_id, stream_epoch=stream_epoch,
                                   frame_index=i, capture_time=i / fps, width=width, height=height,
                                   model_name="synthetic", model_version="1", instances=dets))  # fmt: skip
    return out
