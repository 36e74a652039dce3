"""``bench consumer`` and ``bench pipeline``: measured figures for the streaming side.

- consumer: detection messages per second that one event processor (one process, real Kafka,
  exactly-once transactions) turns into events, with 10 instances per frame.
- pipeline: cameras replaying pre-encoded synthetic frames through ingest, the Triton ensemble,
  Kafka and the event processor, end to end. First flat out: frames per second (capacity) next
  to ONNX Runtime alone (same model, batch and threads, same run) and the ratio. Then paced at
  50, 75 and 90 % of that capacity: frame-to-event latency (from a frame entering ingest to the
  commit of the transaction that holds its events), p50 and p99 at each load.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.bench.timing import percentile_ms

log = logging.getLogger(__name__)


def _write(figures: dict, json_path: Path | None) -> None:
    print(json.dumps(figures, indent=2))
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(figures, indent=2) + "\n")


POLL_RECORDS = 500


def bench_consumer(*, messages: int = 3000, width: int = 1280, height: int = 720, instances: int | list[int] = 10,
                   json_path: Path | None = None) -> dict:  # fmt: skip
    """One event processor against a bare kafka-python loop that reads and parses the same messages.

    ``instances`` may be several counts: each gets its own topic, run and baseline on one broker; the
    figures of the first are the top-level ``consumer_*`` keys and every count's are under
    ``consumer_by_instances``.
    """
    from pipeline.local.kafka import LocalKafka

    counts = [instances] if isinstance(instances, int) else list(instances)
    by_count: dict[str, dict] = {}
    with LocalKafka() as kafka:
        for k in counts:
            by_count[str(k)] = _consumer_run(kafka.bootstrap, messages, width, height, k)
            log.info("consumer at %d instances: %s", k, by_count[str(k)])
    figures = dict(by_count[str(counts[0])])
    if len(counts) > 1:
        figures["consumer_by_instances"] = {k: {f: v[f] for f in ("consumer_msgs_per_s",
                                                                  "consumer_baseline_msgs_per_s",
                                                                  "consumer_vs_baseline", "consumer_cpu_ms_per_msg",
                                                                  "message_bytes", "events")}
                                            for k, v in by_count.items()}  # fmt: skip
    _write(figures, json_path)
    return figures


def _consumer_run(bootstrap: str, messages: int, width: int, height: int, instances: int) -> dict:
    from kafka import KafkaConsumer

    from consumers.rules import DEMO_RULES, load_rules
    from pipeline.apps.wiring import consumer_side
    from pipeline.config import ConsumerSettings
    from pipeline.data.detections import moving_cars
    from pipeline.kafka.connection import KafkaConnection
    from pipeline.kafka.topics import Topics, TopicSpec, ensure_topics
    from pipeline.messages import FrameDetections
    from pipeline.publish import DetectionPublisher

    camera = "bench/right"  # the demo's side camera: a zone and a line, so every rule has work
    rules = load_rules(DEMO_RULES)
    topics = Topics(detections=f"bench-{uuid.uuid4().hex[:6]}", events=f"bench-events-{uuid.uuid4().hex[:6]}")
    ensure_topics(bootstrap, topics, TopicSpec(partitions=1))
    # the messages go out as ingest publishes them (its publisher: JSON, gzip, acks=all), timed in CPU
    # 500 records per poll (so per transaction) for a member that is behind: consumer.max_poll_records
    settings = ConsumerSettings(max_poll_records=POLL_RECORDS)
    total = messages + POLL_RECORDS  # the first poll warms up (below)
    frames = moving_cars(total, camera_id=camera, width=width, height=height, instances=instances)
    message_bytes = sum(len(f.model_dump_json()) for f in frames) / total
    cpu = time.process_time()
    publisher = DetectionPublisher(KafkaConnection.of(bootstrap), topics.detections)
    for f in frames:
        publisher.publish(f)
    publisher.close()
    publish_cpu = time.process_time() - cpu
    # thousands of parsed messages left alive would make every garbage collection in the consumer below dearer
    del frames
    if publisher.counts["messages_published"] != total:
        raise RuntimeError(f"published {publisher.counts['messages_published']} of {total} messages")

    # baseline: what reading and parsing the messages alone costs in kafka-python
    reader = KafkaConsumer(topics.detections, bootstrap_servers=bootstrap, group_id=None,
                           auto_offset_reset="earliest", enable_auto_commit=False,
                           isolation_level="read_committed", max_poll_records=200)  # fmt: skip
    seen, start = 0, None
    while seen < total:
        for records in reader.poll(timeout_ms=1000).values():
            start = start or time.monotonic()
            for r in records:
                FrameDetections.model_validate_json(r.value)
            seen += len(records)
    baseline_wall = time.monotonic() - (start or time.monotonic())
    reader.close()

    conn = KafkaConnection.of(bootstrap)
    with consumer_side(conn, topics, rules, settings, member_id="bench", group_id=f"bench-{topics.events}") as side:
        proc = side.processor
        # Not throughput: joining the group, the first fetch, and the first transaction's one-off look-ups (the
        # group's coordinator for the offsets, the events and state topics' metadata), ~0.25 s here.
        while not proc.poll_once():
            pass
        warm = proc.stats.messages
        cpu = time.process_time()  # this process (the step and the Kafka client threads)
        start = time.monotonic()
        while proc.stats.messages < total:
            proc.poll_once()
        wall = time.monotonic() - start
        cpu = time.process_time() - cpu
        stats = proc.stats
    measured = stats.messages - warm
    baseline = total / baseline_wall
    return {
        "consumer_msgs_per_s": round(measured / wall, 1),
        "consumer_baseline_msgs_per_s": round(baseline, 1),
        "consumer_vs_baseline": round(measured / wall / baseline, 3),
        "consumer_cpu_ms_per_msg": round(cpu * 1000 / measured, 3),
        "publish_cpu_ms_per_msg": round(publish_cpu * 1000 / total, 3),
        "messages": measured,
        "instances_per_message": instances,
        "frame_width": width,
        "frame_height": height,
        "message_bytes": round(message_bytes),
        "events": sum(stats.events.values()),
        "transactions": stats.transactions,
        "wall_s": round(wall, 2),
    }


LOADS = (50, 75, 90)  # paced runs, % of the measured capacity


def _render(cameras: int, seconds: float, seed: int) -> dict[str, list[bytes]]:
    """The synthetic drive's frames, encoded once: camera name (``veh-N/front``) -> JPEGs."""
    from pipeline.ingest.sources import SyntheticVehicle

    out: dict[str, list[bytes]] = {}
    for v in range(-(-cameras // 4)):
        vehicle = SyntheticVehicle(f"veh-{v}", seed + v, cameras=min(4, cameras - 4 * v), seconds=seconds)
        for frame in vehicle.frames():
            out.setdefault(frame.camera_id, []).append(frame.jpeg)
    return out


def _onnxruntime_fps(model: Path, batch: int, height: int, width: int, threads: int, repeats: int = 8) -> float:
    import onnxruntime as ort

    from pipeline.bench.timing import time_calls

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).normal(size=(batch, 3, height, width)).astype(np.float32)
    secs = time_calls(lambda: session.run(None, {session.get_inputs()[0].name: x}), warmup=2, repeats=repeats)
    return batch * repeats / float(secs.sum())


@dataclass
class Stack:
    """Embedded Kafka and Triton with one event processor that records when each frame's events were committed."""

    conn: object
    topics: object
    grpc_url: str
    done: dict[tuple[str, int], float] = field(default_factory=dict)

    def run(self, sources: list, ingest: object, client: object | None = None) -> dict:
        """Stream ``sources`` to the end; fps until the last commit, and each frame's latency from its capture
        (a segment's frame was captured before its segment was complete) to the commit of its events."""
        from pipeline.apps.wiring import ingest_side
        from pipeline.serving.client import ClientConfig

        entered: dict[tuple[str, int], float] = {}

        def published(c, _result) -> None:
            waited = c.segment.ready_time - c.capture_time if c.segment is not None else 0.0
            entered[(c.camera_id, c.frame_index)] = c.enqueued - waited

        start = time.monotonic()
        with ingest_side(self.conn, self.topics, sources, client or ClientConfig(url=self.grpc_url), ingest,
                         follow_rollout=False, on_published=published) as runner:  # fmt: skip
            stats = runner.run()
        deadline = time.monotonic() + 120
        while sum(1 for k in entered if k in self.done) < len(entered) and time.monotonic() < deadline:
            time.sleep(0.05)
        latencies = np.array([self.done[k] - entered[k] for k in entered if k in self.done])
        end = max((self.done[k] for k in entered if k in self.done), default=time.monotonic())
        return {"fps": len(latencies) / (end - start), "frames": len(latencies),
                "p50_ms": percentile_ms(latencies, 50) if latencies.size else float("nan"),
                "p99_ms": percentile_ms(latencies, 99) if latencies.size else float("nan"),
                "dropped": dict(stats.dropped),
                "decoders": {cam: dict(d) for cam, d in runner.decoders.items()}}  # fmt: skip


@contextlib.contextmanager
def streaming_stack(repository: Path) -> Iterator[Stack]:
    """Kafka, Triton (CPU profile, ``repository``) and one consumer member with the demo rules, all embedded."""
    from consumers.rules import DEMO_RULES, load_rules
    from pipeline.apps.wiring import consumer_side
    from pipeline.config import Settings
    from pipeline.kafka.connection import KafkaConnection
    from pipeline.kafka.topics import Topics, ensure_topics
    from pipeline.local.kafka import LocalKafka
    from pipeline.local.triton import LocalTriton, LocalTritonConfig

    settings = Settings()
    with LocalKafka() as kafka, LocalTriton(LocalTritonConfig(model_repository=repository)) as triton:
        topics = Topics(detections=f"bench-{uuid.uuid4().hex[:6]}", events="bench-pipeline-events")
        ensure_topics(kafka.bootstrap, topics)
        stack = Stack(KafkaConnection.of(kafka.bootstrap), topics, triton.grpc_url)
        with consumer_side(stack.conn, topics, load_rules(DEMO_RULES), settings.consumer, member_id="bench",
                           group_id=f"bench-{uuid.uuid4().hex[:6]}") as consumer:  # fmt: skip
            consumer.processor.on_commit = lambda frames: stack.done.update({f: time.monotonic() for f in frames})
            consumer.run_in_background()
            yield stack


def bench_pipeline(*, cameras: int = 4, seconds: float = 10.0, seed: int = 0, batch: int = 8, in_flight: int = 2,
                   loads: tuple[int, ...] = LOADS, paced_seconds: float = 12.0,
                   json_path: Path | None = None) -> dict:  # fmt: skip
    """Capacity with the cameras flat out, then frame-to-event latency with them paced below it.

    The cameras replay frames encoded beforehand. Capacity is compared with ONNX Runtime alone
    (same model, batch and threads, same run, before the servers start).
    """
    from pipeline.config import Settings
    from pipeline.ingest.sources import ReplayedFrames
    from pipeline.local.stack import ensure_repository
    from pipeline.serving import contract
    from pipeline.serving.repository import RepositoryOptions, read_spec

    settings = Settings()
    repo = ensure_repository(settings)
    spec = read_spec(repo)
    log.info("rendering %d cameras x %.0f s of the synthetic drive once", cameras, seconds)
    jpegs = _render(cameras, seconds, seed)
    threads = RepositoryOptions().cpu_threads
    model_fps = _onnxruntime_fps(repo / contract.NETWORK / "1" / "model.onnx", batch, spec.input_height,
                                 spec.input_width, threads)  # fmt: skip
    frames_per_camera = len(next(iter(jpegs.values())))
    runs: dict[str, dict] = {}
    ingest = settings.ingest.model_copy(update={"max_batch": batch, "in_flight": in_flight})
    with streaming_stack(repo) as stack:

        def run(tag: str, count: int, fps: float | None) -> dict:
            """One run of every camera under its own ids (``tag``): flat out (fps None) or paced."""
            named = {f"{tag}-{cam}": frames for cam, frames in jpegs.items()}
            return stack.run([ReplayedFrames(f"{tag}", named, count=count, fps=fps or 10.0, realtime=fps is not None)],
                             ingest)  # fmt: skip

        log.info("capacity: %d cameras flat out", cameras)
        runs["capacity"] = run("cap", frames_per_camera, None)
        capacity = runs["capacity"]["fps"]
        for load in loads:
            per_camera = capacity * load / 100 / cameras
            count = max(10, round(per_camera * paced_seconds))
            log.info("paced at %d%% of capacity: %.2f fps per camera, %d frames each", load, per_camera, count)
            runs[str(load)] = run(f"p{load}", count, per_camera)
    cap = runs["capacity"]
    figures = {
        "pipeline_fps": round(cap["fps"], 2),
        "model_fps": round(model_fps, 2),
        "pipeline_efficiency": round(cap["fps"] / model_fps, 3),
        "latency_p50_ms": round(cap["p50_ms"], 1),
        "latency_p99_ms": round(cap["p99_ms"], 1),
        "paced_fps": {k: round(v["fps"], 2) for k, v in runs.items() if k != "capacity"},
        "paced_latency_p50_ms": {k: round(v["p50_ms"], 1) for k, v in runs.items() if k != "capacity"},
        "paced_latency_p99_ms": {k: round(v["p99_ms"], 1) for k, v in runs.items() if k != "capacity"},
        "frames": cap["frames"],
        "cameras": cameras,
        "frames_dropped": {k: v["dropped"] for k, v in runs.items() if v["dropped"]},
        "batch": batch,
        "in_flight": in_flight,
        "model": spec.name,
    }
    _write(figures, json_path)
    return figures
