"""``sparseinst`` on CPU: the exported ONNX file in ONNX Runtime.

Requests gathered by Triton's dynamic batcher run as one ONNX Runtime call and are split back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.serving.backends.common import error_response, log, parameters, short_error


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        import onnxruntime as ort

        p = parameters(args)
        path = Path(args["model_repository"]) / args["model_version"] / p.get("onnx_file", "model.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(p.get("threads", 0))  # 0: ONNX Runtime's default (all cores)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    def execute(self, requests: list) -> list:
        import triton_python_backend_utils as pb_utils

        batches = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        try:
            joined = batches[0] if len(batches) == 1 else np.concatenate(batches)  # one request: no copy
            outputs = self.session.run(self.output_names, {self.input_name: joined})
        except Exception as exc:
            log.warning("ONNX Runtime failed: %s", short_error(exc))
            return [error_response(pb_utils, f"network failed: {short_error(exc)}") for _ in requests]
        responses, start = [], 0
        for batch in batches:
            stop = start + batch.shape[0]
            tensors = [pb_utils.Tensor(name, out[start:stop]) for name, out in zip(self.output_names, outputs)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start = stop
        return responses
