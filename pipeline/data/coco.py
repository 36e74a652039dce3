"""COCO-format datasets: RLE masks, export of synthetic sets, and loading of any COCO json."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from tqdm import tqdm

from pipeline import rle
from pipeline.data.classes import CLASS_INDEX, COCO_CLASSES, COCO_IDS, SCENE_CLASSES
from pipeline.data.synthetic import synthetic_image


def encode_rle(mask: np.ndarray) -> dict:
    """(H, W) bool -> COCO RLE with a str ``counts`` (JSON-ready)."""
    return rle.encode(mask)


def _rle_bytes(rle_dict: dict) -> dict:
    counts = rle_dict["counts"]
    return {"size": rle_dict["size"], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def decode_rle(rle_dict: dict) -> np.ndarray:
    """COCO RLE (str or bytes ``counts``) -> (H, W) bool."""
    return rle.decode(rle_dict)


def categories(names: Iterable[str] = COCO_CLASSES) -> list[dict]:
    return [{"id": COCO_IDS[CLASS_INDEX[n]], "name": n} for n in names]


def synthetic_coco(seed: int, num_images: int, width: int = 640, height: int = 360) -> tuple[dict, list[np.ndarray]]:
    """A synthetic set as a COCO ground-truth dict (RLE segmentations) and its images."""
    images, annotations, pixels = [], [], []
    for idx in tqdm(range(num_images), desc=f"synthetic set seed={seed}", unit="img", leave=False):
        frame = synthetic_image(seed, idx, width, height)
        image_id = idx + 1
        images.append({"id": image_id, "file_name": f"{seed}_{idx:06d}.jpg", "height": height, "width": width})
        pixels.append(frame.image)
        for inst in frame.instances:
            segm = encode_rle(inst.mask)
            raw = _rle_bytes(segm)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": COCO_IDS[inst.category],
                    "segmentation": segm,
                    "area": float(mask_utils.area(raw)),
                    "bbox": [float(v) for v in mask_utils.toBbox(raw)],
                    "iscrowd": 0,
                }
            )
    gt = {"images": images, "annotations": annotations, "categories": categories(SCENE_CLASSES)}
    return gt, pixels


def write_synthetic_coco(out_dir: Path, seed: int, num_images: int) -> Path:
    """Write ``images/*.jpg`` and ``annotations.json`` for a synthetic set; returns the json path."""
    gt, pixels = synthetic_coco(seed, num_images)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    for info, image in zip(gt["images"], pixels):
        cv2.imwrite(str(out_dir / "images" / info["file_name"]), image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    path = out_dir / "annotations.json"
    path.write_text(json.dumps(gt))
    return path


def _video_frame(path: Path, index: int) -> np.ndarray | None:
    """Frame ``index`` (0-based) of a video, read in order: seeking is not frame-exact in every container."""
    cap = cv2.VideoCapture(str(path))
    try:
        frame = None
        for _ in range(index + 1):
            ok, frame = cap.read()
            if not ok:
                return None
        return frame
    finally:
        cap.release()


def iter_coco_images(coco_json: Path, images_dir: Path) -> Iterator[tuple[dict, np.ndarray]]:
    """(image info, RGB uint8 pixels) for every image a COCO json lists.

    An image with a ``frame`` key is that frame (0-based) of the video named by ``file_name``.
    """
    gt = json.loads(Path(coco_json).read_text())
    for info in gt["images"]:
        path = Path(images_dir) / info["file_name"]
        bgr = _video_frame(path, int(info["frame"])) if "frame" in info else cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            where = f"frame {info['frame']} of " if "frame" in info else ""
            raise FileNotFoundError(f"cannot read {where}{path} listed in {coco_json}")
        if bgr.shape[:2] != (info.get("height", bgr.shape[0]), info.get("width", bgr.shape[1])):
            size = f"{bgr.shape[1]}x{bgr.shape[0]}"
            raise ValueError(f"{path}: {size}, but {coco_json} says {info['width']}x{info['height']}")
        yield info, bgr[:, :, ::-1].copy()
