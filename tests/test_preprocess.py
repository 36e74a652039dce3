"""The serving preprocessing (DALI, CPU operators) gives exactly what the plain operator chain gives:
decode, resize, normalise, pad, for frames at the target size (where the resize is skipped) and
frames that need one (larger, smaller, portrait)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dali.preprocess import build_pipeline
from pipeline.data.synthetic import synthetic_image

PARAMS = {"min_size": 640, "max_size": 853, "input_height": 384, "input_width": 640,
          "pixel_mean": (123.675, 116.28, 103.53), "pixel_std": (58.395, 57.12, 57.375)}  # fmt: skip


def _plain_chain(frames: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Every frame resized, then normalised, then padded: three operators, no shortcut."""
    from nvidia.dali import fn, pipeline_def, types

    p = PARAMS
    limit = [float(min(p["max_size"], p["input_height"])), float(min(p["max_size"], p["input_width"]))]

    @pipeline_def(batch_size=len(frames), num_threads=1, device_id=None)
    def chain():
        encoded = fn.external_source(name="frames", dtype=types.UINT8, ndim=1)
        decoded = fn.decoders.image(encoded, device="cpu", output_type=types.RGB)
        resized = fn.resize(decoded, resize_shorter=float(p["min_size"]), max_size=limit,
                            interp_type=types.INTERP_LINEAR, antialias=True)  # fmt: skip
        images = fn.crop_mirror_normalize(resized, dtype=types.FLOAT, output_layout="CHW",
                                          mean=list(p["pixel_mean"]), std=list(p["pixel_std"]))  # fmt: skip
        padded = fn.pad(images, axis_names="HW", shape=(p["input_height"], p["input_width"]), fill_value=0.0)
        return padded, resized.shape(dtype=types.INT32)

    pipe = chain()
    pipe.build()
    pipe.feed_input("frames", frames)
    images, shapes = pipe.run()
    return images.as_array(), shapes.as_array()[:, :2]


@pytest.mark.parametrize("size", [(360, 640), (720, 1280), (1080, 1920), (640, 360), (240, 320)])
def test_the_preprocessing_equals_the_plain_operator_chain(size):
    h, w = size
    rgb = cv2.resize(synthetic_image(2024, 3).image, (w, h), interpolation=cv2.INTER_AREA)
    jpeg = np.frombuffer(cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes(), np.uint8)
    frames = [jpeg, jpeg]
    pipe = build_pipeline("cpu", PARAMS, batch_size=2, num_threads=1)
    pipe.build()
    pipe.feed_input("frames", frames)
    images, original, resized = (out.as_array() for out in pipe.run())
    want_images, want_resized = _plain_chain(frames)
    np.testing.assert_array_equal(images, want_images)
    np.testing.assert_array_equal(resized, want_resized)
    assert original.tolist() == [[h, w], [h, w]]
