"""``bench consumer`` and ``bench pipeline``: measured figures for the streaming side.

- consumer: detection messages per second that one event processor (one process, real Kafka,
  exactly-once transactions) turns into events, with 10 instances per frame.
- pipeline: synthetic cameras through ingest, the Triton ensemble, Kafka and the event processor,
  end to end: frames per second and frame-to-event latency (from a frame entering ingest to
  the commit of the transaction that holds its events), next to the Triton model alone
  (``sparseinst`` at batch 8, same server, same run) and the ratio.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from pipeline.bench.timing import percentile_ms

log = logging.getLogger(__name__)


def _write(figures: dict, json_path: Path | None) -> None:
    print(json.dumps(figures, indent=2))
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(figures, indent=2) + "\n")


def bench_consumer(*, messages: int = 3000, width: int = 1280, height: int = 720, instances: int = 10,
                   json_path: Path | None = None) -> dict:  # fmt: skip
    """One event processor against a bare kafka-python loop that reads and parses the same messages."""
    from kafka import KafkaConsumer, KafkaProducer

    from consumers.processor import EventProcessor
    from consumers.rules import load_rules
    from pipeline.data.detections import moving_cars
    from pipeline.demo.app import DEMO_RULES
    from pipeline.kafka.topics import Topics, TopicSpec, ensure_topics
    from pipeline.local.kafka import LocalKafka
    from pipeline.messages import FrameDetections

    camera = "bench/right"  # the demo's side camera: a zone and a line, so every rule has work
    frames = moving_cars(messages, camera_id=camera, width=width, height=height, instances=instances)
    values = [f.model_dump_json().encode() for f in frames]
    rules = load_rules(DEMO_RULES)
    with LocalKafka() as kafka:
        topics = Topics(detections=f"bench-{uuid.uuid4().hex[:6]}", events="bench-events")
        ensure_topics(kafka.bootstrap, topics, TopicSpec(partitions=1))
        producer = KafkaProducer(bootstrap_servers=kafka.bootstrap, compression_type="gzip", linger_ms=5)
        for v in values:
            producer.send(topics.detections, key=camera.encode(), value=v)
        producer.flush()
        producer.close()

        # baseline: what reading and parsing the messages alone costs in kafka-python
        reader = KafkaConsumer(topics.detections, bootstrap_servers=kafka.bootstrap, group_id=None,
                               auto_offset_reset="earliest", enable_auto_commit=False,
                               isolation_level="read_committed", max_poll_records=200)  # fmt: skip
        seen, start = 0, None
        while seen < messages:
            for records in reader.poll(timeout_ms=1000).values():
                start = start or time.monotonic()
                for r in records:
                    FrameDetections.model_validate_json(r.value)
                seen += len(records)
        baseline_wall = time.monotonic() - (start or time.monotonic())
        reader.close()

        proc = EventProcessor(kafka.bootstrap, rules, topics=topics, group_id="bench", max_poll_records=500)
        while not proc.poll_once():  # joining the group and the first fetch are not throughput
            pass
        start = time.monotonic() - proc.stats.busy_s  # ...but the first poll's processing is
        while proc.stats.messages < messages:
            proc.poll_once()
        wall = time.monotonic() - start
        stats = proc.stats
        proc.close()
    baseline = messages / baseline_wall
    figures = {
        "consumer_msgs_per_s": round(messages / wall, 1),
        "consumer_baseline_msgs_per_s": round(baseline, 1),
        "consumer_vs_baseline": round(messages / wall / baseline, 3),
        "messages": messages,
        "instances_per_message": instances,
        "frame_width": width,
        "frame_height": height,
        "message_bytes": round(sum(map(len, values)) / len(values)),
        "events": sum(stats.events.values()),
        "transactions": stats.transactions,
        "wall_s": round(wall, 2),
    }
    _write(figures, json_path)
    return figures


def bench_pipeline(*, cameras: int = 4, seconds: float = 10.0, seed: int = 0, batch: int = 8,
                   json_path: Path | None = None) -> dict:  # fmt: skip
    import tritonclient.grpc as grpcclient

    from consumers.processor import EventProcessor
    from consumers.rules import load_rules
    from pipeline.config import Settings
    from pipeline.demo.app import DEMO_RULES
    from pipeline.ingest.runner import IngestRunner
    from pipeline.ingest.sources import SyntheticVehicle
    from pipeline.kafka.topics import Topics, ensure_topics
    from pipeline.local.kafka import LocalKafka
    from pipeline.local.stack import ensure_repository
    from pipeline.local.triton import LocalTriton, LocalTritonConfig
    from pipeline.publish import DetectionPublisher
    from pipeline.serving import contract
    from pipeline.serving.client import ClientConfig
    from pipeline.serving.repository import read_spec

    rules = load_rules(DEMO_RULES)
    repo = ensure_repository(Settings())
    spec = read_spec(repo)
    with LocalKafka() as kafka, LocalTriton(LocalTritonConfig(model_repository=repo)) as triton:
        # the model alone: the network model of the same server, batch `batch`, back to back
        client = grpcclient.InferenceServerClient(triton.grpc_url)
        x = np.random.default_rng(0).normal(size=(batch, 3, spec.input_height, spec.input_width)).astype(np.float32)
        inp = grpcclient.InferInput("images", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        for _ in range(2):
            client.infer(contract.NETWORK, [inp])
        t0, reps = time.monotonic(), 10
        for _ in range(reps):
            client.infer(contract.NETWORK, [inp])
        model_fps = batch * reps / (time.monotonic() - t0)
        client.close()

        topics = Topics(detections=f"bench-{uuid.uuid4().hex[:6]}", events="bench-pipeline-events")
        ensure_topics(kafka.bootstrap, topics)
        proc = EventProcessor(kafka.bootstrap, rules, topics=topics, group_id=f"bench-{uuid.uuid4().hex[:6]}")
        entered: dict[tuple[str, int], float] = {}
        done: dict[tuple[str, int], float] = {}
        proc.on_commit = lambda frames: done.update({f: time.monotonic() for f in frames})
        worker = threading.Thread(target=proc.run, daemon=True)
        worker.start()
        vehicles = [SyntheticVehicle(f"veh-{v}", seed + v, cameras=min(4, cameras - 4 * v), seconds=seconds)
                    for v in range(-(-cameras // 4))]  # fmt: skip
        publisher = DetectionPublisher(kafka.bootstrap, topics.detections)
        runner = IngestRunner(vehicles, ClientConfig(url=triton.grpc_url), publisher, max_batch=batch,
                              on_published=lambda c, r: entered.__setitem__((c.camera_id, c.frame_index),
                                                                            c.enqueued))  # fmt: skip
        start = time.monotonic()
        stats = runner.run()
        publisher.close()
        expected = len(entered)
        deadline = time.monotonic() + 120
        while sum(1 for k in entered if k in done) < expected and time.monotonic() < deadline:
            time.sleep(0.1)
        end = max(done.values()) if done else time.monotonic()
        proc.stop()
        worker.join(timeout=30)
        proc.close()
    latencies = np.array([done[k] - entered[k] for k in entered if k in done])
    pipeline_fps = len(latencies) / (end - start)
    figures = {
        "pipeline_fps": round(pipeline_fps, 2),
        "model_fps": round(model_fps, 2),
        "pipeline_efficiency": round(pipeline_fps / model_fps, 3),
        "latency_p50_ms": round(percentile_ms(latencies, 50), 1),
        "latency_p99_ms": round(percentile_ms(latencies, 99), 1),
        "frames": len(latencies),
        "cameras": cameras,
        "frames_dropped": dict(stats.dropped),
        "batch": batch,
    }
    _write(figures, json_path)
    return figures
