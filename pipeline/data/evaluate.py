"""COCO mask AP with pycocotools, for any predictor that returns per-image instances."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from tqdm import tqdm

from pipeline.data.classes import COCO_IDS
from pipeline.data.coco import encode_rle


@dataclass
class MaskAP:
    ap: float
    ap50: float
    ap75: float
    ap_small: float  # COCO size ranges: area < 32^2, 32^2..96^2, > 96^2 pixels
    ap_medium: float
    ap_large: float
    per_class: dict[str, float]  # AP per category name (NaN where the class has no ground truth)
    num_images: int
    num_predictions: int

    def summary_line(self) -> str:
        return f"AP={self.ap:.4f} AP50={self.ap50:.4f} AP75={self.ap75:.4f}"


def predictions_to_coco(image_id: int, scores: np.ndarray, classes: np.ndarray, masks: np.ndarray) -> list[dict]:
    """COCO detection results, with each mask's bounding box (x, y, w, h) as ``bbox``."""
    out = []
    for s, c, m in zip(scores, classes, masks):
        rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
        bbox = [float(cols[0]), float(rows[0]), float(cols[-1] + 1 - cols[0]), float(rows[-1] + 1 - rows[0])] \
            if rows.size else [0.0, 0.0, 0.0, 0.0]  # fmt: skip
        out.append({"image_id": image_id, "category_id": COCO_IDS[int(c)], "segmentation": encode_rle(m),
                    "bbox": bbox, "score": float(s)})  # fmt: skip
    return out


def predict_coco(
    gt: dict,
    images: Iterable[tuple[dict, np.ndarray]],
    predict: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> list[dict]:
    """Run ``predict(image) -> (scores, classes, masks)`` on every image; COCO detection results."""
    results: list[dict] = []
    for info, image in tqdm(images, total=len(gt["images"]), desc="evaluate", unit="img"):
        results += predictions_to_coco(info["id"], *predict(image))
    return results


def evaluate_masks(
    gt: dict,
    images: Iterable[tuple[dict, np.ndarray]],
    predict: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> MaskAP:
    """Run ``predict(image) -> (scores, classes, masks)`` on every image and score it against ``gt``."""
    return score_coco(gt, predict_coco(gt, images, predict), len(gt["images"]))


def score_coco(gt: dict, results: list[dict], num_images: int) -> MaskAP:
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {**gt, "info": gt.get("info", {}), "licenses": gt.get("licenses", [])}
        coco_gt.createIndex()
        if not results:
            return MaskAP(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, {c["name"]: 0.0 for c in gt["categories"]}, num_images, 0)
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval(coco_gt, coco_dt, "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    precision = ev.eval["precision"]  # (iou, recall, class, area, maxdets)
    per_class = {}
    for k, cat_id in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        per_class[coco_gt.cats[cat_id]["name"]] = float(p.mean()) if p.size else float("nan")
    return MaskAP(
        ap=float(ev.stats[0]),
        ap50=float(ev.stats[1]),
        ap75=float(ev.stats[2]),
        ap_small=float(ev.stats[3]),
        ap_medium=float(ev.stats[4]),
        ap_large=float(ev.stats[5]),
        per_class=per_class,
        num_images=num_images,
        num_predictions=len(results),
    )
