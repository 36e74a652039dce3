"""``preprocess`` on CPU: the DALI pipeline of ``dali/preprocess.py`` on DALI's CPU operators.

Each request (one or more frames) runs through DALI on its own, so a corrupt frame fails only
its own request. Headers are checked first: non-JPEG, truncated-header and oversized frames are
refused before decoding, with the frame's position in the request named.
"""

from __future__ import annotations

import re

import numpy as np

from pipeline.serving import contract
from pipeline.serving.backends.common import error_response, log, parameters, resize_params, short_error
from pipeline.serving.jpeg import InvalidFrame, check_frame


def decode_failure(exc: BaseException) -> str:
    """DALI's long error, reduced to which frame could not be decoded."""
    match = re.search(r"Failed to decode sample #(\d+)", str(exc))
    if match:
        return f"frame {match.group(1)}: decoding failed (corrupt or truncated JPEG)"
    return f"frame decoding failed: {short_error(exc)}"


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        from dali.preprocess import build_pipeline

        p = parameters(args)
        self.params = resize_params(p)
        self.max_batch = int(p.get("max_batch", contract.MAX_BATCH))
        self.threads = int(p.get("threads", 2)) or 2
        self._build = build_pipeline
        self._new_pipeline()

    def _new_pipeline(self) -> None:
        self.pipe = self._build("cpu", self.params, batch_size=self.max_batch, num_threads=self.threads)
        self.pipe.build()

    def _run(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        if frames.ndim != 2 or frames.shape[0] == 0:
            raise InvalidFrame(f"expected a batch of encoded frames (B >= 1, bytes), got shape {frames.shape}")
        if frames.shape[0] > self.max_batch:
            raise InvalidFrame(f"batch of {frames.shape[0]} frames exceeds the limit of {self.max_batch}")
        for i, row in enumerate(frames):
            try:
                check_frame(row, max_pixels=contract.MAX_PIXELS, max_side=contract.MAX_SIDE)
            except InvalidFrame as exc:
                raise InvalidFrame(f"frame {i}: {exc}") from None
        self.pipe.feed_input("frames", list(frames))
        images, original, resized = self.pipe.run()
        return {
            "images": images.as_array(),
            "original_size": original.as_array().astype(np.int32),
            "resized_size": resized.as_array().astype(np.int32),
        }

    def execute(self, requests: list) -> list:
        import triton_python_backend_utils as pb_utils

        responses = []
        for request in requests:
            frames = pb_utils.get_input_tensor_by_name(request, "frames").as_numpy()
            try:
                out = self._run(frames)
            except InvalidFrame as exc:
                responses.append(error_response(pb_utils, str(exc), invalid=True))
                continue
            except Exception as exc:  # DALI reports a corrupt frame as a RuntimeError
                reason = decode_failure(exc)
                log.warning("preprocess refused a request: %s", reason)
                responses.append(error_response(pb_utils, reason, invalid=True))
                self._new_pipeline()  # DALI declares the pipeline object invalid after a failed run
                continue
            tensors = [pb_utils.Tensor(name, arr) for name, arr in out.items()]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
