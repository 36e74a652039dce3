"""A camera's state as one bounded record of the state topic: compressed, and trimmed where it would not fit.

Trimming policy, in order, until the compressed record fits in ``max_bytes``:

1. every track's saved mask becomes its box (a rectangle at the frame's size): after a restart
   those tracks match on box-shaped masks for one frame, then on real masks again;
2. tracks are dropped, tentative ones first, then those seen longest ago (the dropped tracks
   raise no further events).

Both are counted by the caller; a state never fails to save.
"""

from __future__ import annotations

from consumers.camera import CameraStep
from consumers.tracking import Track
from pipeline.kafka.state import encode_value
from pipeline.rle import runs_to_string


def box_rle(box: tuple[float, float, float, float], height: int, width: int) -> dict:
    """COCO RLE (column-major) of ``box`` filled, clipped to the frame."""
    x1, y1 = max(0, int(box[0])), max(0, int(box[1]))
    x2, y2 = min(width, max(x1, round(box[2]))), min(height, max(y1, round(box[3])))
    if x2 <= x1 or y2 <= y1:
        return {"size": [height, width], "counts": runs_to_string([height * width])}
    tall = y2 - y1
    runs = [x1 * height + y1]
    for _ in range(x1, x2 - 1):
        runs += [tall, height - tall]
    runs += [tall, (height - y2) + (width - x2) * height]
    return {"size": [height, width], "counts": runs_to_string(runs)}


def _boxes_for_masks(tracks: list[Track]) -> None:
    for t in tracks:
        if t.mask:
            h, w = (int(v) for v in t.mask["size"])
            t.mask = box_rle(t.box, h, w)


def state_record(proc: CameraStep, max_bytes: int) -> tuple[bytes, int]:
    """The record to produce for ``proc``'s camera, and how many tracks were trimmed to fit (0: none).

    Trimming changes the live state too, so what runs on is what a restarted member would load.
    """
    state = proc.snapshot()
    value = encode_value(state.model_dump_json().encode())
    if len(value) <= max_bytes:
        return value, 0
    trimmed = len(state.tracks)
    _boxes_for_masks(state.tracks)
    proc.forget_masks()
    value = encode_value(state.model_dump_json().encode())
    if len(value) > max_bytes:
        # keep the confirmed, most recently seen tracks: halve what is kept until it fits
        ranked = sorted(state.tracks, key=lambda t: (t.confirmed, t.last_index), reverse=True)
        everything, keep = list(state.tracks), len(ranked)
        while keep and len(value) > max_bytes:
            keep //= 2
            kept = {id(t) for t in ranked[:keep]}
            state.tracks = [t for t in everything if id(t) in kept]  # in their order: matching stays the same
            proc.prune()  # and what the rules kept about the dropped ones
            value = encode_value(state.model_dump_json().encode())
    return value, trimmed
