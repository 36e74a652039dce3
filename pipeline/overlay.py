"""Drawing instances over frames, for reports (analytics code never draws)."""

from __future__ import annotations

import base64

import cv2
import numpy as np

from pipeline.data.classes import class_name


def colour_for(key: int) -> tuple[int, int, int]:
    rng = np.random.default_rng(key * 7919 + 17)
    return tuple(int(c) for c in rng.integers(60, 255, 3))


def draw_instances(
    image: np.ndarray,
    masks: np.ndarray,
    classes: np.ndarray,
    scores: np.ndarray | None = None,
    *,
    alpha: float = 0.5,
    labels: list[str | None] | None = None,
) -> np.ndarray:
    """RGB image with each mask tinted, outlined and labelled with its class (and score, and a label
    such as a track id, which also picks the colour so a track keeps it across frames)."""
    out = image.copy()
    for i, mask in enumerate(masks):
        if not mask.any():
            continue
        label = labels[i] if labels else None
        colour = colour_for(int.from_bytes(label.encode()[-4:], "little") if label else i)
        out[mask] = (out[mask] * (1 - alpha) + np.asarray(colour) * alpha).astype(np.uint8)
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, colour, 1)
        ys, xs = np.nonzero(mask)
        text = class_name(int(classes[i]))
        if scores is not None:
            text += f" {scores[i]:.2f}"
        if label:
            text = f"{label} {text}"
        cv2.putText(out, text, (int(xs.min()), max(int(ys.min()) - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                    (255, 255, 255), 1, cv2.LINE_AA)  # fmt: skip
    return out


def jpeg_data_uri(image: np.ndarray, quality: int = 85) -> str:
    ok, buf = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("could not encode image as JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")
