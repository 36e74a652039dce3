"""Model preview on synthetic multi-camera frames: predictions next to ground truth, in an HTML page.

This is what ``demo`` runs until streaming is wired in: no Kafka or Triton, just the model.
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline.data.synthetic import synthetic_sequence, vehicle_cameras
from pipeline.model.predictor import Predictor
from pipeline.overlay import draw_instances, jpeg_data_uri


@dataclass
class PreviewSummary:
    frames: int
    cameras: int
    true_instances: int
    predicted_instances: int
    matched_iou50: int
    mean_matched_iou: float
    ms_per_frame_p50: float
    ms_per_frame_p99: float
    report: str


def _match_iou(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Best IoU of each true mask with any predicted mask."""
    if len(pred) == 0 or len(true) == 0:
        return np.zeros(len(true))
    p = pred.reshape(len(pred), -1).astype(np.float32)
    t = true.reshape(len(true), -1).astype(np.float32)
    inter = t @ p.T
    union = t.sum(1)[:, None] + p.sum(1)[None, :] - inter
    return (inter / np.maximum(union, 1)).max(axis=1)


def run_preview(
    predictor: Predictor, out_dir: Path, *, seed: int = 0, cameras: int = 4, seconds: float = 3.0, fps: float = 5.0,
    score_threshold: float = 0.3,
) -> PreviewSummary:  # fmt: skip
    cams = vehicle_cameras()[:cameras]
    frames = synthetic_sequence(seed, cameras=cams, fps=fps, seconds=seconds)
    latencies, ious, rows = [], [], []
    n_pred = n_true = 0
    for i, per_cam in enumerate(tqdm(frames, desc="preview", unit="step")):
        for frame in per_cam:
            start = time.perf_counter()
            inst = predictor(frame.image)
            latencies.append(time.perf_counter() - start)
            keep = inst.scores >= score_threshold
            true = np.stack([t.mask for t in frame.instances]) if frame.instances else np.zeros((0, 1, 1), bool)
            best = _match_iou(inst.masks[keep], true)
            ious += best.tolist()
            n_pred += int(keep.sum())
            n_true += len(frame.instances)
            if i % max(len(frames) // 3, 1) == 0:
                rows.append((frame.camera, i, frame.image, inst, keep))
    out_dir.mkdir(parents=True, exist_ok=True)
    ious_arr = np.asarray(ious)
    summary = PreviewSummary(
        frames=sum(len(f) for f in frames),
        cameras=len(cams),
        true_instances=n_true,
        predicted_instances=n_pred,
        matched_iou50=int((ious_arr >= 0.5).sum()),
        mean_matched_iou=float(ious_arr[ious_arr >= 0.5].mean()) if (ious_arr >= 0.5).any() else 0.0,
        ms_per_frame_p50=float(np.percentile(latencies, 50) * 1000),
        ms_per_frame_p99=float(np.percentile(latencies, 99) * 1000),
        report=str(out_dir / "report.html"),
    )
    cells = []
    for camera, idx, image, inst, keep in rows:
        over = draw_instances(image, inst.masks[keep], inst.classes[keep], inst.scores[keep])
        cells.append(f'<figure><img src="{jpeg_data_uri(over)}"><figcaption>{html.escape(camera)} '
                     f"frame {idx}: {int(keep.sum())} instances</figcaption></figure>")  # fmt: skip
    (out_dir / "report.html").write_text(
        "<!doctype html><meta charset=utf-8><title>SparseInst preview</title>"
        "<style>body{font-family:sans-serif}figure{display:inline-block;margin:4px}img{width:480px}</style>"
        f"<h1>SparseInst preview</h1><pre>{html.escape(json.dumps(asdict(summary), indent=2))}</pre>" + "".join(cells)
    )
    (out_dir / "summary.json").write_text(json.dumps(asdict(summary), indent=2))
    return summary
