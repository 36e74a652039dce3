"""The SparseInst preprocessing pipeline in DALI, for both serving profiles and every source.

Three sources share one resize-normalise-pad definition (:func:`fit_to_input`): JPEG frames,
encoded video segments (DALI's video decoder; NVDEC on GPU hosts) and frames decoded outside
DALI (FFmpeg, for the codecs DALI's CPU decoder refuses). For JPEG: decode to RGB, resize
keeping the aspect ratio (short side ``min_size``, long side at most ``max_size``, linear with
antialiasing like the reference PIL resize; frames whose official size would not fit the
network's fixed input, such as portrait ones, are shrunk to fit), normalise,
lay out CHW and zero-pad bottom/right to the network's fixed input size. It also emits the
decoded frame size and the resized size, which the postprocess needs to map masks back to the
frame. A frame already at its target size (the usual camera frame) skips the resize by a DALI
conditional: resampling it would copy it unchanged at more cost than everything else together.
Normalising, the CHW layout and the padding are one operator (a crop past the border, zero-filled).

``device="gpu"`` decodes with nvJPEG or NVDEC (``mixed``) and runs the rest on the GPU; such a pipeline
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
DECODED_NAME = "decoded"  # decoded RGB frames (HWC), for frames a decoder outside DALI produced
SEGMENT_NAME = "segment"  # an encoded video segment (one container in memory)
SKIP_NAME = "skip"  # leading frames of the segment to decode but not return
SOURCES = ("jpeg", "frames", "video")


def fit_to_input(
    images,
    height,
    width,
    *,
    layout: str,
    min_size: int,
    max_size: int,
    input_height: int,
    input_width: int,
    pixel_mean: tuple[float, float, float],
    pixel_std: tuple[float, float, float],
):
    """Resize keeping the aspect ratio, normalise, CHW and zero-pad: the one definition every source shares.

    ``images`` are RGB frames (``layout`` ``HWC``) or sequences of them (``FHWC``), ``height`` and
    ``width`` their size as DALI scalars. Returns the network input and the resized (height, width).
    """
    # per-axis limits: the official long-side limit, and the frame must fit the fixed network input
    limit_h, limit_w = float(min(max_size, input_height)), float(min(max_size, input_width))
    h, w = fn.cast(height, dtype=types.FLOAT), fn.cast(width, dtype=types.FLOAT)
    scale = dmath.min(dmath.min(float(min_size) / dmath.min(h, w), limit_h / h), limit_w / w)
    if scale == 1.0:  # already at its target size (the usual camera frame): nothing to resample
        resized = images
    else:
        resized = fn.resize(
            images,
            resize_shorter=float(min_size),
            max_size=[limit_h, limit_w],
            interp_type=types.INTERP_LINEAR,
            antialias=True,  # uint8 out, rounded, as the reference PIL resize
        )
    first = layout.index("H")
    resized_shape = resized.shape(dtype=types.INT32)
    out = fn.crop_mirror_normalize(
        resized,
        dtype=types.FLOAT,
        output_layout=layout.replace("HWC", "CHW"),
        mean=list(pixel_mean),
        std=list(pixel_std),
        # a crop to the network input anchored top-left and past the border: zero padding bottom/right
        crop=(input_height, input_width),
        crop_pos_x=0.0,
        crop_pos_y=0.0,
        out_of_bounds_policy="pad",
        fill_values=[0.0],
    )
    return out, resized_shape[first : first + 2]


def preprocess_graph(device: str, **params: object):
    """JPEG frames: the operator graph; call inside a ``pipeline_def`` function. Returns the three outputs."""
    if device not in ("cpu", "gpu"):
        raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")
    encoded = fn.external_source(name=INPUT_NAME, dtype=types.UINT8, ndim=1, no_copy=False)
    shape = fn.peek_image_shape(encoded, dtype=types.INT32)  # (H, W, C) from the header, before decoding
    decoded = fn.decoders.image(encoded, device="mixed" if device == "gpu" else "cpu", output_type=types.RGB)
    images, resized = fit_to_input(decoded, shape[0], shape[1], layout="HWC", **params)
    return images, shape[0:2], resized


def frames_graph(**params: object):
    """Frames decoded outside DALI (FFmpeg, for codecs DALI's CPU decoder refuses), one HWC frame per sample."""
    frames = fn.external_source(name=DECODED_NAME, dtype=types.UINT8, ndim=3, layout="HWC", no_copy=False)
    shape = frames.shape(dtype=types.INT32)
    images, resized = fit_to_input(frames, shape[0], shape[1], layout="HWC", **params)
    return images, shape[0:2], resized


def video_graph(device: str, **params: object):
    """An encoded segment decoded by DALI (``mixed``: NVDEC on GPU hosts), one segment per sample.

    Outputs one sequence per segment: (F, 3, H, W) images and the frames' (height, width) before and
    after resizing; the first ``skip`` decoded frames (a piece's lead-in) are cut off before resizing.
    """
    if device not in ("cpu", "gpu"):
        raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")
    encoded = fn.external_source(name=SEGMENT_NAME, dtype=types.UINT8, ndim=1, no_copy=False)
    skip = fn.external_source(name=SKIP_NAME, dtype=types.INT32, ndim=1, no_copy=False)
    decoded = fn.decoders.video(encoded, device="mixed" if device == "gpu" else "cpu")
    shape = decoded.shape(dtype=types.INT32)  # (F, H, W, C)
    kept = fn.slice(decoded, skip, shape[0:1] - skip, axes=[0])
    images, resized = fit_to_input(kept, shape[1], shape[2], layout="FHWC", **params)
    return images, shape[1:3], resized


def build_pipeline(device: str, params: dict, *, batch_size: int, num_threads: int = 2, device_id: int | None = None,
                   source: str = "jpeg"):  # fmt: skip
    """A built-ready pipeline; ``params`` holds the keyword arguments of :func:`fit_to_input` but the layout.

    ``source``: ``jpeg`` (encoded frames), ``frames`` (decoded HWC frames, CPU) or ``video`` (segments).
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")

    @pipeline_def(batch_size=batch_size, num_threads=num_threads, device_id=device_id, prefetch_queue_depth=1,
                  enable_conditionals=True)  # fmt: skip
    def sparseinst_preprocess():
        if source == "frames":
            return frames_graph(**params)
        if source == "video":
            return video_graph(device, **params)
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
