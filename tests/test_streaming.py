"""End to end: synthetic cameras -> DALI/Triton (CPU profile, shipped model) -> Kafka -> consumers -> events.

The produced events are scored against the simulator's ground-truth events (the same rules on
the true masks and object ids): a wrong, missing or duplicate event lowers precision or recall.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter

import pytest
from kafka import KafkaConsumer, KafkaProducer

from consumers.processor import EventProcessor
from consumers.rules import DEMO_RULES, load_rules
from consumers.scoring import score_events
from pipeline.demo.truth import truth_events
from pipeline.ingest.runner import IngestRunner
from pipeline.ingest.sources import JpegFolder, SyntheticVehicle, VideoSource
from pipeline.kafka.topics import Topics, TopicSpec, ensure_topics
from pipeline.messages import DeadLetter, Event, FrameDetections
from pipeline.publish import DetectionPublisher
from pipeline.serving.client import ClientConfig

pytestmark = pytest.mark.slow

RULES = load_rules(DEMO_RULES)
VEHICLES = {"veh-1": 1, "veh-2": 2}  # vehicle id -> simulator seed
SECONDS, FPS = 20.0, 10.0


def read_topic(bootstrap: str, topic: str, model=Event, timeout_ms: int = 5000) -> list:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, isolation_level="read_committed",
                             auto_offset_reset="earliest", consumer_timeout_ms=timeout_ms,
                             group_id=f"reader-{uuid.uuid4().hex}")  # fmt: skip
    try:
        return [model.model_validate_json(m.value) for m in consumer]
    finally:
        consumer.close()


def new_topics() -> Topics:
    tag = uuid.uuid4().hex[:8]
    return Topics(detections=f"detections-{tag}", events=f"events-{tag}")


def consume_all(bootstrap: str, topics: Topics, group: str, idle_exit_s: float = 4.0) -> EventProcessor:
    proc = EventProcessor(bootstrap, RULES, topics=topics, group_id=group)
    proc.run(idle_exit_s=idle_exit_s)
    proc.close()
    return proc


@pytest.fixture(scope="module")
def streamed(kafka, triton):
    """Two synthetic vehicles (8 cameras) streamed once; a consumer runs while they stream."""
    topics = new_topics()
    ensure_topics(kafka.bootstrap, topics)
    processor = EventProcessor(kafka.bootstrap, RULES, topics=topics, group_id=f"g-{uuid.uuid4().hex}")
    worker = threading.Thread(target=processor.run, daemon=True)
    worker.start()
    publisher = DetectionPublisher(kafka.bootstrap, topics.detections)
    sources = [SyntheticVehicle(v, seed, cameras=4, fps=FPS, seconds=SECONDS) for v, seed in VEHICLES.items()]
    stats = IngestRunner(sources, ClientConfig(url=triton.grpc_url), publisher, max_batch=8).run()
    publisher.close()
    # let the consumer finish what is published, then stop it
    deadline = threading.Event()
    while not deadline.wait(1.0):
        if processor.stats.messages >= sum(stats.published.values()) + 8:  # + one end-of-stream per camera
            break
    processor.stop()
    worker.join(timeout=60)
    processor.close()
    events = read_topic(kafka.bootstrap, topics.events)
    truth = [e for v, seed in VEHICLES.items() for e in truth_events(v, seed, RULES, fps=FPS, seconds=SECONDS)]
    return {"topics": topics, "stats": stats, "events": events, "truth": truth, "processor": processor}


def test_every_frame_is_published_in_order_per_camera(streamed, kafka):
    stats = streamed["stats"]
    assert sum(stats.frames_read.values()) == sum(stats.published.values()) == 2 * 4 * int(SECONDS * FPS)
    assert not any(stats.dropped.values())
    frames = read_topic(kafka.bootstrap, streamed["topics"].detections, FrameDetections)
    by_camera: dict[str, list[int]] = {}
    for f in frames:
        by_camera.setdefault(f.camera_id, []).append(f.frame_index)
    assert len(by_camera) == 8
    for indexes in by_camera.values():
        assert indexes == sorted(indexes) and len(indexes) == len(set(indexes))
    assert all(f.model_name == "sparseinst_pipeline" and f.model_version == "1" for f in frames if not f.end_of_stream)


def test_zone_and_line_events_match_the_ground_truth(streamed):
    scores = score_events(streamed["events"], streamed["truth"], tolerance=3)
    report = {t: (s.true_positives, s.false_positives, s.false_negatives) for t, s in scores.items()}
    for event_type, s in scores.items():
        assert s.true_positives + s.false_negatives >= 5, f"too few true {event_type} events to score: {report}"
        assert s.precision >= 0.9, (event_type, report, s.unmatched_predicted)
        assert s.recall >= 0.9, (event_type, report, s.unmatched_truth)


def test_events_are_unique_and_complete(streamed):
    events = streamed["events"]
    ids = [e.event_id for e in events]
    assert len(ids) == len(set(ids)), "duplicate event ids"
    counts = Counter(e.type for e in events)
    assert counts["track.started"] == counts["track.ended"] > 0  # every track was closed at end of stream
    assert counts["occupancy"] > 0
    assert all(e.model_name == "sparseinst_pipeline" and e.vehicle_id in VEHICLES for e in events
               if e.type != "camera.health")  # fmt: skip


def test_a_consumer_restart_mid_stream_loses_and_duplicates_nothing(streamed, kafka):
    """Replay the same detections into a fresh group twice: once straight, once with a crash in the middle."""
    topics = streamed["topics"]
    straight_topics = Topics(detections=topics.detections, events=f"{topics.events}-straight")
    crash_topics = Topics(detections=topics.detections, events=f"{topics.events}-crash")
    for t in (straight_topics, crash_topics):
        ensure_topics(kafka.bootstrap, t)
    reference = consume_all(kafka.bootstrap, straight_topics, f"g-{uuid.uuid4().hex}")
    expected = {e.event_id for e in read_topic(kafka.bootstrap, straight_topics.events)}
    assert expected == {e.event_id for e in streamed["events"]}  # deterministic: same detections, same ids
    assert reference.stats.messages > 100

    group = f"g-{uuid.uuid4().hex}"
    first = EventProcessor(kafka.bootstrap, RULES, topics=crash_topics, group_id=group, max_poll_records=16)
    for _ in range(200):
        first.poll_once()
        if first.stats.messages >= reference.stats.messages // 2:
            break
    assert 0 < first.stats.messages < reference.stats.messages
    # crash in the middle of a transaction: events sent, never committed
    first.producer.begin_transaction()
    first.producer.send(crash_topics.events, key=b"x", value=b'{"half": "written"}')
    first.producer.flush()
    first.consumer.close(autocommit=False)  # the process dies; its producer is fenced by the next one
    first._claim.release()  # as the kernel does for a dead process
    second = consume_all(kafka.bootstrap, crash_topics, group)
    events = read_topic(kafka.bootstrap, crash_topics.events)
    ids = [e.event_id for e in events]
    assert len(ids) == len(set(ids)), "duplicates after the restart"
    assert set(ids) == expected, f"lost {len(expected - set(ids))}, extra {len(set(ids) - expected)}"
    assert second.stats.messages > 0


def test_a_malformed_message_goes_to_the_dead_letter_topic_and_the_stream_goes_on(kafka):
    topics = new_topics()
    ensure_topics(kafka.bootstrap, topics)
    good = FrameDetections(camera_id="cam-a", frame_index=0, capture_time=0.0, width=8, height=8,
                           model_name="m", model_version="1", instances=[])  # fmt: skip
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap)
    producer.send(topics.detections, key=b"cam-a", value=b"{not json")
    producer.send(topics.detections, key=b"cam-a", value=b'{"camera_id": "cam-a", "frame_index": -4}')
    for i in range(3):
        producer.send(topics.detections, key=b"cam-a",
                      value=good.model_copy(update={"frame_index": i}).model_dump_json().encode())  # fmt: skip
    producer.send(topics.detections, key=b"cam-a", value=good.model_copy(
        update={"frame_index": 3, "end_of_stream": True}).model_dump_json().encode())  # fmt: skip
    producer.close()
    proc = consume_all(kafka.bootstrap, topics, f"g-{uuid.uuid4().hex}")
    dead = read_topic(kafka.bootstrap, topics.dead_letter, DeadLetter)
    assert len(dead) == proc.stats.dead_letters == 2
    assert "invalid detections message" in dead[0].reason and dead[0].value == "{not json"
    assert "frame_index" in dead[1].reason and dead[1].offset == 1
    assert proc.stats.messages == 6  # all consumed, the good ones processed
    # the stream ended: the camera is forgotten and its state record tombstoned
    assert "cam-a" not in proc.processors and proc.stats.expired == {"ended": 1}
    from tests.streams import read_topic as read_raw

    state = read_raw(kafka.bootstrap, topics.state, None)
    assert state and state[-1] is None


def test_a_corrupt_frame_and_a_dead_camera_are_counted_and_the_rest_goes_on(kafka, triton, tmp_path):
    from pipeline.data.synthetic import synthetic_image
    from pipeline.ingest.sources import SourceState, encode_jpeg

    folder = tmp_path / "cam"
    folder.mkdir()
    for i in range(4):
        data = encode_jpeg(synthetic_image(5, i).image)
        (folder / f"{i:03d}.jpg").write_bytes(data[: len(data) // 3] if i == 2 else data)
    topics = new_topics()
    publisher = DetectionPublisher(kafka.bootstrap, topics.detections)
    dead_camera = VideoSource("cam-dead", "rtsp://127.0.0.1:9/none", max_reconnects=2, backoff_s=0.05)
    folder_camera = JpegFolder("cam-folder", folder)
    runner = IngestRunner([folder_camera, dead_camera], ClientConfig(url=triton.grpc_url), publisher, max_batch=4)
    stats = runner.run()
    publisher.close()
    assert stats.published["cam-folder"] == 3 and stats.dropped["refused"] == 1
    assert dead_camera.state == SourceState.FAILED and dead_camera.reconnects == 2
    dead = read_topic(kafka.bootstrap, topics.dead_letter, DeadLetter)
    assert len(dead) == 1 and dead[0].key == "cam-folder" and dead[0].offset == 2
    assert "decoding failed" in dead[0].reason
    frames = read_topic(kafka.bootstrap, topics.detections, FrameDetections)
    published = [f for f in frames if f.camera_id == "cam-folder" and not f.end_of_stream]
    assert [f.frame_index for f in published] == [0, 1, 3]
    assert [f.decode_errors for f in published] == [0, 0, 1]  # reported with the camera's next frame


@pytest.mark.parametrize("broken", ["state not compacted", "state not co-partitioned"])
def test_an_existing_topic_layout_the_consumers_cannot_use_is_refused_naming_the_topic(kafka, broken):
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    from pipeline.errors import TopicsError

    topics = new_topics()
    partitions = 3 if broken == "state not co-partitioned" else 4
    configs = {} if broken == "state not compacted" else {"cleanup.policy": "compact"}
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    try:
        admin.create_topics([NewTopic(topics.state, partitions, 1, topic_configs=configs)])
    finally:
        admin.close()
    with pytest.raises(TopicsError, match=topics.state.replace(".", r"\.")):
        ensure_topics(kafka.bootstrap, topics, TopicSpec(partitions=4))
