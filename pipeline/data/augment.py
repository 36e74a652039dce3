"""Training-time augmentation of an image and its instance masks: scale, light, colour and motion blur.

Everything is drawn from the caller's generator, so a training step sees the same data when resumed.
"""

from __future__ import annotations

import cv2
import numpy as np

MIN_AREA = 24  # pixels: instances that shrink below this are dropped from the targets


def rescale(image: np.ndarray, masks: np.ndarray, s: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Zoom in (s > 1: crop) or out (s < 1: pad with the image mean) at a random place, keeping the frame size."""
    h, w = image.shape[:2]
    nh, nw = max(round(h * s), 8), max(round(w * s), 8)
    image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    scaled = np.stack([cv2.resize(m.astype(np.uint8), (nw, nh), interpolation=cv2.INTER_NEAREST) for m in masks])
    if s >= 1:
        y, x = int(rng.integers(0, nh - h + 1)), int(rng.integers(0, nw - w + 1))
        return image[y : y + h, x : x + w], scaled[:, y : y + h, x : x + w].astype(bool)
    canvas = np.empty((h, w, 3), np.uint8)
    canvas[:] = image.reshape(-1, 3).mean(axis=0).astype(np.uint8)
    out_masks = np.zeros((len(masks), h, w), bool)
    y, x = int(rng.integers(0, h - nh + 1)), int(rng.integers(0, w - nw + 1))
    canvas[y : y + nh, x : x + nw] = image
    out_masks[:, y : y + nh, x : x + nw] = scaled.astype(bool)
    return canvas, out_masks


def _photometric(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    img = image.astype(np.float32)
    grey = img.mean(axis=2, keepdims=True)
    img = grey + (img - grey) * rng.uniform(0.4, 1.5)  # saturation
    img = (img - img.mean()) * rng.uniform(0.7, 1.3) + img.mean() * rng.uniform(0.6, 1.4)  # contrast, brightness
    img = 255.0 * (np.clip(img, 0, 255) / 255.0) ** rng.uniform(0.7, 1.4)  # gamma
    if rng.random() < 0.05:
        img[:] = img.mean(axis=2, keepdims=True)
    return np.clip(img, 0, 255).astype(np.uint8)


def _motion_blur(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    length = int(rng.integers(3, 10))
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0 / length
    rot = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), float(rng.uniform(0, 180)), 1.0)
    kernel = cv2.warpAffine(kernel, rot, (length, length))
    return cv2.filter2D(image, -1, kernel / max(float(kernel.sum()), 1e-6))


def augment(
    image: np.ndarray, masks: np.ndarray, labels: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Augment one training sample: ``image`` (H, W, 3) uint8, ``masks`` (N, H, W) bool, ``labels`` (N,)."""
    if len(masks) and rng.random() < 0.5:
        image, masks = rescale(image, masks, float(np.exp(rng.uniform(np.log(0.6), np.log(1.6)))), rng)
        keep = masks.reshape(len(masks), -1).sum(axis=1) >= MIN_AREA
        masks, labels = masks[keep], labels[keep]
    image = _photometric(image, rng)
    if rng.random() < 0.25:
        image = _motion_blur(image, rng)
    return np.ascontiguousarray(image), masks, labels
