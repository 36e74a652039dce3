"""Event subscribers: the published schemas, the client (filters, read_committed, each id once, resume), the
``events`` commands, an event's frame from the archive, and Kafka's own console consumer as a subscriber."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from jsonschema import Draft202012Validator
from kafka import KafkaAdminClient, KafkaProducer
from pydantic import ValidationError

from consumers.rules import DEMO_RULES, load_rules
from consumers.sink import EventSink, EventStore
from pipeline.archive import FrameArchive
from pipeline.cli import main
from pipeline.data.detections import moving_cars
from pipeline.errors import ConfigError
from pipeline.kafka.connection import KafkaConnection
from pipeline.messages import DETAILS, DeadLetter, Event, FrameDetections, ShadowResult
from pipeline.publish import DetectionPublisher
from pipeline.rollout.controller import rollout_event
from pipeline.rollout.state import RolloutState
from pipeline.subscriber import EventFilter, EventSubscriber, SeenIds
from pipeline.wire_schemas import WIRE_TYPES, stale_schemas
from tests.conftest import REPO_ROOT
from tests.streams import group_caught_up, member_in_transaction, new_topics, read_topic, reference_events, wait_for

SCHEMAS = REPO_ROOT / "schemas"
RULES = load_rules(DEMO_RULES)
CROWD_RULES = RULES.model_copy(update={"defaults": RULES.defaults.model_copy(update={"crowd_tracks": 2})})


def validator(stem: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{stem}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def traffic(
    camera: str, vehicle: str, seed: int, n: int = 80, width: int = 640, height: int = 360
) -> list[FrameDetections]:
    """Cars and people (every third query) moving across one camera, a refused frame, then the stream's end."""
    out = []
    for f in moving_cars(n, camera_id=camera, instances=6, stream_epoch=1_700_000_000_000, seed=seed, width=width,
                         height=height):  # fmt: skip
        dets = [d.model_copy(update={"class_name": "person", "class_id": 0}) if d.query % 3 == 0 else d
                for d in f.instances]  # fmt: skip
        out.append(f.model_copy(update={"instances": dets, "vehicle_id": vehicle,
                                        "decode_errors": 2 if f.frame_index == 30 else 0}))  # fmt: skip
    return [*out, out[-1].model_copy(update={"frame_index": n, "instances": [], "end_of_stream": True})]


FRAMES = [*traffic("veh-1/front", "veh-1", 4), *traffic("veh-1/right", "veh-1", 5), *traffic("veh-2/front", "veh-2", 6)]


@pytest.fixture(scope="module")
def events() -> list[Event]:
    return reference_events(FRAMES, CROWD_RULES)


def _rollout_events() -> list[Event]:
    state = RolloutState(rollout_id="r-1", live_version=1, live_ensemble="sparseinst_pipeline", candidate_version=2,
                         candidate_ensemble="sparseinst_pipeline_v2")  # fmt: skip
    decided = state.model_copy(update={"phase": "promoted", "decided_by": "policy", "reason": "agreement 0.97"})
    return [rollout_event(state, "progress"), rollout_event(decided, "promoted")]


# ------------------------------------------------------------------------------------------ schemas


def test_the_committed_schemas_are_generated_from_the_models(tmp_path):
    assert stale_schemas(SCHEMAS) == [], "run: sparseinst-pipeline events schemas"
    assert sorted(p.name for p in SCHEMAS.glob("*.json")) == sorted(f"{s}.schema.json" for s in WIRE_TYPES)
    copy = tmp_path / "schemas"
    assert main(["events", "schemas", "--out", str(copy)]) == 0
    assert main(["events", "schemas", "--out", str(copy), "--check"]) == 0
    edited = json.loads((copy / "event.schema.json").read_text())
    edited["properties"].pop("mask")
    (copy / "event.schema.json").write_text(json.dumps(edited))
    assert main(["events", "schemas", "--out", str(copy), "--check"]) == 2  # a hand-edited file is caught


def test_every_event_type_the_rules_raise_validates_against_the_published_schema(events):
    check = validator("event")
    every = [*events, *_rollout_events()]
    assert {e.type for e in every} == set(DETAILS)  # the run raises every type there is
    for e in every:
        check.validate(json.loads(e.model_dump_json()))
    frames = validator("frame_detections")
    for f in FRAMES[:5]:
        frames.validate(json.loads(f.model_dump_json()))
    dead = DeadLetter(topic="detections", partition=0, offset=7, key="cam", reason="invalid json: ...",
                      error_type="ValidationError", value="{")  # fmt: skip
    validator("dead_letter").validate(json.loads(dead.model_dump_json()))
    shadow = ShadowResult(rollout_id="r-1", camera_id="cam", stream_epoch=1, frame_index=3, live=FRAMES[3],
                          candidate=None, live_latency_ms=12.5, candidate_error="timeout")  # fmt: skip
    validator("shadow_result").validate(json.loads(shadow.model_dump_json()))


def test_details_of_the_wrong_shape_are_refused_by_the_schema_and_the_model_alike(events):
    check = validator("event")
    crossed = next(e for e in events if e.type == "line.crossed")
    for bad_details in ({"count": "three"}, {}, {"count": 1, "colour": "red"}):
        bad = json.loads(crossed.model_dump_json()) | {"details": bad_details}
        assert list(check.iter_errors(bad)), bad_details
        with pytest.raises(ValidationError, match=r"details of a line\.crossed event"):
            Event.model_validate(bad)
    occupancy = json.loads(next(e for e in events if e.type == "occupancy").model_dump_json())
    occupancy["details"]["car"] = "many"  # class counts are integers
    assert list(check.iter_errors(occupancy))
    with pytest.raises(ValidationError):
        Event.model_validate(occupancy)


def test_track_events_carry_the_mask_of_the_detection_they_are_about(events):
    by_frame = {(f.camera_id, f.stream_epoch, f.frame_index): f for f in FRAMES}
    about_tracks = [e for e in events if e.track_id is not None]
    assert about_tracks and all(e.mask is not None for e in about_tracks)
    assert all(e.mask is None for e in events if e.track_id is None)
    for e in about_tracks:
        frame = by_frame[(e.camera_id, e.stream_epoch, e.mask.frame_index)]
        assert e.mask.size == (frame.height, frame.width)
        assert e.mask.counts in {d.mask.counts for d in frame.instances}, e
    ended = [e for e in events if e.type == "track.ended"]
    assert all(e.mask.frame_index == e.frame_index for e in ended)  # the track's last frame


# ------------------------------------------------------------------------------------------ the client


def _publish_events(conn: KafkaConnection, topic: str, events: list[Event], *, abort: bool = False) -> None:
    """``events`` in one transaction, committed (or aborted), as the event processors publish."""
    producer = KafkaProducer(**conn.client_args(), transactional_id=f"t-{uuid.uuid4().hex[:8]}")
    producer.init_transactions()
    producer.begin_transaction()
    for e in events:
        producer.send(topic, key=e.camera_id.encode(), value=e.model_dump_json().encode())
    producer.flush()
    producer.abort_transaction() if abort else producer.commit_transaction()
    producer.close()


def _send_raw(conn: KafkaConnection, topic: str, value: bytes) -> None:
    producer = KafkaProducer(**conn.client_args())
    producer.send(topic, key=b"junk", value=value).get(timeout=30)
    producer.close()


@pytest.fixture(scope="module")
def on_topic(kafka, events):
    """The run's events on a topic twice (a replay re-published them), an aborted transaction and junk between."""
    conn = KafkaConnection(bootstrap=kafka.bootstrap)
    topics = new_topics(conn)
    _send_raw(conn, topics.events, b"not an event")
    _publish_events(conn, topics.events, events)
    aborted = [e.model_copy(update={"event_id": f"aborted-{i}"}) for i, e in enumerate(events[:20])]
    _publish_events(conn, topics.events, aborted, abort=True)
    time.sleep(1.1)  # record timestamps of the second copy are later than the first's
    replayed_at = time.time()
    _publish_events(conn, topics.events, events)
    return conn, topics, replayed_at


def test_the_subscriber_filters_and_resumes_from_its_group_with_each_event_id_once(on_topic, events, tmp_path):
    conn, topics, _ = on_topic
    wanted = EventFilter(types=("track.started", "proximity.alert"), vehicles=("veh-1",))
    expected = [e.event_id for e in events if wanted.matches(e)]
    assert len(expected) > 20 and {e.type for e in events if wanted.matches(e)} == {"track.started", "proximity.alert"}
    group, seen_file = f"g-{uuid.uuid4().hex[:8]}", tmp_path / "seen.sqlite"
    got: list[Event] = []
    with EventSubscriber(conn, topics.events, group_id=group, filter=wanted, seen=SeenIds(seen_file)) as sub:
        for e in sub.events(idle_s=5):
            got.append(e)
            if len(got) == 10:
                break
        sub.commit()
        invalid = sub.skipped["invalid"]
    # a restart: the group's offsets and the seen file carry on; the replayed copy delivers nothing again
    with EventSubscriber(conn, topics.events, group_id=group, filter=wanted, seen=SeenIds(seen_file)) as sub:
        got += list(sub.events(idle_s=5))
        sub.commit()
        assert sub.skipped["duplicate"] == len(expected)  # the second copy of every wanted event
        invalid += sub.skipped["invalid"]
    assert invalid == 1  # the junk record, skipped and counted
    assert sorted(e.event_id for e in got) == sorted(expected)  # each once, none lost at the restart
    for camera in {e.camera_id for e in got}:  # in each camera's order (a camera is one key, one partition)
        assert [e.event_id for e in got if e.camera_id == camera] == [
            e.event_id for e in events if e.camera_id == camera and wanted.matches(e)]  # fmt: skip
    assert not [e for e in got if e.event_id.startswith("aborted-")]


def test_the_subscriber_starts_from_a_time_or_from_offsets(on_topic, events):
    conn, topics, replayed_at = on_topic
    right = EventFilter(cameras=("veh-1/r*",))
    expected = sorted(e.event_id for e in events if e.camera_id == "veh-1/right")
    with EventSubscriber(conn, topics.events, start=replayed_at, filter=right) as sub:
        from_time = [e.event_id for e in sub.events(to_end=True)]
        assert sub.skipped["duplicate"] == 0  # only the second copy lies after that time
    assert sorted(from_time) == expected
    with EventSubscriber(conn, topics.events, start={p: 0 for p in range(4)}, filter=right) as sub:
        from_zero = [e.event_id for e in sub.events(to_end=True)]
        assert sub.skipped["duplicate"] == len(expected)
        assert sum(sub.positions().values()) == sum(_end_offsets(conn, topics.events).values())
    assert sorted(from_zero) == expected


def _end_offsets(conn: KafkaConnection, topic: str) -> dict:
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(**conn.client_args(), isolation_level="read_committed")
    try:
        return c.end_offsets([TopicPartition(topic, p) for p in c.partitions_for_topic(topic)])
    finally:
        c.close()


def test_a_wrong_filter_start_or_time_is_a_clear_error(on_topic, tmp_path, capsys):
    conn, topics, _ = on_topic
    with pytest.raises(ValidationError, match="since"):
        EventFilter(since=20.0, until=10.0)
    with pytest.raises(ValidationError, match="types"):
        EventFilter(types=("zone.entred",))
    with pytest.raises(ConfigError, match=r"partitions \[9\]"):
        EventSubscriber(conn, topics.events, start={9: 0})
    with pytest.raises(ConfigError, match="group_id"):
        EventSubscriber(conn, topics.events)
    config = _config_file(tmp_path, conn, topics)
    for argv, said in (
        (["--type", "zone.entred"], "invalid filter: types"),
        (["--since", "yesterday"], "--since: 'yesterday' is not a time"),
        (["--since", "2026-12-04T10:00:00Z", "--until", "2026-12-04T09:00:00Z"], "since"),
        (["--from", "7:x"], "--from: '7:x' is not a time"),
    ):
        assert main(["events", "tail", "--config", str(config), "--to-end", *argv]) == 2
        assert said in capsys.readouterr().err


def _config_file(folder: Path, conn: KafkaConnection, topics, **kafka) -> Path:
    data = {"kafka": {"bootstrap": conn.bootstrap, "events_topic": topics.events, **kafka},
            "consumer": {"sink": str(folder / "events-{member}.sqlite")}}  # fmt: skip
    if conn.security.protocol != "PLAINTEXT":
        s = conn.security
        data["kafka"]["security"] = {"protocol": s.protocol, "username": s.username,
                                     "password": s.secret().get_secret_value(),
                                     "ssl_cafile": str(s.ssl_cafile)}  # fmt: skip
    path = folder / "settings.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# ------------------------------------------------------------------------------------------ the commands


@pytest.fixture(scope="module")
def sink(on_topic, tmp_path_factory):
    """The topic drained by the real sink into a member's SQLite file (the replayed copy adds no row)."""
    conn, topics, _ = on_topic
    folder = tmp_path_factory.mktemp("sink")
    store = EventStore(folder / "events-m1.sqlite")
    sink = EventSink(conn, topics.events, store, group_id=f"sink-{uuid.uuid4().hex[:6]}")
    deadline = time.monotonic() + 60
    while not group_caught_up(conn, sink.consumer.config["group_id"], topics.events):
        sink.poll_once()
        assert time.monotonic() < deadline, "the sink did not drain the topic"
    sink.close()
    store.close()
    return folder, _config_file(folder, conn, topics)


def test_events_tail_prints_each_matching_event_once_as_json_lines(on_topic, sink, events, capsys):
    _, config = sink
    assert main(["events", "tail", "--config", str(config), "--from", "earliest", "--to-end", "--json",
                 "--type", "line.crossed,zone.dwell", "--camera", "veh-1/*"]) == 0  # fmt: skip
    out = capsys.readouterr()
    got = [Event.model_validate_json(line) for line in out.out.splitlines()]
    expected = [e for e in events if e.type in ("line.crossed", "zone.dwell") and e.camera_id.startswith("veh-1/")]
    assert sorted(e.event_id for e in got) == sorted(e.event_id for e in expected) and expected
    assert f"# {len(expected)} events; skipped:" in out.err and "1 invalid" in out.err
    assert main(["events", "tail", "--config", str(config), "--from", "earliest", "--to-end", "--limit", "3",
                 "--type", "proximity.alert"]) == 0  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all("proximity.alert" in line and "distance_px=" in line for line in lines)


def test_events_query_filters_the_sink_and_counts_per_window_zone_and_class(sink, events, capsys):
    folder, config = sink
    store = folder / "events-m1.sqlite"
    assert main(["events", "query", "--store", str(store), "--json", "--type", "zone.entered",
                 "--zone", "approach"]) == 0  # fmt: skip
    got = [Event.model_validate_json(line) for line in capsys.readouterr().out.splitlines()]
    expected = [e for e in events if e.type == "zone.entered" and e.zone == "approach"]
    assert [e.event_id for e in got] == [e.event_id for e in sorted(expected, key=lambda e: (e.frame_time,
                                                                                             e.camera_id))]  # fmt: skip
    assert got and all(g.mask is not None for g in got)  # the sink keeps the masks
    assert main(["events", "query", "--config", str(config), "--count-by", "zone,class", "--window", "2",
                 "--type", "zone.entered", "--json"]) == 0  # fmt: skip
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    want = Counter(((e.frame_time // 2) * 2, e.zone, e.class_name) for e in events if e.type == "zone.entered")
    assert {(r["window_start"], r["zone"], r["class_name"]): r["events"] for r in rows} == dict(want)


def test_events_export_writes_parquet_and_csv_with_details_as_columns(sink, events, capsys):
    import pyarrow.csv as pv
    import pyarrow.parquet as pq

    folder, config = sink
    t0 = min(e.frame_time for e in events)
    since, until = t0 + 2.0, t0 + 6.0
    in_range = [e for e in events if since <= e.frame_time < until]
    out = folder / "range.parquet"
    assert main(["events", "export", "--config", str(config), "--out", str(out), "--since", str(since),
                 "--until", str(until)]) == 0  # fmt: skip
    assert f"wrote {len(in_range)} events" in capsys.readouterr().out
    table = pq.read_table(out)
    assert sorted(table.column("event_id").to_pylist()) == sorted(e.event_id for e in in_range)
    occupancy = [e for e in events if e.type == "occupancy"]
    assert {f"details.{k}" for e in in_range for k in e.details} <= set(table.column_names)
    full = folder / "all.csv"
    assert main(["events", "export", "--config", str(config), "--out", str(full), "--quiet"]) == 0
    rows = pv.read_csv(full).to_pylist()
    assert len(rows) == len({e.event_id for e in events})
    by_id = {r["event_id"]: r for r in rows}
    for e in occupancy:
        for cls, n in e.details.items():
            assert by_id[e.event_id][f"details.{cls}"] == n
    alert = next(e for e in events if e.type == "proximity.alert")
    assert by_id[alert.event_id]["mask.counts"] == alert.mask.counts
    assert main(["events", "export", "--config", str(config), "--out", str(folder / "x.xlsx")]) == 2
    assert "export format 'xlsx'" in capsys.readouterr().err


def test_events_export_from_the_topic_gives_each_event_once(on_topic, sink, events, capsys):
    import pyarrow.parquet as pq

    folder, config = sink
    out = folder / "topic.parquet"
    assert main(["events", "export", "--config", str(config), "--from-topic", "--out", str(out), "--quiet"]) == 0
    ids = pq.read_table(out).column("event_id").to_pylist()
    assert sorted(ids) == sorted({e.event_id for e in events})  # two copies on the topic, one in the file


def test_events_frame_draws_the_tracks_mask_on_its_archived_frame(on_topic, sink, events, capsys):
    conn, topics, _ = on_topic
    folder, _ = sink
    archive_topic = f"archive-{uuid.uuid4().hex[:8]}"
    config = _config_file(folder, conn, topics, archive_topic=archive_topic)
    alert = next(e for e in events if e.type == "proximity.alert")
    frame = next(f for f in FRAMES if f.camera_id == alert.camera_id and f.frame_index == alert.mask.frame_index)
    grey = np.full((frame.height, frame.width, 3), 90, np.uint8)
    jpeg = cv2.imencode(".jpg", grey, [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes()
    publisher = DetectionPublisher(conn, topics.detections)
    archive = FrameArchive(publisher, archive_topic, every=1)
    black = cv2.imencode(".jpg", grey * 0)[1].tobytes()
    for index in (frame.frame_index - 1, frame.frame_index, frame.frame_index + 1):  # neighbours it must not pick
        archive.published(jpeg if index == frame.frame_index else black, frame.camera_id, frame.vehicle_id,
                          frame.stream_epoch, index, frame.capture_time, 0)  # fmt: skip
    publisher.close()
    out = folder / "alert.png"
    assert main(["events", "frame", alert.event_id, "--config", str(config), "--out", str(out)]) == 0
    assert f"frame {frame.frame_index} of {frame.camera_id}" in capsys.readouterr().out
    image = cv2.imread(str(out))
    from pipeline.rle import decode

    mask = decode({"size": list(alert.mask.size), "counts": alert.mask.counts})
    inside = np.abs(image[mask].astype(int) - 90).mean()
    below_caption = image[40:][~mask[40:]]
    outside = np.abs(below_caption.astype(int) - 90)
    assert inside > 20 and np.median(outside) <= 2  # the mask tinted on the archived frame, the rest as it was
    assert main(["events", "frame", "no-such-id", "--config", str(config), "--out", str(out)]) == 2
    assert "no event 'no-such-id'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ SCRAM over TLS


@pytest.mark.slow
def test_the_subscriber_and_events_tail_work_over_scram_and_tls(tmp_path, events, capsys):
    from pipeline.local.kafka import LocalKafka, LocalKafkaConfig
    from pipeline.local.tls import make_loopback_certificates

    tls = make_loopback_certificates(tmp_path / "tls")
    config = LocalKafkaConfig(scram_users={"alice": "s3cret words"}, tls_keystore=tls.server, tls_ca=tls.ca)
    with LocalKafka(config) as broker:
        conn = broker.client_connection()
        assert conn.security.protocol == "SASL_SSL"
        topics = new_topics(conn)
        _publish_events(conn, topics.events, events[:50])
        with EventSubscriber(conn, topics.events, start="earliest") as sub:
            assert sorted(e.event_id for e in sub.events(to_end=True)) == sorted(e.event_id for e in events[:50])
        settings = _config_file(tmp_path, conn, topics)
        assert main(["events", "tail", "--config", str(settings), "--from", "earliest", "--to-end", "--json"]) == 0
        assert len(capsys.readouterr().out.splitlines()) == 50
        wrong = _config_file(tmp_path, broker.client_connection(password="not it"), topics)
        done = subprocess.run([sys.executable, "-m", "pipeline", "events", "tail", "--config", str(wrong),
                               "--from", "earliest", "--to-end"], capture_output=True, text=True, cwd=REPO_ROOT,
                              timeout=120)  # fmt: skip
        assert done.returncode == 2 and "refused the login" in done.stderr, done.stderr[-1500:]


# ------------------------------------------------------------------------------------------ Kafka's own subscriber


def _member(config: Path, member: str) -> subprocess.Popen:
    """A ``consume`` process, its log in a file beside its settings."""
    command = [sys.executable, "-m", "pipeline", "consume", "--config", str(config), "--member-id", member]
    log = (config.parent / f"{member}.log").open("w")
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)


@pytest.mark.slow
def test_kafkas_console_consumer_reads_every_event_once_and_valid_while_a_member_is_killed(kafka, tmp_path):
    conn = KafkaConnection(bootstrap=kafka.bootstrap)
    topics = new_topics(conn)
    # 720p frames and large polls keep each transaction open long enough to be caught inside it
    frames = [f for k in range(4) for f in traffic(f"veh-{k + 3}/front", f"veh-{k + 3}", 10 + k, n=150,
                                                   width=1280, height=720)]  # fmt: skip
    expected = {e.event_id for e in reference_events(frames, RULES)}
    group = f"g-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "consume.yaml"
    config.write_text(yaml.safe_dump({
        "kafka": {"bootstrap": kafka.bootstrap, "detections_topic": topics.detections, "events_topic": topics.events},
        "consumer": {"rules": str(DEMO_RULES), "group_id": group, "sink": None, "session_timeout_s": 6,
                     "transaction_timeout_s": 10, "max_poll_records": 200},
    }))  # fmt: skip
    console = subprocess.Popen(kafka.tool_command(
        "org.apache.kafka.tools.consumer.ConsoleConsumer", "--bootstrap-server", kafka.bootstrap,
        "--topic", topics.events, "--from-beginning", "--isolation-level", "read_committed"),
        stdout=(tmp_path / "console.out").open("w"), stderr=(tmp_path / "console.err").open("w"))  # fmt: skip
    members = {m: _member(config, m) for m in ("m1", "m2")}
    victims: list[str | None] = []
    try:
        publisher = DetectionPublisher(conn, topics.detections)
        for f in frames:
            publisher.publish(f)
        publisher.close()
        # SIGKILL whichever member the broker reports inside a transaction holding events: it is aborted
        admin = KafkaAdminClient(**conn.client_args())
        try:
            ids = [f"{group}.{m}" for m in members]
            wait_for(lambda: victims.append(member_in_transaction(admin, ids, topics.events, 4)) or victims[-1],
                     120, "a member inside a transaction", every_s=0.02)  # fmt: skip
        finally:
            admin.close()
        victim = victims[-1].rsplit(".", 1)[1]
        members[victim].send_signal(signal.SIGKILL)
        members[victim].wait()
        members["m3"] = _member(config, "m3")
        wait_for(lambda: group_caught_up(conn, group, topics.detections), 240, "the group to commit every frame")
        on_topic = len(read_topic(conn, topics.events, None))
        out = tmp_path / "console.out"
        wait_for(lambda: len(out.read_text().splitlines()) >= on_topic, 60, "the console consumer to catch up")
        time.sleep(3)  # anything more it would print
    finally:
        for p in members.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in members.values():
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        console.send_signal(signal.SIGTERM)
        console.wait(timeout=30)
    lines = (tmp_path / "console.out").read_text().splitlines()
    check = validator("event")
    records = [json.loads(line) for line in lines]
    invalid = [(r.get("event_id"), e.message) for r in records for e in check.iter_errors(r)]
    assert not invalid, invalid[:5]
    ids = Counter(r["event_id"] for r in records)
    assert set(ids) == expected and max(ids.values()) == 1, {
        "lost": len(expected - set(ids)), "extra": len(set(ids) - expected),
        "duplicated": sum(n - 1 for n in ids.values() if n > 1)}  # fmt: skip
    uncommitted = len(read_topic(conn, topics.events, None, committed=False)) - len(lines)
    assert uncommitted > 0, "the killed member had no open transaction with events in it"
    print(f"console consumer: {len(lines)} events, each once and valid; {uncommitted} aborted records it never saw")


def test_the_readmes_example_script_prints_each_alert_once_and_plots_a_zones_occupancy(on_topic, events, tmp_path):
    conn, topics, _ = on_topic
    script = REPO_ROOT / "docs" / "examples" / "alerts_and_occupancy.py"
    argv = [sys.executable, str(script), "--bootstrap", conn.bootstrap, "--topic", topics.events, "--vehicle",
            "veh-1", "--camera", "veh-1/right", "--zone", "approach", "--seen", str(tmp_path / "seen.sqlite"),
            "--plot", str(tmp_path / "occupancy.png")]  # fmt: skip
    alerts = [e for e in events if e.type == "proximity.alert" and e.vehicle_id == "veh-1"]
    windows = [e for e in events if e.type == "occupancy" and e.camera_id == "veh-1/right" and e.zone == "approach"]
    first = subprocess.run(argv, capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    assert alerts and f"{len(alerts)} new alerts" in first.stdout
    assert all(e.track_id in first.stdout for e in alerts)
    table = first.stdout.split("new alerts", 1)[1]
    assert windows and len([line for line in table.splitlines() if line[:1].isdigit()]) == len(windows)
    assert (tmp_path / "occupancy.png").stat().st_size > 1000
    again = subprocess.run(argv, capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert again.returncode == 0 and "0 new alerts" in again.stdout  # the group and the seen file carry on


def test_a_sink_file_written_before_events_carried_masks_is_read_and_extended(events, tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)  # the layout before streams and masks were kept
    old.executescript("""
        CREATE TABLE events (event_id TEXT PRIMARY KEY, type TEXT NOT NULL, camera_id TEXT NOT NULL, vehicle_id TEXT,
            frame_index INTEGER NOT NULL, frame_time REAL NOT NULL, track_id TEXT, class_name TEXT, zone TEXT,
            line TEXT, direction TEXT, model_name TEXT, model_version TEXT, details TEXT);
        INSERT INTO events VALUES ('old-1', 'line.crossed', 'cam', NULL, 5, 0.5, 'cam#1', 'car', NULL, 'door',
            'positive', 'm', '1', '{"count": 1}');
    """)  # fmt: skip
    old.commit()
    old.close()
    store = EventStore(path)
    assert store.add(events[:5]) == 5
    got = {e.event_id: e for e in store.select()}
    store.close()
    assert got["old-1"].mask is None and got["old-1"].stream_epoch == 0 and got["old-1"].details == {"count": 1}
    assert [got[e.event_id].mask for e in events[:5]] == [e.mask for e in events[:5]]
