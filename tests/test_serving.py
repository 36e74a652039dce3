"""The CPU-profile ensemble in the real Triton server gives the reference predictor's instances.

JPEG frames of synthetic street scenes go through preprocess (DALI, CPU operators) ->
sparseinst (ONNX Runtime) -> postprocess (numpy) in one ensemble request and are compared,
instance by instance, with :class:`Predictor` (PyTorch) on the same decoded frames.
"""

from __future__ import annotations

import asyncio
import uuid

import cv2
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from kafka import KafkaConsumer, KafkaProducer
from tritonclient.utils import InferenceServerException

from pipeline import rle
from pipeline.data.synthetic import synthetic_image
from pipeline.errors import InferenceTimeoutError, InvalidRequestError, ServerUnavailableError
from pipeline.local.ports import free_port
from pipeline.messages import FrameDetections
from pipeline.model.shipped import load_predictor
from pipeline.serving import contract
from pipeline.serving.client import ClientConfig, Frame, FrameFailure, SegmentationClient, pack_frames
from tests.conftest import SERVING_SCORE_THRESHOLD

pytestmark = pytest.mark.slow


def jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def decode(data: bytes) -> np.ndarray:
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def frames() -> list[Frame]:
    """Six frames from three cameras; one is 1280x720 so the resize path is exercised too."""
    images = [synthetic_image(77, i).image for i in range(5)]
    images.append(cv2.resize(synthetic_image(78, 0).image, (1280, 720), interpolation=cv2.INTER_LINEAR))
    return [Frame(jpeg=jpeg(im), camera_id=f"cam-{i % 3}", frame_index=i, capture_time=1000.0 + i, vehicle_id="v1")
            for i, im in enumerate(images)]  # fmt: skip


def run(coro):
    return asyncio.run(coro)


async def _infer(url: str, frames, **config):
    async with SegmentationClient(ClientConfig(url=url, **config)) as client:
        return await client.infer(frames)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_ensemble_matches_the_predictor_instance_by_instance(triton, frames):
    got = run(_infer(triton.grpc_url, frames))
    predictor = load_predictor(score_threshold=SERVING_SCORE_THRESHOLD)
    expected = predictor([decode(f.jpeg) for f in frames])
    compared = 0
    for frame, result, ref in zip(frames, got, expected):
        assert (result.camera_id, result.frame_index) == (frame.camera_id, frame.frame_index)
        assert (result.height, result.width) == decode(frame.jpeg).shape[:2]
        by_query = {d.query: d for d in result.instances}
        ref_queries = set(ref.query_index.tolist())
        # A query whose score sits within 1e-2 of the threshold may fall either side of it.
        near = {int(q) for q, s in zip(ref.query_index, ref.scores) if abs(s - SERVING_SCORE_THRESHOLD) < 1e-2}
        assert set(by_query) - ref_queries <= near or not (set(by_query) - ref_queries)
        for q, cls, score, mask in zip(ref.query_index, ref.classes, ref.scores, ref.masks):
            if int(q) not in by_query:
                assert int(q) in near, f"query {q} missing from the served result"
                continue
            d = by_query[int(q)]
            assert d.class_id == int(cls)
            assert abs(d.score - float(score)) <= 1e-2
            served = rle.decode(d.mask.model_dump())
            assert iou(served, mask) >= 0.95, (frame.frame_index, q, iou(served, mask))
            assert d.area == int(served.sum())
            compared += 1
    assert compared >= 10, "too few instances to make the comparison meaningful"


def test_an_explicit_model_version_is_used_and_an_unknown_one_refused(triton, frames):
    async def ready(version: str) -> bool:
        async with SegmentationClient(ClientConfig(url=triton.grpc_url, model_version=version)) as client:
            return await client.ready()

    assert run(ready("1")) and not run(ready("7"))
    result = run(_infer(triton.grpc_url, frames[:1], model_version="1"))
    assert result[0].model_version == "1" and result[0].model_name == contract.ENSEMBLE
    with pytest.raises(Exception, match="7"):
        run(_infer(triton.grpc_url, frames[:1], model_version="7", retries=0))


def test_detections_round_trip_through_the_broker_in_a_transaction(kafka, triton, frames):
    detections = run(_infer(triton.grpc_url, frames[:3]))
    topic = f"detections-{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap, transactional_id=f"tx-{uuid.uuid4().hex}")
    producer.init_transactions()
    producer.begin_transaction()
    for d in detections:
        producer.send(topic, key=d.camera_id.encode(), value=d.model_dump_json().encode())
    producer.commit_transaction()
    producer.close()
    consumer = KafkaConsumer(topic, bootstrap_servers=kafka.bootstrap, auto_offset_reset="earliest",
                             isolation_level="read_committed", group_id=f"g-{uuid.uuid4().hex}",
                             consumer_timeout_ms=15000)  # fmt: skip
    received = []
    for message in consumer:
        received.append(FrameDetections.model_validate_json(message.value))
        if len(received) == len(detections):
            break
    consumer.close()
    assert sorted(received, key=lambda d: d.frame_index) == detections


# Bad requests: each gets its own clear error, and the server goes on serving.


def _raw(url: str, array: np.ndarray, dtype: str = "UINT8"):
    client = grpcclient.InferenceServerClient(url)
    inp = grpcclient.InferInput("frames", list(array.shape), dtype)
    inp.set_data_from_numpy(array)
    return client.infer(contract.ENSEMBLE, [inp])


def _still_serving(url: str, frames) -> None:
    """A good batch right after the bad one is answered in full."""
    result = _raw(url, pack_frames([f.jpeg for f in frames]))
    assert result.as_numpy("num_instances").sum() >= 10
    assert result.as_numpy("frame_size").tolist() == [list(decode(f.jpeg).shape[:2]) for f in frames]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("corrupt", "frame 1: decoding failed"),
        ("not_jpeg", "not a JPEG"),
        ("oversized", "exceeds the limit"),
        ("empty", "input byte size mismatch"),
        ("wrong_dtype", "data-type is 'FP32', but model 'sparseinst_pipeline' expects 'UINT8'"),
    ],
)
def test_a_bad_request_gets_a_clear_error_and_the_server_goes_on(triton, frames, case, message):
    good = frames[0].jpeg
    if case == "corrupt":
        array, dtype = pack_frames([good, good[: len(good) // 2]]), "UINT8"
    elif case == "not_jpeg":
        array, dtype = pack_frames([b"GIF89a" + bytes(200)]), "UINT8"
    elif case == "oversized":
        array, dtype = pack_frames([jpeg(np.zeros((6000, 8000, 3), np.uint8))]), "UINT8"
    elif case == "empty":
        array, dtype = np.zeros((0, 16), np.uint8), "UINT8"
    else:
        array, dtype = pack_frames([good]).astype(np.float32), "FP32"
    with pytest.raises(InferenceServerException, match=message) as info:
        _raw(triton.grpc_url, array, dtype)
    assert str(info.value.status()) == "StatusCode.INVALID_ARGUMENT"
    _still_serving(triton.grpc_url, frames)


def test_the_client_isolates_a_corrupt_frame_in_a_batch(triton, frames):
    broken = Frame(jpeg=frames[1].jpeg[:3000], camera_id="cam-x", frame_index=9, capture_time=0.0)
    batch = [frames[0], broken, frames[2]]

    async def go():
        async with SegmentationClient(ClientConfig(url=triton.grpc_url)) as client:
            return await client.infer_isolating(batch)

    out = run(go())
    assert isinstance(out[1], FrameFailure) and "frame 0: decoding failed" in out[1].reason
    assert [o.frame_index for o in (out[0], out[2])] == [0, 2]
    assert all(isinstance(o, FrameDetections) for o in (out[0], out[2]))


def test_the_client_refuses_bad_batches_before_sending(triton, frames):
    with pytest.raises(InvalidRequestError, match="empty batch"):
        run(_infer(triton.grpc_url, []))
    oversized = Frame(jpeg=jpeg(np.zeros((6000, 8000, 3), np.uint8)), camera_id="c", frame_index=0, capture_time=0)
    with pytest.raises(InvalidRequestError, match=r"frame 0 .*exceeds"):
        run(_infer(triton.grpc_url, [oversized]))


def test_the_client_retries_an_unavailable_server_then_gives_up(frames):
    url = f"127.0.0.1:{free_port('127.0.0.1')}"  # nothing listens there

    async def go():
        async with SegmentationClient(ClientConfig(url=url, retries=2, backoff_s=0.05)) as client:
            try:
                await client.infer(frames[:1])
            finally:
                assert client.retried == 2

    with pytest.raises(ServerUnavailableError, match="after 3 attempts"):
        run(go())


def test_a_request_past_its_deadline_times_out(triton, frames):
    with pytest.raises(InferenceTimeoutError):
        run(_infer(triton.grpc_url, frames, timeout_s=0.001))


def test_the_host_budget_reads_each_models_cpu_from_its_own_stub_processes(triton, frames):
    from pipeline.bench.host import cpu_seconds, host_budget, triton_cpu_seconds

    models = ("preprocess", contract.NETWORK, "postprocess")
    before = triton_cpu_seconds(triton.process.pid, models)
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    batch = pack_frames([f.jpeg for f in frames[:4]])
    inp = grpcclient.InferInput("frames", list(batch.shape), "UINT8")
    inp.set_data_from_numpy(batch)
    for _ in range(3):
        client.infer(contract.ENSEMBLE, [inp])
    client.close()
    after = triton_cpu_seconds(triton.process.pid, models)
    spent = {k: after[k] - before[k] for k in before}
    assert all(v > 0 for v in spent.values()), spent  # every model's stubs and the server itself worked
    assert spent[contract.NETWORK] > spent["postprocess"]  # the network is the heavy one here
    assert cpu_seconds(2**22 + 12345) == 0.0  # a process that is gone counts nothing
    budget = host_budget({"ingest": 0.5, "network": 50.0, "postprocess": 1.5}, cameras=60, fps=30)
    assert budget["host_cpu_ms_per_frame_total"] == 2.0 and budget["host_cores_needed"] == 3.6  # network on the GPU
