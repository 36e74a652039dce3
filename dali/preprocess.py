"""The SparseInst preprocessing pipeline in DALI, for both serving profiles.

Decode JPEG to RGB, resize keeping the aspect ratio (short side ``min_size``, long side at most
``max_size``, linear with antialiasing like the reference PIL resize; frames whose official size
would not fit the network's fixed input, such as portrait ones, are shrunk to fit), normalise,
lay out CHW and zero-pad bottom/right to the network's fixed input size. It also emits the
decoded frame size and the resized size, which the postprocess needs to map masks back to the
frame. A frame already at its target size (the usual camera frame) skips the resize by a DALI
conditional: resampling it would copy it unchanged at more cost than everything else together.
Normalising, the CHW layout and the padding are one operator (a crop past the border, zero-filled).

``device="gpu"`` decodes with nvJPEG (``mixed``) and runs the rest on the GPU; such a pipeline
can only be built, and therefore serialized, on a machine with CUDA. ``device="cpu"`` uses
DALI's CPU operators and runs anywhere. This module imports nothing but DALI so that it can be
copied into a model repository and loaded by Triton's DALI backend (``@autoserialize``).
"""

from __future__ import annotations

import json
from pathlib import Path

import nvidia.dali.math as dmath
from nvidia.dali import fn, pipeline_def, types

INPUT_NAME = "frames"
OUTPUT_NAMES = ("images", "original_size", "resized_size")


def preprocess_graph(
    device: str,
    *,
    min_size: int,
    max_size: int,
    input_height: int,
    input_width: int,
    pixel_mean: tuple[float, float, float],
    pixel_std: tuple[float, float, float],
):
    """The operator graph; call inside a ``pipeline_def`` function. Returns the three outputs."""
    if device not in ("cpu", "gpu"):
        raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")
    encoded = fn.external_source(name=INPUT_NAME, dtype=types.UINT8, ndim=1, no_copy=False)
    shape = fn.peek_image_shape(encoded, dtype=types.INT32)  # (H, W, C) from the header, before decoding
    decoded = fn.decoders.image(encoded, device="mixed" if device == "gpu" else "cpu", output_type=types.RGB)
    # per-axis limits: the official long-side limit, and the frame must fit the fixed network input
    limit_h, limit_w = float(min(max_size, input_height)), float(min(max_size, input_width))
    h, w = fn.cast(shape[0], dtype=types.FLOAT), fn.cast(shape[1], dtype=types.FLOAT)
    scale = dmath.min(dmath.min(float(min_size) / dmath.min(h, w), limit_h / h), limit_w / w)
    if scale == 1.0:  # already at its target size (the usual camera frame): nothing to resample
        resized = decoded
    else:
        resized = fn.resize(
            decoded,
            resize_shorter=float(min_size),
            max_size=[limit_h, limit_w],
            interp_type=types.INTERP_LINEAR,
            antialias=True,  # uint8 out, rounded, as the reference PIL resize
        )
    resized_shape = resized.shape(dtype=types.INT32)
    images = fn.crop_mirror_normalize(
        resized,
        dtype=types.FLOAT,
        output_layout="CHW",
        mean=list(pixel_mean),
        std=list(pixel_std),
        # a crop to the network input anchored top-left and past the border: zero padding bottom/right
        crop=(input_height, input_width),
        crop_pos_x=0.0,
        crop_pos_y=0.0,
        out_of_bounds_policy="pad",
        fill_values=[0.0],
    )
    return images, shape[0:2], resized_shape[0:2]


def build_pipeline(device: str, params: dict, *, batch_size: int, num_threads: int = 2, device_id: int | None = None):
    """A built-ready pipeline; ``params`` holds the keyword arguments of :func:`preprocess_graph`."""

    @pipeline_def(batch_size=batch_size, num_threads=num_threads, device_id=device_id, prefetch_queue_depth=1,
                  enable_conditionals=True)  # fmt: skip
    def sparseinst_preprocess():
        return preprocess_graph(device, **params)

    return sparseinst_preprocess()


def load_params(path: str | Path) -> dict:
    """Pipeline parameters from the ``preprocess.json`` a model repository keeps beside this file."""
    raw = json.loads(Path(path).read_text())
    keys = ("min_size", "max_size", "input_height", "input_width", "pixel_mean", "pixel_std")
    missing = [k for k in keys if k not in raw]
    if missing:
        raise ValueError(f"{path}: missing preprocess parameters {missing}")
    return {k: tuple(raw[k]) if k.startswith("pixel_") else int(raw[k]) for k in keys}
