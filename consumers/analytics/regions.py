"""Zone and line geometry in frame pixels, cached per frame size (zones are fractions of the frame)."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from consumers.rules import Line
from pipeline.runmasks import RegionColumns, region_columns

Points = tuple[tuple[float, float], ...]


@lru_cache(maxsize=64)
def polygon_mask(points: Points, width: int, height: int) -> np.ndarray:
    pts = np.array([[x * (width - 1), y * (height - 1)] for x, y in points], dtype=np.float64)
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    return mask.astype(bool)


@lru_cache(maxsize=64)
def polygon_columns(points: Points, width: int, height: int) -> RegionColumns:
    """The polygon's rows per column: a mask's pixels inside it from its runs."""
    return region_columns(polygon_mask(points, width, height))


@lru_cache(maxsize=64)
def distance_to(points: Points, width: int, height: int) -> np.ndarray:
    """Pixel distance of every pixel to the polygon (0 inside)."""
    outside = (~polygon_mask(points, width, height)).astype(np.uint8)
    return cv2.distanceTransform(outside, cv2.DIST_L2, 3)


@lru_cache(maxsize=256)
def pixel_ends(points: tuple, w: int, h: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """A line's end points in pixels (cached: every track of every frame asks)."""
    (x1, y1), (x2, y2) = ((x * (w - 1), y * (h - 1)) for x, y in points)
    return (x1, y1), (x2, y2)


def crosses_segment(line: Line, w: int, h: int, a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Does the move a -> b cross the line within its two end points?"""
    (x1, y1), (x2, y2) = pixel_ends(line.points, w, h)
    dx, dy = x2 - x1, y2 - y1
    mx, my = b[0] - a[0], b[1] - a[1]
    denom = dx * my - dy * mx
    if abs(denom) < 1e-12:
        return False
    t = ((a[0] - x1) * my - (a[1] - y1) * mx) / denom  # position along the line
    return -1e-9 <= t <= 1 + 1e-9


def applies(classes: list[str] | None, name: str) -> bool:
    return classes is None or name in classes
