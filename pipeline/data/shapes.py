"""Silhouettes of road users, drawn as billboards with exact per-instance masks.

Each template is a list of parts in a unit frame (x in [-0.5, 0.5] across the object's width,
y in [0, 1] up from the ground). Parts are polygons or ellipses with a shade relative to the
body colour; every drawn part belongs to the instance mask. Vehicles and two-wheelers have a
side template (seen broadside) and an end template (seen from the front or back).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

Poly = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Part:
    shade: float  # multiplies the body colour; < 0 means a fixed dark grey (tyres, glass)
    poly: Poly = ()
    ellipse: tuple[float, float, float, float] = (0, 0, 0, 0)  # cx, cy, rx, ry in unit frame
    ring: float = 0.0  # ring thickness as a fraction of the height (0 = filled)
    role: str = ""  # "skin", "top" or "legs": coloured by the object's outfit when it has one


def _rect(x0: float, y0: float, x1: float, y1: float) -> Poly:
    return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))


def _wheel(cx: float, r: float, aspect: float) -> Part:
    # radius r is in height units; the x radius is rescaled so wheels stay round
    return Part(-1, ellipse=(cx, r, r / aspect, r))


# Real-world sizes in metres: (side length, end width, height).
SIZES: dict[str, tuple[float, float, float]] = {
    "car": (4.4, 1.8, 1.5),
    "truck": (7.5, 2.5, 3.3),
    "bus": (11.5, 2.6, 3.2),
    "person": (0.55, 0.55, 1.75),
    "bicycle": (1.75, 0.6, 1.05),
    "motorcycle": (2.1, 0.8, 1.2),
    "traffic light": (0.35, 0.35, 0.95),
}


def template(cls: str, side: bool, walking: bool = False) -> list[Part]:
    """The silhouette parts of ``cls`` seen broadside (``side``) or end-on; ``walking``: a person mid-stride."""
    length, width, height = SIZES[cls]
    aspect = (length if side else width) / height  # unit-frame x per unit y
    if cls == "car":
        if side:
            return [
                Part(1.0, poly=((-0.5, 0.18), (0.5, 0.18), (0.5, 0.5), (0.32, 0.56), (0.17, 0.95), (-0.26, 0.95),
                                (-0.4, 0.58), (-0.5, 0.52))),
                Part(-0.35, poly=((0.12, 0.6), (0.28, 0.58), (0.14, 0.88), (-0.02, 0.88))),
                Part(-0.35, poly=((-0.06, 0.6), (-0.34, 0.6), (-0.23, 0.88), (-0.06, 0.88))),
                _wheel(-0.3, 0.2, aspect), _wheel(0.3, 0.2, aspect),
            ]  # fmt: skip
        return [
            Part(1.0, poly=((-0.5, 0.14), (0.5, 0.14), (0.5, 0.55), (0.4, 0.62), (-0.4, 0.62), (-0.5, 0.55))),
            Part(0.9, poly=((-0.4, 0.62), (0.4, 0.62), (0.32, 0.97), (-0.32, 0.97))),
            Part(-0.35, poly=((-0.34, 0.64), (0.34, 0.64), (0.28, 0.92), (-0.28, 0.92))),
            Part(-1, poly=_rect(-0.47, 0.0, -0.3, 0.16)), Part(-1, poly=_rect(0.3, 0.0, 0.47, 0.16)),
            Part(1.6, poly=_rect(-0.46, 0.42, -0.3, 0.5)), Part(1.6, poly=_rect(0.3, 0.42, 0.46, 0.5)),
        ]  # fmt: skip
    if cls == "truck":
        if side:
            return [
                Part(0.95, poly=_rect(-0.5, 0.15, 0.22, 1.0)),
                Part(1.2, poly=((0.24, 0.15), (0.5, 0.15), (0.5, 0.5), (0.44, 0.78), (0.24, 0.78))),
                Part(-0.35, poly=((0.3, 0.55), (0.45, 0.55), (0.41, 0.72), (0.3, 0.72))),
                _wheel(-0.38, 0.15, aspect), _wheel(-0.22, 0.15, aspect), _wheel(0.36, 0.15, aspect),
            ]  # fmt: skip
        return [
            Part(0.95, poly=_rect(-0.5, 0.55, 0.5, 1.0)),
            Part(1.2, poly=_rect(-0.46, 0.1, 0.46, 0.56)),
            Part(-0.35, poly=_rect(-0.4, 0.32, 0.4, 0.52)),
            Part(-1, poly=_rect(-0.46, 0.0, -0.3, 0.12)), Part(-1, poly=_rect(0.3, 0.0, 0.46, 0.12)),
        ]  # fmt: skip
    if cls == "bus":
        if side:
            return [
                Part(1.0, poly=((-0.5, 0.1), (0.5, 0.1), (0.5, 0.9), (0.48, 0.97), (-0.48, 0.97), (-0.5, 0.9))),
                *[Part(-0.35, poly=_rect(x, 0.52, x + 0.11, 0.85)) for x in np.linspace(-0.46, 0.32, 6)],
                _wheel(-0.32, 0.12, aspect), _wheel(0.32, 0.12, aspect),
            ]  # fmt: skip
        return [
            Part(1.0, poly=((-0.5, 0.06), (0.5, 0.06), (0.5, 0.92), (0.45, 0.98), (-0.45, 0.98), (-0.5, 0.92))),
            Part(-0.35, poly=_rect(-0.43, 0.45, 0.43, 0.88)),
            Part(0.6, poly=_rect(-0.3, 0.9, 0.3, 0.96)),
            Part(-1, poly=_rect(-0.45, 0.0, -0.3, 0.08)), Part(-1, poly=_rect(0.3, 0.0, 0.45, 0.08)),
        ]  # fmt: skip
    if cls == "person":
        return _person(aspect, walking=walking)
    if cls == "bicycle":
        if side:
            return [
                Part(-1, ellipse=(-0.3, 0.33, 0.2 * 1.0, 0.33), ring=0.05),
                Part(-1, ellipse=(0.3, 0.33, 0.2, 0.33), ring=0.05),
                Part(1.0, poly=((-0.3, 0.3), (-0.02, 0.34), (0.28, 0.72), (0.32, 0.7), (0.3, 0.33), (0.24, 0.34),
                                (0.04, 0.62), (-0.08, 0.66), (-0.06, 0.72), (0.06, 0.72))),
                Part(0.8, poly=_rect(0.2, 0.88, 0.4, 0.95)),
                Part(0.8, poly=((0.26, 0.72), (0.3, 0.72), (0.34, 0.9), (0.3, 0.9))),
            ]  # fmt: skip
        return [
            Part(-1, poly=_rect(-0.08, 0.0, 0.08, 0.62)),
            Part(1.0, poly=_rect(-0.05, 0.6, 0.05, 0.88)),
            Part(0.8, poly=_rect(-0.5, 0.86, 0.5, 0.94)),
        ]
    if cls == "motorcycle":
        if side:
            return [
                _wheel(-0.3, 0.22, aspect), _wheel(0.32, 0.22, aspect),
                Part(1.0, poly=((-0.42, 0.35), (0.35, 0.35), (0.42, 0.62), (0.2, 0.72), (-0.2, 0.68), (-0.45, 0.55))),
                Part(0.6, poly=((0.28, 0.6), (0.34, 0.6), (0.38, 0.95), (0.32, 0.95))),
            ]  # fmt: skip
        return [
            Part(-1, poly=_rect(-0.12, 0.0, 0.12, 0.45)),
            Part(1.0, poly=((-0.3, 0.35), (0.3, 0.35), (0.25, 0.8), (-0.25, 0.8))),
            Part(0.8, poly=_rect(-0.5, 0.82, 0.5, 0.92)),
            Part(1.7, ellipse=(0.0, 0.6, 0.1, 0.07)),
        ]
    if cls == "traffic light":
        return [
            Part(0.25, poly=_rect(-0.5, 0.0, 0.5, 1.0)),
            Part(-2, ellipse=(0.0, 0.8, 0.3, 0.11)),
            Part(-3, ellipse=(0.0, 0.5, 0.3, 0.11)),
            Part(-4, ellipse=(0.0, 0.2, 0.3, 0.11)),
        ]
    raise ValueError(f"no silhouette for class {cls!r}")


def _person(aspect: float, *, walking: bool) -> list[Part]:
    """A standing person, or one in mid-stride (legs apart, arms swinging)."""
    head = Part(0.7, ellipse=(0.0, 0.92, 0.09 / aspect, 0.075), role="skin")
    torso = Part(1.0, poly=((-0.28, 0.5), (0.28, 0.5), (0.3, 0.82), (0.16, 0.86), (-0.16, 0.86), (-0.3, 0.82)),
                 role="top")  # fmt: skip
    if not walking:
        return [
            head, torso,
            Part(1.0, poly=((-0.44, 0.55), (-0.3, 0.55), (-0.3, 0.8), (-0.4, 0.78)), role="top"),
            Part(1.0, poly=((0.3, 0.55), (0.44, 0.55), (0.4, 0.78), (0.3, 0.8)), role="top"),
            Part(0.55, poly=((-0.24, 0.0), (-0.04, 0.0), (-0.02, 0.52), (-0.26, 0.52)), role="legs"),
            Part(0.55, poly=((0.04, 0.0), (0.24, 0.0), (0.26, 0.52), (0.02, 0.52)), role="legs"),
        ]  # fmt: skip
    return [
        head, torso,
        Part(1.0, poly=((-0.3, 0.8), (-0.2, 0.8), (-0.44, 0.52), (-0.56, 0.56)), role="top"),
        Part(1.0, poly=((0.2, 0.8), (0.3, 0.8), (0.56, 0.56), (0.44, 0.52)), role="top"),
        Part(0.55, poly=((-0.5, 0.0), (-0.3, 0.0), (0.02, 0.5), (-0.24, 0.52)), role="legs"),
        Part(0.55, poly=((0.3, 0.0), (0.5, 0.0), (0.24, 0.52), (-0.02, 0.5)), role="legs"),
        Part(-1, poly=_rect(-0.52, 0.0, -0.28, 0.04)), Part(-1, poly=_rect(0.28, 0.0, 0.52, 0.04)),
    ]  # fmt: skip


def person_outfit(rng: np.random.Generator) -> dict[str, tuple[float, float, float]]:
    """Skin, top and trouser colours of one pedestrian, muted as real clothing mostly is."""
    skin = np.array([225, 185, 150]) * rng.uniform(0.35, 1.05)
    top = _CLOTHES[rng.integers(len(_CLOTHES))] * rng.uniform(0.6, 1.2) + rng.normal(0, 12, 3)
    legs = _TROUSERS[rng.integers(len(_TROUSERS))] * rng.uniform(0.6, 1.2) + rng.normal(0, 10, 3)
    return {role: tuple(np.clip(c, 0, 255)) for role, c in (("skin", skin), ("top", top), ("legs", legs))}


_CLOTHES = np.array([(30, 30, 32), (235, 235, 230), (120, 120, 125), (40, 50, 90), (160, 40, 40), (200, 180, 140),
                     (70, 100, 60), (90, 140, 190), (220, 120, 60), (120, 60, 110), (230, 200, 60)],
                    np.float64)  # fmt: skip
_TROUSERS = np.array([(30, 35, 60), (25, 25, 28), (70, 70, 75), (160, 140, 105), (60, 80, 120), (110, 100, 90)],
                     np.float64)  # fmt: skip
_FIXED = {-1: (28, 28, 30), -2: (200, 40, 30), -3: (220, 170, 40), -4: (40, 190, 80)}
_TEMPLATES: dict[tuple[str, bool, bool], list[Part]] = {}


def _cached(cls: str, side: bool, walking: bool = False) -> list[Part]:
    key = (cls, side, walking)
    if key not in _TEMPLATES:
        _TEMPLATES[key] = template(cls, side, walking)
    return _TEMPLATES[key]


def draw_billboard(
    image: np.ndarray,
    ids: np.ndarray,
    instance_id: int,
    cls: str,
    side: bool,
    *,
    u: float,
    v: float,
    width_px: float,
    height_px: float,
    colour: tuple[float, float, float],
    fog: float,
    fog_colour: tuple[float, float, float],
    mirror: bool = False,
    outfit: dict[str, tuple[float, float, float]] | None = None,
    walking: bool = False,
) -> None:
    """Draw the silhouette with its bottom centre at pixel (u, v) and write ``instance_id`` into ``ids``.

    ``outfit`` colours a person's parts by role (skin, top, legs) instead of one body colour;
    ``walking`` draws a person in mid-stride.
    """
    shift = 4  # sub-pixel precision for cv2 drawing
    scale = float(1 << shift)
    sx = -width_px if mirror else width_px
    for part in _cached(cls, side, walking and cls == "person"):
        if outfit and part.role in outfit:
            col = np.asarray(outfit[part.role], np.float64)
        elif part.shade in _FIXED and part.shade < -1:
            col = np.asarray(_FIXED[int(part.shade)], np.float64)
        elif part.shade < 0:
            col = np.asarray(_FIXED[-1], np.float64) if part.shade == -1 else np.asarray(colour) * 0.35 + 25
        else:
            col = np.clip(np.asarray(colour) * part.shade, 0, 255)
        col = col * (1 - fog) + np.asarray(fog_colour) * fog
        col_t = tuple(int(c) for c in col)
        if part.poly:
            pts = np.array([[(u + x * sx) * scale, (v - y * height_px) * scale] for x, y in part.poly], np.int32)
            cv2.fillPoly(image, [pts], col_t, lineType=cv2.LINE_8, shift=shift)
            cv2.fillPoly(ids, [pts], instance_id, lineType=cv2.LINE_8, shift=shift)
        else:
            cx, cy, rx, ry = part.ellipse
            centre = (int((u + cx * sx) * scale), int((v - cy * height_px) * scale))
            axes = (max(int(abs(rx * width_px) * scale), 1), max(int(ry * height_px * scale), 1))
            thick = -1 if part.ring == 0 else max(1, int(part.ring * height_px + 0.5))
            cv2.ellipse(image, centre, axes, 0, 0, 360, col_t, thick, cv2.LINE_8, shift)
            cv2.ellipse(ids, centre, axes, 0, 0, 360, instance_id, thick, cv2.LINE_8, shift)
