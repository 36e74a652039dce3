"""Hostile input and failure windows: no record lost, no camera muted, no member stopped by one message.

The hostile records are schema-valid extremes and malformed values mixed into live synthetic
streams on the real broker; the failures are injected into a real member between its poll and its
commit. Every record and every event is counted against the uninterrupted run without them.
"""

from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from kafka import KafkaConsumer, KafkaProducer

from consumers.analytics import FrameMeta
from consumers.camera import CameraStep
from consumers.rules import DEMO_RULES, load_rules
from consumers.snapshots import box_rle, state_record
from consumers.tracking import Observation
from pipeline.data.detections import moving_cars
from pipeline.errors import BadAnswerError, ConsumerFatalError, StateLoadError
from pipeline.kafka.connection import KafkaConnection
from pipeline.kafka.state import decode_value
from pipeline.messages import DeadLetter, Detection, FrameDetections, FrameLimits, OutOfBoundsError, RleMask
from pipeline.rle import decode, encode, runs_to_string
from pipeline.serving.client import Frame, decode_results
from tests.conftest import FAULT_ROWS, REPO_ROOT
from tests.streams import check_events, group_caught_up, new_topics, read_topic, running_consumer, wait_for

RULES_PATH = DEMO_RULES
RULES = load_rules(RULES_PATH)
NOW_MS = int(time.time() * 1000)


def _good(camera: str = "veh-1/front") -> FrameDetections:
    return moving_cars(1, camera_id=camera, instances=2, stream_epoch=NOW_MS - 60_000)[0]


def _tiny_instances(n: int, w: int, h: int) -> list[Detection]:
    mask = RleMask(size=(h, w), counts=runs_to_string([0, 1, h * w - 1]))
    return [Detection(class_id=0, class_name="person", score=0.9, box=(0, 0, 1, 1), area=1, mask=mask, query=i)
            for i in range(n)]  # fmt: skip


def hostile_corpus(camera: str, good: FrameDetections) -> dict[str, tuple[bytes | None, bytes]]:
    """Name -> (key, value): every kind of record one consumer must survive, each aimed at ``camera``."""
    key = camera.encode()
    g = good.model_copy(update={"camera_id": camera})

    def frame(**update) -> bytes:
        return g.model_copy(update=update).model_dump_json().encode()

    empty_big = {"instances": [], "frame_index": good.frame_index + 1}
    long_mask = g.instances[0].model_copy(update={"mask": RleMask(size=(g.height, g.width), counts="0" * 70_000)})
    return {
        "8000x8000 frame": (key, frame(width=8000, height=8000, **empty_big)),
        "40000x40000 frame": (key, frame(width=40000, height=40000, **empty_big)),
        "2000 instances": (key, frame(instances=_tiny_instances(2000, g.width, g.height))),
        "epoch 2^62": (key, frame(stream_epoch=2**62)),
        "epoch a day ahead": (key, frame(stream_epoch=NOW_MS + 86_400_000)),
        "frame index 10^18": (key, frame(frame_index=10**18)),
        "capture time 1e300": (key, frame(capture_time=1e300)),
        "negative capture time": (key, frame(capture_time=-5.0)),
        "box outside the frame": (key, frame(instances=[g.instances[0].model_copy(update={"box": (0, 0, 1e9, 5)})])),
        "mask string past the cap": (key, frame(instances=[long_mask])),
        "area past the frame": (key, frame(instances=[g.instances[0].model_copy(update={"area": 10**9})])),
        "NaN score": (key, re.sub(rb'"score":[^,]+', b'"score":NaN', frame(), count=1)),
        "infinite capture time": (key, re.sub(rb'"capture_time":[^,]+', b'"capture_time":Infinity', frame())),
        "wrong key": (b"some/other-camera", frame()),
        "no key": (None, frame()),
        "not JSON": (key, b"{not json"),
        "binary": (key, bytes(range(256))),
        "empty": (key, b""),
        "unknown schema version": (key, frame().replace(b'"schema_version":2', b'"schema_version":99')),
    }


# ------------------------------------------------------------------------------------------- the edge


def test_the_limits_refuse_every_schema_valid_extreme_and_pass_real_frames():
    limits = FrameLimits()
    for f in moving_cars(5, camera_id="veh-1/front", stream_epoch=NOW_MS) + moving_cars(
        3, camera_id="veh-1/front", width=3840, height=2160
    ):
        limits.check(f)
    reasons = {}
    for name, (_, value) in hostile_corpus("veh-1/front", _good()).items():
        if name in ("wrong key", "no key"):
            continue
        try:
            frame = FrameDetections.model_validate_json(value)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            reasons[name] = type(exc).__name__
            continue
        with pytest.raises(OutOfBoundsError) as err:
            limits.check(frame)
        reasons[name] = str(err.value)
    assert reasons["NaN score"] == reasons["infinite capture time"] == "ValidationError"
    assert "max_side" in reasons["8000x8000 frame"] and "max_instances" in reasons["2000 instances"]
    assert "clock_skew_s" in reasons["epoch 2^62"] and "max_fps" in reasons["frame index 10^18"]
    assert "max_mask_chars" in reasons["mask string past the cap"]
    # the limits are settings: a site with 8K cameras raises them
    FrameLimits(max_side=8192, max_pixels=8192 * 8192).check(
        _good().model_copy(update={"width": 8000, "height": 8000, "instances": []})
    )


def test_a_malformed_server_answer_is_a_bad_answer_not_a_crash():
    frames = [Frame(b"", "cam", 0, 0.0)]
    mask = encode(np.zeros((4, 6), bool))["counts"]
    good = {"num_instances": np.array([[1]]), "frame_size": np.array([[4, 6]]), "scores": np.array([[0.5]]),
            "classes": np.array([[2]]), "boxes": np.array([[[0, 0, 2, 2]]], float),
            "masks_rle": np.array([[mask.encode()]], object), "query_index": np.array([[3]])}  # fmt: skip
    assert decode_results(good, frames, "m", "1")[0].instances[0].query == 3
    for bad in ({"num_instances": np.array([[7]])}, {"scores": np.array([[math.nan]])},
                {"masks_rle": np.array([[b"\xff\xfe"]], object)}, {"frame_size": np.array([[0, 6]])}):  # fmt: skip
        with pytest.raises(BadAnswerError, match="malformed answer"):
            decode_results({**good, **bad}, frames, "m", "1")


def test_a_shadow_result_with_a_bad_mask_counts_nothing():
    from pipeline.messages import ShadowResult
    from pipeline.rollout.compare import Judgement

    live = _good()
    broken = live.model_copy(
        update={
            "instances": [
                live.instances[0].model_copy(update={"mask": RleMask(size=(live.height, live.width), counts="0")})
            ]
        }
    )  # runs that do not cover the frame
    judgement = Judgement()
    before = judgement.model_dump()
    with pytest.raises(ValueError):
        judgement.add(ShadowResult(rollout_id="r", camera_id=live.camera_id, frame_index=0, live=live,
                                   candidate=broken, live_latency_ms=3.0, candidate_latency_ms=4.0))  # fmt: skip
    assert judgement.model_dump() == before  # nothing half-counted


def test_a_state_over_the_cap_is_trimmed_to_fit_and_says_so():
    rng = np.random.default_rng(0)

    def crowded() -> CameraStep:  # 60 tracks with ragged masks: a large state
        proc = CameraStep("veh-1/front", RULES)
        frame = [Observation("car", 0.9, (k, 0, 640, 360), rng.random((360, 640)) > 0.5) for k in range(60)]
        proc.step(FrameMeta("veh-1/front", None, 0, 0.0, 640, 360, stream_epoch=1), frame)
        return proc

    value, trimmed = state_record(crowded(), 20_000)  # first step: the masks become their boxes
    state = json.loads(decode_value(value))
    assert len(value) <= 20_000 and trimmed == 60 and len(state["tracks"]) == 60
    for t in state["tracks"]:
        x1, y1, x2, y2 = (round(v) for v in t["box"])
        assert decode(t["mask"]).sum() == (x2 - x1) * (y2 - y1)
    proc = crowded()
    value, trimmed = state_record(proc, 1_000)  # second step: tracks are dropped until it fits
    assert len(value) <= 1_000 and trimmed == 60 and 0 < len(json.loads(decode_value(value))["tracks"]) < 60
    assert len(proc.state.tracks) == len(json.loads(decode_value(value))["tracks"])  # what runs on is what was saved


def test_box_masks_are_the_box():
    m = decode(box_rle((3, 2, 7, 5), 10, 12))
    assert m.sum() == 12 and m[2:5, 3:7].all()
    assert decode(box_rle((0, 0, 12, 10), 10, 12)).all() and not decode(box_rle((5, 5, 5, 9), 10, 12)).any()


# ------------------------------------------------------------------------------------------- a live stream


def _send(conn, topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
    producer = KafkaProducer(
        **KafkaConnection.of(conn).client_args(), acks="all", linger_ms=5, max_request_size=4 * 1024 * 1024
    )
    for key, value in records:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def _consume_config(tmp_path, bootstrap: str, topics, group: str, **consumer) -> str:
    path = tmp_path / f"consume-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump({
        "kafka": {"bootstrap": bootstrap, "detections_topic": topics.detections, "events_topic": topics.events,
                  "topics": {"partitions": 4}, "create_topics": False},
        "consumer": {"rules": str(RULES_PATH), "group_id": group, "sink": None, "session_timeout_s": 6,
                     "transaction_timeout_s": 10, **consumer},
    }))  # fmt: skip
    return str(path)


def _consume(config: str, *args: str) -> subprocess.Popen:
    """A ``consume`` process; its log goes to a file beside the config (a pipe nobody reads would block it)."""
    log = Path(config).with_suffix(f".{uuid.uuid4().hex[:6]}.log").open("w+")
    member = subprocess.Popen([sys.executable, "-m", "pipeline", "consume", "--config", config, *args],
                              stdout=subprocess.PIPE, stderr=log, text=True, cwd=REPO_ROOT)  # fmt: skip
    member.log = log  # type: ignore[attr-defined]
    return member


def _log_of(member: subprocess.Popen) -> str:
    member.log.seek(0)  # type: ignore[attr-defined]
    return member.log.read()  # type: ignore[attr-defined]


def _peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


@pytest.mark.slow
def test_hostile_records_in_a_live_stream_are_dead_lettered_and_the_cameras_go_on(kafka, tmp_path):
    topics = new_topics(kafka.bootstrap)
    cameras = ["veh-7/front", "veh-7/rear", "veh-7/left"]
    streams = {c: moving_cars(60, camera_id=c, seed=i, stream_epoch=NOW_MS - 60_000) for i, c in enumerate(cameras)}
    records, hostile = [], Counter()
    for i in range(60):
        for c in cameras:
            good = streams[c][i]
            records.append((c.encode(), good.model_dump_json().encode()))
            if i % 6 == 3:  # the whole corpus, aimed at every camera, mixed in through the stream
                for name, record in hostile_corpus(c, good).items():
                    records.append(record)
                    hostile[name] += 1
    _send(kafka.bootstrap, topics.detections, records)
    group = f"g-{uuid.uuid4().hex[:8]}"
    member = _consume(_consume_config(tmp_path, kafka.bootstrap, topics, group))
    try:
        try:
            wait_for(lambda: member.poll() is not None
                     or group_caught_up(kafka.client_connection(), group, topics.detections), 120,
                     "the member to commit every record")  # fmt: skip
        except AssertionError:
            member.kill()
            log = [line for line in _log_of(member).splitlines() if "dead letter" not in line]
            raise AssertionError("\n".join(log[-40:])) from None
        assert member.poll() is None, _log_of(member)[-2000:]  # still running: nothing stopped it
        peak = _peak_rss_mib(member.pid)
        member.send_signal(signal.SIGTERM)
        out, _ = member.communicate(timeout=60)
        err = _log_of(member)
    finally:
        if member.poll() is None:
            member.kill()
    assert member.returncode == 0, err[-2000:]
    summary = json.loads(out)
    frames = [f for c in cameras for f in streams[c]]
    events = check_events(kafka.bootstrap, topics, frames, RULES)
    assert events["events expected"] > 0
    assert events["lost"] == events["duplicated"] == events["extra"] == 0, events
    dead = read_topic(kafka.bootstrap, topics.dead_letter, DeadLetter)
    assert len(dead) == sum(hostile.values()) == summary["dead_letters"]
    by_reason = Counter(d.reason.split(":", 1)[0] for d in dead)
    assert by_reason == summary["dead_by_reason"]
    assert by_reason["out of bounds"] == 11 * 30 and by_reason["wrong key"] == 2 * 30, by_reason
    assert set(by_reason) == {"out of bounds", "wrong key", "invalid detections message"}
    muted = [c for c in cameras if not any(e.camera_id == c for e in read_topic(kafka.bootstrap, topics.events))]
    assert not muted and not summary["skipped"].get("stale_stream") and not summary["skipped"].get("duplicate")
    assert peak < 1024, f"peak RSS {peak:.0f} MiB"
    FAULT_ROWS.append({
        "fault": f"{sum(hostile.values())} hostile records ({len(hostile)} kinds) in 3 live cameras; dead-lettered "
                 f"by reason {dict(by_reason)}; members stopped 0, cameras muted 0, consumer peak RSS {peak:.0f} MiB",
        "frames read": len(frames), "published (acked)": len(frames), "dropped by reason": "none (pre-published)",
        **events,
    })  # fmt: skip


# ------------------------------------------------------------------------------------------- failure windows


def _stream(n: int = 40, cameras: int = 3) -> list[FrameDetections]:
    return [f for i in range(cameras) for f in moving_cars(n, camera_id=f"veh-8/cam{i}", seed=i, stream_epoch=5)]


def _publish(conn, topics, frames: list[FrameDetections], extra: list[tuple[bytes, bytes]] = ()) -> None:
    _send(conn, topics.detections, [(f.camera_id.encode(), f.model_dump_json().encode()) for f in frames]
          + list(extra))  # fmt: skip


def _wrong_mask(f: FrameDetections) -> tuple[bytes, bytes]:
    """A record that fails inside its camera's processing: the poll is aborted and redone without it."""
    bad = f.model_copy(update={"height": f.height + 8, "frame_index": f.frame_index + 500})
    return f.camera_id.encode(), bad.model_dump_json().encode()


@pytest.mark.slow
def test_a_state_load_that_fails_after_the_poll_returned_records_loses_none_of_them(kafka, monkeypatch):
    import consumers.processor as processor_module
    from consumers.processor import EventProcessor

    topics = new_topics(kafka.bootstrap)
    frames = _stream()
    # a record that fails in processing aborts the poll; the states are then reloaded with the next poll
    _publish(kafka.bootstrap, topics, frames, [_wrong_mask(frames[30])])
    real_load, real_rewind = processor_module.load_partitions, EventProcessor._rewind
    calls, rewound = Counter(), []

    def flaky_load(*args, **kwargs):
        calls["load"] += 1
        if 2 <= calls["load"] <= 4:  # the reloads time out, as while a dead member's transaction is open
            calls["failed"] += 1
            raise StateLoadError("state not loaded within 1 s (injected)")
        return real_load(*args, **kwargs)

    def counting_rewind(self, batches):
        if calls["failed"] > len(rewound):
            rewound.append(sum(len(rs) for rs in batches.values()))  # records the failed load's poll had returned
        return real_rewind(self, batches)

    monkeypatch.setattr(processor_module, "load_partitions", flaky_load)
    monkeypatch.setattr(EventProcessor, "_rewind", counting_rewind)
    with running_consumer(kafka.bootstrap, topics, RULES, max_poll_records=16, kafka_retry_s=120) as proc:
        wait_for(lambda: group_caught_up(kafka.client_connection(), proc.group_id, topics.detections), 120,
                 "every record committed")  # fmt: skip
    events = check_events(kafka.bootstrap, topics, frames, RULES)
    assert calls["failed"] == 3 and sum(rewound) > 0, rewound  # the failures came after records were returned
    assert events["lost"] == events["duplicated"] == events["extra"] == 0, events


@pytest.mark.slow
def test_a_rewind_whose_committed_offsets_cannot_be_read_goes_back_to_where_the_poll_started(kafka):
    topics = new_topics(kafka.bootstrap)
    frames = _stream()
    _publish(kafka.bootstrap, topics, frames, [_wrong_mask(frames[10]), _wrong_mask(frames[70])])
    with running_consumer(kafka.bootstrap, topics, RULES, max_poll_records=16) as proc:
        from kafka.errors import KafkaTimeoutError

        calls = Counter()

        def committed_fails(tp):
            calls["committed"] += 1
            raise KafkaTimeoutError("no answer from the coordinator (injected)")

        proc.consumer.committed = committed_fails
        wait_for(lambda: proc.stats.messages >= len(frames) + 2, 120, "every record handled")
    events = check_events(kafka.bootstrap, topics, frames, RULES)
    assert calls["committed"] >= 2 and proc.stats.aborted >= 2 and proc.stats.dead_letters == 2
    assert events["lost"] == events["duplicated"] == events["extra"] == 0, events


@pytest.mark.slow
def test_a_member_that_cannot_rewind_stops_and_the_next_one_loses_nothing(kafka):
    topics = new_topics(kafka.bootstrap)
    frames = _stream()
    _publish(kafka.bootstrap, topics, frames, [_wrong_mask(frames[50])])
    group = f"g-{uuid.uuid4().hex[:8]}"
    with (
        pytest.raises(ConsumerFatalError, match="stopping rather than skip uncommitted records"),
        running_consumer(kafka.bootstrap, topics, RULES, group_id=group, max_poll_records=16) as proc,
    ):

        def seek_fails(tp, offset):
            raise RuntimeError("seek refused (injected)")

        proc.consumer.seek = seek_fails
        wait_for(lambda: proc._stop.is_set() or proc.stats.aborted > 0, 60, "the failing rewind")
        time.sleep(1.0)
    with running_consumer(kafka.bootstrap, topics, RULES, group_id=group, member_id="t2") as second:
        wait_for(lambda: group_caught_up(kafka.client_connection(), group, topics.detections), 120,
                 "the next member to commit every record")  # fmt: skip
    events = check_events(kafka.bootstrap, topics, frames, RULES)
    assert second.stats.messages > 0
    assert events["lost"] == events["duplicated"] == events["extra"] == 0, events


@pytest.mark.slow
def test_states_over_the_cap_are_trimmed_and_counted_and_the_member_goes_on(kafka):
    topics = new_topics(kafka.bootstrap)
    frames = [f for i in range(2) for f in moving_cars(30, camera_id=f"veh-9/cam{i}", instances=40, seed=i,
                                                       width=1280, height=720, stream_epoch=5)]  # fmt: skip
    _publish(kafka.bootstrap, topics, frames)
    with running_consumer(kafka.bootstrap, topics, RULES, state_max_bytes=1200) as proc:
        wait_for(lambda: group_caught_up(kafka.client_connection(), proc.group_id, topics.detections), 120,
                 "every record committed")  # fmt: skip
    states = [v for v in read_topic(kafka.bootstrap, topics.state, None) if v is not None]
    assert proc.stats.messages == len(frames) and proc.stats.state_trimmed > 0
    assert states and max(map(len, states)) <= 1200


# ------------------------------------------------------------------------------------------- bounded state


@pytest.mark.slow
def test_one_member_churns_through_ten_thousand_cameras_with_bounded_memory_and_state(kafka):
    topics = new_topics(kafka.bootstrap)
    template = moving_cars(1, camera_id="x", instances=1, stream_epoch=5)[0]
    records = []
    for k in range(10_000):  # each camera: one frame, then its stream ends
        cam = f"churn/{k}"
        f = template.model_copy(update={"camera_id": cam})
        end = f.model_copy(update={"frame_index": 1, "instances": [], "end_of_stream": True})
        records += [(cam.encode(), f.model_dump_json().encode()), (cam.encode(), end.model_dump_json().encode())]
    _send(kafka.bootstrap, topics.detections, records)
    held = []
    with running_consumer(kafka.bootstrap, topics, RULES, max_poll_records=1000) as proc:
        proc.on_commit = lambda done: held.append(len(proc.processors) + len(proc.states))
        wait_for(lambda: proc.stats.messages >= len(records), 300, "every camera's stream")
    live = {}
    reader = KafkaConsumer(topics.state, bootstrap_servers=kafka.bootstrap, auto_offset_reset="earliest",
                           isolation_level="read_committed", consumer_timeout_ms=8000)  # fmt: skip
    for m in reader:
        live[m.key] = m.value
    reader.close()
    assert proc.stats.expired["ended"] == 10_000
    assert not [k for k, v in live.items() if v is not None]  # every camera's last state record is a tombstone
    assert max(held) <= 1000 and not proc.processors and not proc.states
    print(f"10,000 cameras: at most {max(held)} held in memory at a commit, {len(live)} state keys, all tombstoned")


@pytest.mark.slow
def test_a_camera_idle_past_its_ttl_ends_its_tracks_and_is_forgotten(kafka):
    topics = new_topics(kafka.bootstrap)
    quiet = moving_cars(20, camera_id="veh-3/quiet", stream_epoch=5)
    busy = moving_cars(200, camera_id="veh-3/busy", seed=1, stream_epoch=5)
    _publish(kafka.bootstrap, topics, quiet)
    with running_consumer(kafka.bootstrap, topics, RULES, camera_ttl_s=2.0) as proc:
        wait_for(lambda: proc.stats.messages >= 20, 60, "the quiet camera's frames")
        for i in range(0, 200, 10):  # the other camera goes on past the quiet one's TTL
            _publish(kafka.bootstrap, topics, busy[i : i + 10])
            time.sleep(0.3)
        wait_for(lambda: proc.stats.expired["idle"] >= 1, 30, "the quiet camera to expire")
    events = [e for e in read_topic(kafka.bootstrap, topics.events) if e.camera_id == "veh-3/quiet"]
    started = {e.track_id for e in events if e.type == "track.started"}
    ended = {e.track_id for e in events if e.type == "track.ended"}
    assert started and started == ended  # its open tracks were ended, once each
    assert "veh-3/quiet" not in proc.processors


# ------------------------------------------------------------------------------------------- members


@pytest.mark.slow
def test_three_consume_processes_with_no_member_flags_and_one_killed_keep_events_exactly_once(kafka, tmp_path):
    topics = new_topics(kafka.bootstrap)
    frames = [f for i in range(6) for f in moving_cars(300, camera_id=f"veh-{i}/front", seed=i, stream_epoch=5)]
    _publish(kafka.bootstrap, topics, frames)
    group = f"g-{uuid.uuid4().hex[:8]}"
    config = _consume_config(tmp_path, kafka.bootstrap, topics, group, max_poll_records=50)
    members = [_consume(config) for _ in range(3)]
    try:
        # once all three are in and some events are committed, one is SIGKILLed mid-stream
        wait_for(lambda: len(read_topic(kafka.bootstrap, topics.events, timeout_ms=500)) > 50, 120, "events")
        members[0].send_signal(signal.SIGKILL)
        members[0].wait()
        wait_for(lambda: group_caught_up(kafka.client_connection(), group, topics.detections), 240,
                 "the group to commit every frame")  # fmt: skip
        alive = [p.poll() is None for p in members[1:]]
        for p in members[1:]:
            p.send_signal(signal.SIGTERM)
        outputs = [p.communicate(timeout=60)[0] for p in members[1:]]
    finally:
        for p in members:
            if p.poll() is None:
                p.kill()
    logs = [_log_of(p)[-1500:] for p in members[1:]]
    assert all(alive) and all(p.returncode == 0 for p in members[1:]), logs
    names = {json.loads(out)["member"] for out in outputs}
    assert len(names) == 2  # each process its own member id, hence its own transactional id
    events = check_events(kafka.bootstrap, topics, frames, RULES)
    assert events["lost"] == events["duplicated"] == events["extra"] == 0, events
    FAULT_ROWS.append({"fault": "3 consume processes with no member flags on one host, one SIGKILLed mid-stream",
                       "frames read": len(frames), "published (acked)": len(frames),
                       "dropped by reason": "none (pre-published)", **events})  # fmt: skip


@pytest.mark.slow
def test_a_second_process_with_a_member_id_in_use_refuses_with_one_line(kafka, tmp_path):
    topics = new_topics(kafka.bootstrap)
    config = _consume_config(tmp_path, kafka.bootstrap, topics, f"g-{uuid.uuid4().hex[:8]}")
    first = _consume(config, "--member-id", "m1")
    try:
        wait_for(lambda: "assigned partitions" in _log_of(first) or first.poll() is not None, 120, "the first member")
        second = subprocess.run([sys.executable, "-m", "pipeline", "consume", "--config", config, "--member-id", "m1"],
                                capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)  # fmt: skip
        assert first.poll() is None  # the first one was not fenced
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    assert second.returncode == 2
    errors = [line for line in second.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "is in use by pid" in errors[0], second.stderr[-1500:]
    assert first.returncode == 0


# ------------------------------------------------------------------------------------------- rollout state


def _running_rollout(conn, rollout_id: str):
    """Topics of their own, their store, and a running rollout saved in it (its first write)."""
    from pipeline.kafka.topics import Topics, TopicSpec, ensure_topics
    from pipeline.rollout.state import RolloutState, RolloutStore

    tag = uuid.uuid4().hex[:8]
    topics = Topics(detections=f"detections-{tag}", events=f"events-{tag}", rollout_state=f"rollout.state-{tag}",
                    shadow=f"rollout.shadow-{tag}", archive=f"frames.archive-{tag}")  # fmt: skip
    ensure_topics(conn, topics, TopicSpec(partitions=2))
    store = RolloutStore(conn, topics.rollout_state)
    running = store.save(RolloutState(rollout_id=rollout_id, live_version=1, live_ensemble="a", candidate_version=2,
                                      candidate_ensemble="b"))  # fmt: skip
    return topics, store, running


@pytest.mark.slow
def test_bad_shadow_results_on_the_topic_are_skipped_by_reason_and_the_policy_still_rolls_back(kafka):
    from pipeline.messages import ShadowResult
    from pipeline.rollout.controller import RolloutController
    from pipeline.rollout.state import RolloutPolicy

    topics, store, running = _running_rollout(kafka.bootstrap, "r-hostile")
    running = store.save(running.model_copy(update={"policy": RolloutPolicy(min_frames=20)}))
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap)
    bad_mask = RleMask(size=(4, 4), counts="0")  # runs that do not cover the frame they claim

    def result(i: int, candidate: FrameDetections) -> bytes:
        live = _good(f"veh-1/cam-{i % 4}").model_copy(update={"frame_index": i})
        return ShadowResult(rollout_id=running.rollout_id, camera_id=live.camera_id, frame_index=i, live=live,
                            candidate=candidate.model_copy(update={"frame_index": i}), live_latency_ms=5.0,
                            candidate_latency_ms=6.0).model_dump_json().encode()  # fmt: skip

    good = _good()
    broken = good.model_copy(update={"instances": [good.instances[0].model_copy(update={"mask": bad_mask})]})
    garbage = [b"{not json", b"", bytes(range(256)), re.sub(rb'"live_latency_ms":[^,]+', b'"live_latency_ms":NaN',
                                                            result(0, good))]  # fmt: skip
    records = [result(i, good.model_copy(update={"instances": []})) for i in range(20)]  # the candidate finds nothing
    records[3:3] = [result(100 + i, broken) for i in range(8)]
    records[10:10] = garbage
    for value in records:
        producer.send(topics.shadow, value, key=b"veh-1", partition=0)
    producer.flush()
    producer.close()
    for attempt in range(2):  # the decision, then a restart that finds it made: neither stops on a bad record
        controller = RolloutController(kafka.bootstrap, topics, save_every_s=0.3)
        final = controller.run(until_decided=True)
        controller.close()
        if attempt == 0:
            assert controller.stats.skipped == {"bad_result": 8, "malformed": 4}
            assert controller.stats.judged == 20
    assert (final.phase, final.decided_by, final.judgement.frames) == ("rolled_back", "policy", 20)
    assert store.load().phase == "rolled_back"


@pytest.mark.slow
def test_rollout_state_writes_are_compare_and_set(kafka):
    from pipeline.rollout.state import StaleRolloutState

    _, store, first = _running_rollout(kafka.bootstrap, "r1")
    controller_view, operator_view = store.load(), store.load()
    assert controller_view.sequence == operator_view.sequence == first.sequence == 1
    store.save(operator_view.rolled_back("operator", "by hand"))  # the operator writes first
    with pytest.raises(StaleRolloutState):  # the controller's write, made from what it read before, is refused
        store.save(controller_view.model_copy(update={"reason": "judged 40 frames"}))
    latest = store.load()
    assert (latest.phase, latest.reason, latest.sequence) == ("rolled_back", "by hand", 2)


@pytest.mark.slow
def test_a_decision_saved_before_a_crash_is_announced_once_after_the_restart(kafka):
    from pipeline.rollout.controller import RolloutController, rollout_event

    topics, store, running = _running_rollout(kafka.bootstrap, "r2")
    # a controller saved its decision and was killed before it published the decision's event
    decided = store.save(running.promoted("policy", "agreement 0.99"))
    assert not decided.decision_published
    for _ in range(2):  # restarted twice: the event goes out once, with its deterministic id
        controller = RolloutController(kafka.bootstrap, topics)
        final = controller.run(until_decided=True)
        controller.close()
    events = read_topic(kafka.bootstrap, topics.events)
    assert [e.event_id for e in events] == [rollout_event(decided, "promoted").event_id]
    assert final.decision_published and store.load().decision_published


@pytest.mark.slow
def test_an_archive_record_over_the_limit_is_counted_as_an_archived_frame_not_published(kafka):
    from pipeline.publish import BROKER_LIMIT, DetectionPublisher

    topics = new_topics(kafka.bootstrap)
    publisher = DetectionPublisher(kafka.bootstrap, topics.detections)
    publisher.send(topics.archive, "veh-1/front", b"\xff" * (BROKER_LIMIT + 1), "frames_archived")
    publisher.send(topics.archive, "veh-1/front", b"\xff" * 1000, "frames_archived")
    publisher.close()
    assert publisher.counts["frames_archived"] == 1 and publisher.counts["not_published:frames_archived"] == 1
    assert publisher.counts["publish_failed:MessageSizeTooLargeError"] == 1


# ------------------------------------------------------------------------------------------- the sink


def _event(i: int, epoch: int = 7):
    from pipeline.messages import Event

    return Event(event_id=f"e{i}", type="track.started", camera_id="veh-1/front", stream_epoch=epoch, frame_index=i,
                 frame_time=i / 10, track_id=f"veh-1/front#{i}", details={"first_index": i, "score": 0.9})  # fmt: skip


@pytest.mark.slow
def test_the_sink_dead_letters_what_is_not_an_event_and_stores_the_stream_of_each_row(kafka, tmp_path):
    from consumers.sink import EventSink, EventStore

    topics = new_topics(kafka.bootstrap)
    good = [_event(i) for i in range(20)]
    bad = [b"{not json", b"", json.dumps({"event_id": "x"}).encode()]
    records = (
        [e.model_dump_json().encode() for e in good[:10]] + bad + [e.model_dump_json().encode() for e in good[10:]]
    )
    _send(kafka.bootstrap, topics.events, [(b"veh-1/front", r) for r in records])
    store = EventStore(tmp_path / "events.sqlite")
    sink = EventSink(kafka.bootstrap, topics.events, store, group_id=f"s-{uuid.uuid4().hex[:6]}")
    handled = 0
    for _ in range(60):
        handled += sink.poll_once(timeout_ms=500)
        if handled >= 23:
            break
    sink.close()
    rows = store.db.execute("SELECT event_id, stream_epoch FROM events ORDER BY frame_index").fetchall()
    store.close()
    assert rows == [(e.event_id, 7) for e in good]
    dead = read_topic(kafka.bootstrap, topics.events_dead_letter, DeadLetter)
    assert [d.offset for d in dead] == [10, 11, 12] and all(d.reason.startswith("invalid event") for d in dead)
    assert sink.dead_letters == {"invalid event": 3}


@pytest.mark.slow
def test_a_sink_whose_store_fails_stops_with_one_error_instead_of_dying_silently(kafka, tmp_path):
    from consumers.sink import EventSink, EventStore, SinkError

    topics = new_topics(kafka.bootstrap)
    _send(kafka.bootstrap, topics.events, [(b"veh-1/front", _event(0).model_dump_json().encode())])
    store = EventStore(tmp_path / "events.sqlite")
    sink = EventSink(kafka.bootstrap, topics.events, store, group_id=f"s-{uuid.uuid4().hex[:6]}", retry_s=1.0)
    store.db.close()  # the disk went away
    seen: list[SinkError] = []
    sink.run(on_error=seen.append)  # returns: the sink stops itself
    sink.close()
    assert len(seen) == 1 and sink.error is seen[0] and "event sink stopped" in str(seen[0])


@pytest.mark.slow
def test_a_sink_killed_and_restarted_neither_loses_nor_duplicates_rows(kafka, tmp_path):
    import sqlite3

    topics = new_topics(kafka.bootstrap)
    frames = _stream(120, cameras=4)
    _publish(kafka.bootstrap, topics, frames)
    sink_path = tmp_path / "events-{member}.sqlite"
    group = f"g-{uuid.uuid4().hex[:8]}"
    config = _consume_config(tmp_path, kafka.bootstrap, topics, group, sink=str(sink_path), max_poll_records=20)
    first = _consume(config, "--member-id", "s1")
    db = tmp_path / "events-s1.sqlite"

    def rows() -> int:
        try:
            return sqlite3.connect(db).execute("SELECT COUNT(*) FROM events").fetchone()[0]
        except sqlite3.Error:
            return 0

    wait_for(lambda: rows() > 20, 120, "the first rows")
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = _consume(config, "--member-id", "s1")
    try:
        wait_for(lambda: group_caught_up(kafka.client_connection(), group, topics.detections), 180, "every frame")
        on_topic = {e.event_id for e in read_topic(kafka.bootstrap, topics.events)}
        # the restarted sink rejoins its group once the killed one's session has timed out, then catches up
        wait_for(lambda: rows() >= len(on_topic), 120, "the restarted sink to store every event")
        second.send_signal(signal.SIGTERM)
        second.communicate(timeout=60)
    finally:
        if second.poll() is None:
            second.kill()
    assert second.returncode == 0, _log_of(second)[-2000:]
    stored = [r[0] for r in sqlite3.connect(db).execute("SELECT event_id FROM events")]
    assert len(stored) == len(set(stored)) and set(stored) == on_topic and on_topic


def test_rollout_start_refuses_candidate_files_that_are_links_out_large_or_not_files(tmp_path):
    from pipeline.serving.versions import CandidateError, candidate_file

    outside, folder = tmp_path / "outside", tmp_path / "candidates"
    outside.mkdir()
    folder.mkdir()
    (outside / "secret.onnx").write_bytes(b"x")
    (folder / "model.onnx").write_bytes(b"x" * 100)
    (folder / "link.onnx").symlink_to(outside / "secret.onnx")
    (folder / "local-link.onnx").symlink_to(folder / "model.onnx")
    assert candidate_file(folder / "model.onnx", "ONNX file") == folder / "model.onnx"
    assert candidate_file(folder / "local-link.onnx", "ONNX file") is not None
    for path, limit, message in ((folder / "link.onnx", 10**9, "outside its folder"), (folder, 10**9, "not a regular"),
                                 (folder / "model.onnx", 10, "more than")):  # fmt: skip
        with pytest.raises(CandidateError, match=message):
            candidate_file(path, "ONNX file", max_bytes=limit)


@pytest.mark.slow
def test_a_source_restarted_on_a_host_whose_clock_is_behind_takes_over_its_camera(kafka):
    topics = new_topics(kafka.bootstrap)
    ahead = moving_cars(30, camera_id="veh-4/front", stream_epoch=NOW_MS - 10_000)  # the first host's clock
    behind = moving_cars(60, camera_id="veh-4/front", seed=3, stream_epoch=NOW_MS - 3_600_000)  # the second's
    _publish(kafka.bootstrap, topics, ahead)
    with running_consumer(kafka.bootstrap, topics, RULES, stream_takeover_s=2.0) as proc:
        wait_for(lambda: proc.stats.messages >= 30, 60, "the first stream")
        for i in range(0, 60, 5):  # the restarted source, whose epoch is older than the first one's
            _publish(kafka.bootstrap, topics, behind[i : i + 5])
            time.sleep(0.4)
        wait_for(lambda: proc.stats.messages >= 90, 60, "the second stream")
    events = read_topic(kafka.bootstrap, topics.events)
    epochs = Counter(e.stream_epoch for e in events)
    assert proc.stats.skipped["stream_takeover"] == 1 and 0 < proc.stats.skipped["stale_stream"] < 60
    assert epochs[NOW_MS - 3_600_000] > 0, epochs  # the camera is not muted: the new stream makes events
