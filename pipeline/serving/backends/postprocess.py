"""``postprocess`` (both profiles): the kept queries' scores, rescoring, masks to frame size, boxes, COCO RLE."""

from __future__ import annotations

from threadpoolctl import threadpool_limits

from pipeline.serving.backends.common import error_response, log, parameters, short_error
from pipeline.serving.postprocess import pack_results, postprocess_frame


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        p = parameters(args)
        self.score_threshold = float(p.get("score_threshold", 0.3))
        self.mask_threshold = float(p.get("mask_threshold", 0.45))
        self.stride = int(p.get("mask_stride", 4))
        # each instance's resampling is a few small products: a BLAS thread pool spins more CPU than it saves,
        # next to the server's other models on the same cores
        threadpool_limits(1, user_api="blas")

    def execute(self, requests: list) -> list:
        import triton_python_backend_utils as pb_utils

        responses = []
        for request in requests:
            get = lambda name, r=request: pb_utils.get_input_tensor_by_name(r, name).as_numpy()  # noqa: E731
            try:
                scores, masks, queries = get("class_scores"), get("mask_logits"), get("queries")
                original, resized = get("original_size"), get("resized_size")
                results = [
                    postprocess_frame(s, m, tuple(o), tuple(r), score_threshold=self.score_threshold,
                                      mask_threshold=self.mask_threshold, stride=self.stride, queries=q)
                    for s, m, q, o, r in zip(scores, masks, queries, original, resized)
                ]  # fmt: skip
                packed = pack_results(results, original)
            except Exception as exc:
                log.warning("postprocess failed: %s", short_error(exc))
                responses.append(error_response(pb_utils, f"postprocess failed: {short_error(exc)}"))
                continue
            tensors = [pb_utils.Tensor(name, arr) for name, arr in packed.items()]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
