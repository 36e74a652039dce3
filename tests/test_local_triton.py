"""The embedded Triton server is the real tritonserver: it loads Python-backend models and serves them."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from pipeline.local.triton import LocalTriton, LocalTritonConfig, ModelLoadError

pytestmark = pytest.mark.slow

SCALE_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", (x * 2).astype(np.float32))]))
        return out
"""

SCALE_CONFIG = """
name: "scale"
backend: "python"
max_batch_size: 8
input [ { name: "X", data_type: TYPE_FP32, dims: [ 4 ] } ]
output [ { name: "Y", data_type: TYPE_FP32, dims: [ 4 ] } ]
instance_group [ { kind: KIND_CPU, count: 1 } ]
"""


@pytest.fixture(scope="module")
def scale_server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    (repo / "scale" / "1").mkdir(parents=True)
    (repo / "scale" / "1" / "model.py").write_text(textwrap.dedent(SCALE_MODEL))
    (repo / "scale" / "config.pbtxt").write_text(SCALE_CONFIG)
    with LocalTriton(LocalTritonConfig(model_repository=repo)) as server:
        yield server


def test_serves_a_python_backend_model_over_http_and_grpc(scale_server):
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    http = httpclient.InferenceServerClient(scale_server.http_url)
    inp = httpclient.InferInput("X", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    np.testing.assert_array_equal(http.infer("scale", [inp]).as_numpy("Y"), x * 2)
    grpc = grpcclient.InferenceServerClient(scale_server.grpc_url)
    ginp = grpcclient.InferInput("X", list(x.shape), "FP32")
    ginp.set_data_from_numpy(x)
    np.testing.assert_array_equal(grpc.infer("scale", [ginp]).as_numpy("Y"), x * 2)


def test_binds_loopback_and_reports_model_ready(scale_server):
    assert scale_server.http_url.startswith("127.0.0.1:") and scale_server.grpc_url.startswith("127.0.0.1:")
    assert httpclient.InferenceServerClient(scale_server.http_url).is_model_ready("scale")


def test_a_model_that_fails_to_load_is_reported_with_its_reason(tmp_path):
    (tmp_path / "broken" / "1").mkdir(parents=True)
    (tmp_path / "broken" / "1" / "model.py").write_text("raise RuntimeError('weights missing')\n")
    (tmp_path / "broken" / "config.pbtxt").write_text(SCALE_CONFIG.replace('"scale"', '"broken"'))
    with pytest.raises(ModelLoadError, match="broken"):
        LocalTriton(LocalTritonConfig(model_repository=tmp_path, startup_timeout_s=60)).start()
