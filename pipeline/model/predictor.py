"""The official SparseInst pre- and post-processing around a network (the "predictor").

Preprocessing: RGB, resize so the short side is ``min_size`` and the long side at most
``max_size`` (PIL bilinear, sizes rounded as ``int(x + 0.5)``), normalise, zero-pad to a
multiple of 32. Post-processing: ``sqrt(sigmoid(cls) * sigmoid(obj))``, max over classes,
threshold, maskness rescoring, masks back to the original size, threshold at 0.45.
Instances stay in query order: no NMS, no sorting, no top-k.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pipeline.dense_masks import masks_to_boxes
from pipeline.model.sparseinst import PIXEL_MEAN, PIXEL_STD, SparseInst


def resized_shape(h: int, w: int, min_size: int, max_size: int) -> tuple[int, int]:
    """Output (h, w) of detectron2's ``ResizeShortestEdge`` for one fixed short side."""
    scale = min_size / min(h, w)
    newh, neww = (min_size, scale * w) if h < w else (scale * h, min_size)
    if max(newh, neww) > max_size:
        scale = max_size / max(newh, neww)
        newh, neww = newh * scale, neww * scale
    return int(newh + 0.5), int(neww + 0.5)


def resize_image(image: np.ndarray, min_size: int, max_size: int) -> np.ndarray:
    h, w = image.shape[:2]
    newh, neww = resized_shape(h, w, min_size, max_size)
    if (newh, neww) == (h, w):
        return image
    return np.asarray(Image.fromarray(image).resize((neww, newh), Image.BILINEAR))


def normalize(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32, ``(x - mean) / std`` in float32."""
    mean = np.asarray(PIXEL_MEAN, dtype=np.float32)
    std = np.asarray(PIXEL_STD, dtype=np.float32)
    return ((image.astype(np.float32) - mean) / std).transpose(2, 0, 1)


def pad_batch(images: Sequence[np.ndarray], divisibility: int = 32) -> np.ndarray:
    """Stack (3, h, w) arrays into (B, 3, H, W), zero-padded bottom/right to a multiple of ``divisibility``."""
    h = max(im.shape[1] for im in images)
    w = max(im.shape[2] for im in images)
    h, w = -(-h // divisibility) * divisibility, -(-w // divisibility) * divisibility
    out = np.zeros((len(images), 3, h, w), dtype=np.float32)
    for i, im in enumerate(images):
        out[i, :, : im.shape[1], : im.shape[2]] = im
    return out


def fixed_input_batch(images: Sequence[np.ndarray], min_size: int, max_size: int, height: int,
                      width: int) -> tuple[np.ndarray, list[tuple[int, int]]]:  # fmt: skip
    """RGB uint8 images resized (official sizes), normalised and zero-padded into one (B, 3, height, width)
    batch, the fixed input of an exported network; also each image's size after resizing."""
    out = np.zeros((len(images), 3, height, width), dtype=np.float32)
    sizes = []
    for i, im in enumerate(images):
        r = resize_image(im, min_size, max_size)
        out[i, :, : r.shape[0], : r.shape[1]] = normalize(r)
        sizes.append(r.shape[:2])
    return out, sizes


@dataclass
class Instances:
    """One image's instances; every array is aligned on the K kept queries."""

    scores: np.ndarray  # (K,) float32
    classes: np.ndarray  # (K,) int64, contiguous 0-based class index
    masks: np.ndarray  # (K, H, W) bool at the original image size
    boxes: np.ndarray  # (K, 4) float32 xyxy
    query_index: np.ndarray  # (K,) int64

    def __post_init__(self) -> None:
        k = self.scores.shape[0]
        for name, arr, tail in (
            ("classes", self.classes, ()),
            ("masks", self.masks, None),
            ("boxes", self.boxes, (4,)),
            ("query_index", self.query_index, ()),
        ):
            if arr.shape[0] != k or (tail is not None and arr.shape[1:] != tail):
                raise ValueError(f"{name}: expected ({k}, {', '.join(map(str, tail or ('H', 'W')))}), got {arr.shape}")

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def postprocess(
    outputs: dict[str, torch.Tensor],
    image_sizes: Sequence[tuple[int, int]],
    original_sizes: Sequence[tuple[int, int]],
    *,
    score_threshold: float = 0.005,
    mask_threshold: float = 0.45,
) -> list[Instances]:
    """Official inference post-processing for a padded batch (torch, so it matches bit for bit)."""
    probs = torch.sqrt(outputs["pred_logits"].sigmoid() * outputs["pred_scores"].sigmoid())
    mask_probs = outputs["pred_masks"].sigmoid()
    padded = (mask_probs.shape[-2] * 4, mask_probs.shape[-1] * 4)
    results = []
    for per_query, masks, (h, w), orig in zip(probs, mask_probs, image_sizes, original_sizes):
        scores, labels = per_query.max(dim=-1)
        keep = scores > score_threshold
        idx = torch.nonzero(keep).flatten()
        scores, labels, masks = scores[keep], labels[keep], masks[keep]
        if idx.numel() == 0:
            results.append(
                Instances(
                    scores=np.zeros(0, np.float32),
                    classes=np.zeros(0, np.int64),
                    masks=np.zeros((0, *orig), bool),
                    boxes=np.zeros((0, 4), np.float32),
                    query_index=np.zeros(0, np.int64),
                )
            )
            continue
        binary = (masks > mask_threshold).float()
        scores = scores * ((masks * binary).sum((1, 2)) / (binary.sum((1, 2)) + 1e-6))
        full = F.interpolate(masks[:, None], size=padded, mode="bilinear", align_corners=False)[:, :, :h, :w]
        full = F.interpolate(full, size=tuple(orig), mode="bilinear", align_corners=False)[:, 0]
        final = (full > mask_threshold).cpu().numpy()
        results.append(
            Instances(
                scores=scores.cpu().numpy().astype(np.float32),
                classes=labels.cpu().numpy().astype(np.int64),
                masks=final,
                boxes=masks_to_boxes(final),
                query_index=idx.cpu().numpy().astype(np.int64),
            )
        )
    return results


class Predictor:
    """Callable wrapper: RGB uint8 image(s) in, :class:`Instances` per image out."""

    def __init__(
        self,
        model: SparseInst,
        min_size: int = 640,
        max_size: int = 853,
        *,
        score_threshold: float = 0.005,
        mask_threshold: float = 0.45,
        device: str | torch.device | None = None,
    ) -> None:
        self.model = model.eval()
        self.min_size = min_size
        self.max_size = max_size
        self.score_threshold = score_threshold
        self.mask_threshold = mask_threshold
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model.to(self.device)

    def preprocess(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, list[tuple[int, int]]]:
        resized = []
        for im in images:
            if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
                raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {im.dtype} {im.shape}")
            resized.append(resize_image(im, self.min_size, self.max_size))
        batch = pad_batch([normalize(r) for r in resized])
        return batch, [r.shape[:2] for r in resized]

    @torch.inference_mode()
    def __call__(self, images: np.ndarray | Sequence[np.ndarray]) -> Instances | list[Instances]:
        single = isinstance(images, np.ndarray) and images.ndim == 3
        batch_images = [images] if single else list(images)
        batch, sizes = self.preprocess(batch_images)
        outputs = self.model(torch.from_numpy(batch).to(self.device))
        results = postprocess(
            outputs,
            sizes,
            [im.shape[:2] for im in batch_images],
            score_threshold=self.score_threshold,
            mask_threshold=self.mask_threshold,
        )
        return results[0] if single else results
