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


# answers in the ensemble's shape that no server should send: more instances than arrays, a NaN score
MALFORMED_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for request in requests:
            n = pb_utils.get_input_tensor_by_name(request, "frames").as_numpy().shape[0]
            answer = {"num_instances": np.full((n, 1), 3, np.int32), "scores": np.full((n, 1), np.nan, np.float32),
                      "classes": np.zeros((n, 1), np.int32), "boxes": np.zeros((n, 1, 4), np.float32),
                      "masks_rle": np.full((n, 1), b"0", object), "query_index": np.zeros((n, 1), np.int32),
                      "frame_size": np.full((n, 2), 64, np.int32)}
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor(k, v) for k, v in answer.items()]))
        return out
"""


def _malformed_config() -> str:
    from pipeline.serving import contract

    def io(kind: str, tensors) -> str:
        rows = ", ".join(f'{{ name: "{t.name}", data_type: TYPE_{t.dtype}, dims: {list(t.dims)} }}' for t in tensors)
        return f"{kind} [ {rows} ]"

    ensemble = contract.models(contract.ModelSpec(
        name="x", input_height=64, input_width=64, min_size=64, max_size=64, num_queries=1, num_classes=1,
        pixel_mean=(0, 0, 0), pixel_std=(1, 1, 1)))[contract.ENSEMBLE]  # fmt: skip
    return (f'name: "malformed"\nbackend: "python"\nmax_batch_size: {contract.MAX_BATCH}\n'
            f"{io('input', ensemble.inputs)}\n{io('output', ensemble.outputs)}\n"
            "instance_group [ { kind: KIND_CPU, count: 1 } ]\n")  # fmt: skip


@pytest.fixture(scope="module")
def scale_server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    (repo / "scale" / "1").mkdir(parents=True)
    (repo / "scale" / "1" / "model.py").write_text(textwrap.dedent(SCALE_MODEL))
    (repo / "scale" / "config.pbtxt").write_text(SCALE_CONFIG)
    (repo / "malformed" / "1").mkdir(parents=True)
    (repo / "malformed" / "1" / "model.py").write_text(textwrap.dedent(MALFORMED_MODEL))
    (repo / "malformed" / "config.pbtxt").write_text(_malformed_config())
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


def test_ingest_counts_malformed_answers_as_bad_answer_and_runs_to_the_end(scale_server, kafka):
    from pipeline.ingest.runner import IngestRunner
    from pipeline.ingest.sources import SyntheticVehicle
    from pipeline.publish import DetectionPublisher
    from pipeline.serving.client import ClientConfig
    from tests.streams import new_topics

    topics = new_topics(kafka.bootstrap)
    publisher = DetectionPublisher(kafka.bootstrap, topics.detections)
    client = ClientConfig(url=scale_server.grpc_url, model_name="malformed", retries=0)
    runner = IngestRunner([SyntheticVehicle("veh-bad", 3, cameras=2, seconds=1.0)], client, publisher)
    try:
        runner.run()  # returns: no exception escapes the loop
    finally:
        publisher.close()
    stats = runner.stats
    read = sum(stats.frames_read.values())
    assert read > 0 and stats.dropped == {"bad_answer": read}  # every frame counted, none published
    assert not any(stats.published.values())


def test_a_killed_or_stopped_service_leaves_no_child_process_behind(tmp_path):
    """Triton's Python-backend stubs have been seen outliving a killed server; the local services reap them."""
    import subprocess
    import time
    from pathlib import Path

    from pipeline.local.process import LocalService, descendants

    class Parent(LocalService):
        name = "parent"

        def start(self):  # a parent whose child ignores SIGTERM and survives the parent's death
            self.spawn(["sh", "-c", "trap '' TERM; sleep 300 & wait"], subprocess.DEVNULL)
            deadline = time.monotonic() + 10
            while not descendants(self.process.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            return self

    for end in ("kill", "stop"):
        service = Parent().start()
        children = descendants(service.process.pid)
        assert children, "the child did not start"
        service.kill() if end == "kill" else service.stop(timeout_s=1.0)  # the parent ignores SIGTERM too
        deadline = time.monotonic() + 5  # init reaps the killed orphans
        while any(Path(f"/proc/{p}").exists() for p in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [p for p in children if Path(f"/proc/{p}").exists()], end
