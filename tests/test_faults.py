"""Faults with the real services: processes are SIGKILLed, then every frame and every event is counted.

Kafka is a 3-node KRaft cluster (replication 3, ``min.insync.replicas`` 2) started by the project's
own code; Triton serves the CPU profile of the shipped model. After each fault the test checks
and records (see the table at the end of the run): frames read, published (acknowledged) and
dropped by reason, with every frame in exactly one of these, and the events on the events topic
against the uninterrupted single-process run over the same detections: none lost, none duplicated.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import pytest
import yaml
from kafka import KafkaAdminClient, KafkaProducer

from consumers.rules import DEMO_RULES, load_rules
from pipeline.data.detections import moving_cars
from pipeline.ingest.runner import IngestRunner
from pipeline.ingest.sources import JpegFolder, SyntheticVehicle
from pipeline.kafka.connection import KafkaConnection
from pipeline.kafka.topics import TopicSpec
from pipeline.local.ports import free_port
from pipeline.messages import DeadLetter, FrameDetections
from pipeline.publish import DetectionPublisher
from pipeline.serving.client import ClientConfig
from tests.conftest import FAULT_ROWS, REPO_ROOT
from tests.streams import (
    check_events,
    dropped_text,
    group_caught_up,
    member_in_transaction,
    new_topics,
    read_topic,
    running_consumer,
    wait_for,
)

pytestmark = pytest.mark.slow

RULES_PATH = DEMO_RULES
RULES = load_rules(RULES_PATH)
SPEC = TopicSpec(partitions=6, replication=3, min_insync_replicas=2)


def conn_of(cluster) -> KafkaConnection:
    return KafkaConnection(bootstrap=cluster.bootstrap)


def frames_on(conn, topics) -> list[FrameDetections]:
    return read_topic(conn, topics.detections, FrameDetections)


def assert_unique_frames(frames: list[FrameDetections]) -> None:
    keys = Counter((f.camera_id, f.stream_epoch, f.frame_index) for f in frames if not f.end_of_stream)
    assert not [k for k, n in keys.items() if n > 1], "a frame was published twice"


def record(fault: str, *, read: int | str, published: int | str, dropped: dict | str, events: dict) -> None:
    row = {"fault": fault, "frames read": read, "published (acked)": published,
           "dropped by reason": dropped if isinstance(dropped, str) else dropped_text(dropped), **events}  # fmt: skip
    FAULT_ROWS.append(row)
    print(json.dumps(row))
    assert events["duplicated"] == 0 and events["lost"] == 0 and events["extra"] == 0, row


def finish(conn, topics, proc, frames, timeout_s: float = 120) -> dict:
    """Wait until the consumer has committed every detection, then count its events."""
    wait_for(lambda: proc.stats.messages >= len(frames), timeout_s, "the consumer to process every detection")
    return check_events(conn, topics, frames, RULES)


def stream_in_thread(runner: IngestRunner) -> threading.Thread:
    t = threading.Thread(target=runner.run, daemon=True)
    t.start()
    return t


def published(runner: IngestRunner) -> int:
    return sum(runner.stats.published.values())


def producer_threads() -> set[threading.Thread]:
    """The live sender threads of this process's Kafka producers."""
    return {t for t in threading.enumerate() if t.name.endswith("-network-thread") and t.is_alive()}


def test_a_broker_killed_mid_stream_and_restarted_loses_and_duplicates_nothing(cluster, triton):
    conn = conn_of(cluster)
    topics = new_topics(conn, SPEC)
    senders = producer_threads()
    # a commit whose coordinator died waits out the transaction timeout before the producer is replaced:
    # 15 s here (the default 60 s, with the state reload after it, can outlast the wait below on a loaded host)
    with running_consumer(conn, topics, RULES, transaction_timeout_s=15) as proc:
        publisher = DetectionPublisher(conn, topics.detections)
        runner = IngestRunner([SyntheticVehicle("veh-1", 1, cameras=2, seconds=8)], ClientConfig(url=triton.grpc_url),
                              publisher, max_batch=8)  # fmt: skip
        worker = stream_in_thread(runner)
        wait_for(lambda: published(runner) >= 40, 120, "40 frames published")
        cluster.kill(0)  # SIGKILL: the broker dies with whatever it was leading
        wait_for(lambda: published(runner) >= 100 or not worker.is_alive(), 120, "100 frames with a broker down")
        cluster.restart(0)
        worker.join(timeout=180)
        publisher.close()
        stats = runner.stats
        frames = frames_on(conn, topics)
        events = finish(conn, topics, proc, frames, timeout_s=300)  # a coordinator on the dead node stalls a commit
    # producers replaced while the broker was down, and the closed ones, leave no thread behind
    assert not producer_threads() - senders, [t.name for t in producer_threads() - senders]
    read, acked = sum(stats.frames_read.values()), sum(stats.published.values())
    assert read == acked + sum(stats.dropped.values()) == 160
    assert_unique_frames(frames)
    assert len([f for f in frames if not f.end_of_stream]) == acked
    record("broker SIGKILLed mid-stream, restarted", read=read, published=acked, dropped=stats.dropped, events=events)


def test_a_producer_whose_broker_stops_answering_is_closed_without_leaving_its_thread(kafka):
    from kafka.admin import NewTopic

    from consumers.processor import close_producer

    topic = f"stuck-{uuid.uuid4().hex}"
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap, transactional_id=f"tx-{uuid.uuid4().hex}")
    producer.init_transactions()
    producer.begin_transaction()
    producer.send(topic, b"acked").get(timeout=30)
    os.kill(kafka.process.pid, signal.SIGSTOP)  # alive but silent, as a broker in a long GC pause or a partition
    try:
        producer.send(topic, b"pending")  # never acknowledged: close() cannot flush it
        close_producer(producer, 1, "a producer of a silent broker")
        assert not producer._sender.is_alive(), "the sender thread outlived the close"
        producer.close(timeout=1)  # what its __del__ does: now nothing to flush, nothing raised
    finally:
        os.kill(kafka.process.pid, signal.SIGCONT)


def test_triton_killed_mid_stream_and_restarted_publishes_every_frame_once(cluster, cpu_repository):
    from pipeline.local.triton import LocalTriton, LocalTritonConfig

    conn = conn_of(cluster)
    topics = new_topics(conn, SPEC)
    server = LocalTriton(LocalTritonConfig(model_repository=cpu_repository)).start()
    try:
        with running_consumer(conn, topics, RULES) as proc:
            publisher = DetectionPublisher(conn, topics.detections)
            client = ClientConfig(url=server.grpc_url, retries=20, timeout_s=30)
            runner = IngestRunner([SyntheticVehicle("veh-2", 2, cameras=2, seconds=6)], client, publisher, max_batch=8)
            worker = stream_in_thread(runner)
            wait_for(lambda: published(runner) >= 30, 120, "30 frames published")
            server.kill()  # SIGKILL with requests in flight
            time.sleep(1.0)
            server.start()  # same ports: the client's retries find it again
            worker.join(timeout=180)
            publisher.close()
            stats = runner.stats
            frames = frames_on(conn, topics)
            events = finish(conn, topics, proc, frames)
    finally:
        server.stop()
    read, acked = sum(stats.frames_read.values()), sum(stats.published.values())
    assert read == 120 and acked == 120 and not any(stats.dropped.values()), stats.dropped
    assert_unique_frames(frames)
    record("Triton SIGKILLed mid-stream, restarted", read=read, published=acked, dropped=stats.dropped, events=events)


def _member(config: str, member: str, stderr: Path | None = None) -> subprocess.Popen:
    """A ``consume`` process; its log goes to ``stderr`` (a file, readable while it runs) or a pipe."""
    err = stderr.open("w") if stderr is not None else subprocess.PIPE
    return subprocess.Popen([sys.executable, "-m", "pipeline", "consume", "--config", config, "--member-id", member],
                            stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO_ROOT)  # fmt: skip


def _produce(conn: KafkaConnection, topic: str, frames: list) -> None:
    producer = KafkaProducer(**conn.client_args(), acks="all", linger_ms=5, compression_type="gzip")
    for f in frames:
        producer.send(topic, key=f.camera_id.encode(), value=f.model_dump_json().encode())
    producer.flush()
    producer.close()


def _cameras_on_every_partition(partitions: int) -> list[str]:
    """Camera ids whose keys land on every partition (Kafka's default partitioner: murmur2 of the key)."""
    from kafka.partitioner.default import murmur2

    chosen: dict[int, str] = {}
    k = 0
    while len(chosen) < partitions:
        cam = f"veh-9/cam{k}"
        chosen.setdefault((murmur2(cam.encode()) & 0x7FFFFFFF) % partitions, cam)
        k += 1
    return [chosen[p] for p in range(partitions)]


def test_three_members_of_one_group_and_one_killed_mid_transaction_keep_events_exactly_once(cluster, tmp_path):
    conn = conn_of(cluster)
    topics = new_topics(conn, SPEC)
    group = f"g-{uuid.uuid4().hex[:8]}"
    cameras = [f"veh-{v}/{side}" for v in range(1, 5) for side in ("front", "right")]
    # 720p frames and large polls keep each transaction open long enough to be caught inside it
    frames = [f for i, cam in enumerate(cameras)
              for f in moving_cars(200, camera_id=cam, seed=i, stream_epoch=1, width=1280, height=720)]  # fmt: skip
    config = tmp_path / "consume.yaml"
    config.write_text(yaml.safe_dump({
        "kafka": {"bootstrap": cluster.bootstrap, "detections_topic": topics.detections,
                  "events_topic": topics.events, "topics": SPEC.model_dump(), "create_topics": False},
        "consumer": {"rules": str(RULES_PATH), "group_id": group, "sink": None, "session_timeout_s": 6,
                     "transaction_timeout_s": 10, "max_poll_records": 400},
    }))  # fmt: skip
    _produce(conn, topics.detections, frames)

    members = {m: _member(str(config), m) for m in ("m1", "m2", "m3")}
    victims: list[str] = []
    try:
        # whichever member the broker first reports inside a transaction that already holds events is
        # SIGKILLed there; one admin client polls, so the kill follows the report closely
        ids = [f"{group}.{m}" for m in members]
        admin = KafkaAdminClient(**conn.client_args())

        def one_inside() -> bool:
            found = member_in_transaction(admin, ids, topics.events, SPEC.partitions)
            if found:
                victims.append(found)
                members[found.rsplit(".", 1)[1]].send_signal(signal.SIGKILL)
            return found is not None

        try:
            wait_for(one_inside, 120, "a member inside a transaction", every_s=0.02)
        except AssertionError as exc:
            for p in members.values():
                p.kill()
            tails = {m: p.communicate()[1][-1500:] for m, p in members.items()}
            raise AssertionError(f"{exc}; members' stderr: {tails}") from None
        finally:
            admin.close()
        victim = victims[0].rsplit(".", 1)[1]
        members[victim].wait()
        # a fourth joins while the victim's partitions move; once it owns partitions, more cameras come
        # in on every partition, so each live member has work after the rebalance
        m4_log = tmp_path / "m4.log"
        members["m4"] = _member(str(config), "m4", stderr=m4_log)
        wait_for(
            lambda: (
                "member m4 assigned partitions [" in m4_log.read_text()
                and "member m4 assigned partitions []" not in m4_log.read_text()
            ),
            120,
            "m4 to own partitions",
        )
        late = _cameras_on_every_partition(SPEC.partitions)
        later = [f for i, cam in enumerate(late) for f in moving_cars(20, camera_id=cam, seed=100 + i, stream_epoch=1)]
        _produce(conn, topics.detections, later)
        frames += later
        wait_for(lambda: group_caught_up(conn, group, topics.detections), 240, "the group to commit every frame")
        for name, p in members.items():
            if name != victim:
                p.send_signal(signal.SIGTERM)
        outputs = {name: p.communicate(timeout=60) for name, p in members.items() if name != victim}
    finally:
        for p in members.values():
            if p.poll() is None:
                p.kill()
    summaries = {}
    for name, (out, err) in outputs.items():
        err = err if err is not None else m4_log.read_text()
        assert members[name].returncode == 0, f"{name} failed: {err[-2000:]}"
        summaries[name] = json.loads(out)
    assert all(s["messages"] > 0 for s in summaries.values()), summaries  # every live member did work
    events = check_events(conn, topics, frames, RULES)
    uncommitted = len(read_topic(conn, topics.events, None, committed=False)) - len(read_topic(conn, topics.events))
    assert uncommitted > 0, "the killed member had no open transaction with events in it"
    record(f"3 consumer members, one SIGKILLed mid-transaction ({uncommitted} uncommitted events aborted), "
           "a fourth joins", read=len(frames), published=len(frames), dropped="none (pre-published)",
           events=events)  # fmt: skip


def _run_cmd(config: str, metrics_port: int) -> list[str]:
    return [sys.executable, "-m", "pipeline", "run", "--config", config, "--metrics-port", str(metrics_port)]


def _scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    totals: Counter[str] = Counter()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            totals[name.split("{")[0]] += float(value)
    return dict(totals)


def test_an_ingest_process_killed_and_restarted_loses_no_events_of_its_cameras(cluster, triton, tmp_path):
    conn = conn_of(cluster)
    topics = new_topics(conn, SPEC)
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({
        "kafka": {"bootstrap": cluster.bootstrap, "detections_topic": topics.detections,
                  "events_topic": topics.events, "topics": SPEC.model_dump()},
        "triton": {"grpc_url": triton.grpc_url},
        "cameras": [{"vehicle_id": "veh-3", "synthetic_seed": 3, "cameras": 2, "seconds": 8, "realtime": True}],
    }))  # fmt: skip
    with running_consumer(conn, topics, RULES) as proc:
        port_a = free_port()
        first = subprocess.Popen(_run_cmd(str(config), port_a), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 cwd=REPO_ROOT)  # fmt: skip
        try:
            wait_for(lambda: _published_before_kill(port_a) >= 30, 180, "the first run to publish 30 frames")
            before_kill = _scrape(port_a)
            first.send_signal(signal.SIGKILL)
            first.wait()
        finally:
            if first.poll() is None:
                first.kill()
        port_b = free_port()
        second = subprocess.run(_run_cmd(str(config), port_b), capture_output=True, text=True, cwd=REPO_ROOT,
                                timeout=300)  # fmt: skip
        assert second.returncode == 0, second.stderr[-3000:]
        summary = json.loads(second.stdout)
        frames = frames_on(conn, topics)
        events = finish(conn, topics, proc, frames)
        skipped = dict(proc.stats.skipped)
    epochs = sorted({f.stream_epoch for f in frames})
    assert len(epochs) == 2, "two runs, two stream epochs"
    first_run = [f for f in frames if f.stream_epoch == epochs[0]]
    second_run = [f for f in frames if f.stream_epoch == epochs[1] and not f.end_of_stream]
    assert_unique_frames(frames)
    # the second run starts its frame indices again: none of its frames is taken for a replay
    assert min(f.frame_index for f in second_run) < max(f.frame_index for f in first_run)
    assert skipped.get("duplicate", 0) == 0 and skipped.get("stale_stream", 0) == 0, skipped
    assert len(first_run) >= before_kill["sparseinst_ingest_frames_published_total"]  # acked ones are on the topic
    read, dropped = summary["frames_read"], summary["frames_dropped"]
    assert read == summary["frames_published"] + sum(dropped.values()) == len(second_run) + sum(dropped.values())
    record("ingest SIGKILLed (first run, live cameras), restarted (second run)",
           read=f"{int(before_kill['sparseinst_ingest_frames_read_total'])} + {read}",
           published=f"{len(first_run)} + {summary['frames_published']}",
           dropped=f"first run: lost with the process at the kill; second: {dropped_text(dropped)}",
           events=events)  # fmt: skip


def _published_before_kill(port: int) -> float:
    try:
        return _scrape(port).get("sparseinst_ingest_frames_published_total", 0.0)
    except OSError:  # not listening yet
        return 0.0


def _oversized(jpeg: bytes) -> bytes:
    """The same JPEG claiming 20000 rows in its frame header (refused before decoding)."""
    data = bytearray(jpeg)
    i = 2
    while i < len(data):
        marker, length = data[i + 1], int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in (0xC0, 0xC2):
            data[i + 5 : i + 7] = (20000).to_bytes(2, "big")
            return bytes(data)
        i += 2 + length
    raise AssertionError("no frame header")


def test_corrupt_truncated_and_oversized_jpegs_are_refused_one_by_one_and_counted(cluster, triton, tmp_path):
    from pipeline.data.synthetic import synthetic_image
    from pipeline.ingest.sources import encode_jpeg

    conn = conn_of(cluster)
    topics = new_topics(conn, SPEC)
    folder = tmp_path / "cam"
    folder.mkdir()
    bad = {4: "corrupt", 8: "truncated", 12: "oversized"}
    for i in range(16):
        data = encode_jpeg(synthetic_image(11, i).image)
        if bad.get(i) == "corrupt":
            data = data[:600] + bytes(range(256)) * 40 + data[-2:]
        elif bad.get(i) == "truncated":
            data = data[: len(data) // 4]
        elif bad.get(i) == "oversized":
            data = _oversized(data)
        (folder / f"{i:03d}.jpg").write_bytes(data)
    with running_consumer(conn, topics, RULES) as proc:
        publisher = DetectionPublisher(conn, topics.detections)
        runner = IngestRunner([JpegFolder("veh-9/front", folder)], ClientConfig(url=triton.grpc_url), publisher,
                              max_batch=4)  # fmt: skip
        stats = runner.run()
        publisher.close()
        frames = frames_on(conn, topics)
        events = finish(conn, topics, proc, frames)
    dead = read_topic(conn, topics.dead_letter, DeadLetter)
    assert sorted(d.offset for d in dead) == sorted(bad) and all(d.error_type for d in dead)
    read, acked = sum(stats.frames_read.values()), sum(stats.published.values())
    assert read == 16 and acked == 13 and dict(stats.dropped) == {"refused": 3}
    assert sum(f.decode_errors for f in frames) == 3  # reported to the consumers with the next good frame
    record("corrupt, truncated and oversized JPEGs among good frames", read=read, published=acked,
           dropped=stats.dropped, events=events)  # fmt: skip


def _malformed(i: int, good: FrameDetections) -> bytes | None:
    kinds = [
        lambda: b"{not json",
        lambda: bytes([0xFF, 0xFE, 0x00, i % 256]) * 8,
        lambda: b"",
        lambda: json.dumps([1, 2, 3]).encode(),
        lambda: good.model_dump_json().replace('"schema_version":2', '"schema_version":99').encode(),
        lambda: good.model_dump_json().replace(f'"frame_index":{good.frame_index}', '"frame_index":-1').encode(),
        lambda: json.dumps({"camera_id": good.camera_id}).encode(),
        lambda: good.model_dump_json().replace('"instances":[', '"instances":[{"class_id":"car"},', 1).encode(),
        lambda: json.dumps({"event_id": "x", "type": "track.started"}).encode(),  # an event on the wrong topic
    ]
    return kinds[i % len(kinds)]()


def test_a_thousand_malformed_messages_go_to_the_dead_letter_topic_and_the_good_ones_are_processed(cluster):
    conn = conn_of(cluster)
    topics = new_topics(conn, SPEC)
    cameras = ["veh-5/front", "veh-5/rear", "veh-5/left", "veh-5/right"]
    good = [f for i, c in enumerate(cameras) for f in moving_cars(60, camera_id=c, seed=i, stream_epoch=7)]
    # masks that do not fit their frame fail inside the camera's processing (the poll is redone without them)
    misfits = [f.model_copy(update={"height": f.height + 8, "frame_index": f.frame_index + 1000})
               for f in good[5:245:24]]  # fmt: skip
    producer = KafkaProducer(**conn.client_args(), acks="all", linger_ms=5)
    malformed, sent_malformed, sent_misfits = 1000 - len(misfits), 0, 0
    for i, f in enumerate(good):
        producer.send(topics.detections, key=f.camera_id.encode(), value=f.model_dump_json().encode())
        for _ in range(5):  # 4 or 5 malformed messages after every good one
            if sent_malformed < malformed:
                producer.send(topics.detections, key=f.camera_id.encode(), value=_malformed(sent_malformed, f))
                sent_malformed += 1
        if i % 24 == 5 and misfits:
            m = misfits.pop(0)
            producer.send(topics.detections, key=m.camera_id.encode(), value=m.model_dump_json().encode())
            sent_misfits += 1
    sent_bad = sent_malformed + sent_misfits
    producer.flush()
    producer.close()
    assert sent_bad == 1000
    with running_consumer(conn, topics, RULES) as proc:
        wait_for(lambda: proc.stats.messages >= len(good) + 1000, 180, "every message to be handled")
        events = check_events(conn, topics, good, RULES)
        stats = proc.stats
    dead = read_topic(conn, topics.dead_letter, DeadLetter)
    assert len(dead) == stats.dead_letters == 1000
    assert all(d.error_type and d.reason for d in dead)
    kinds = Counter(d.error_type for d in dead)
    assert kinds["ValueError"] == 10 and stats.aborted >= 10, kinds  # the misfits, each redone without it
    record("1,000 malformed and wrong-schema messages among 240 good ones", read=f"{len(good)} good",
           published=f"{len(good)} good + 1000 dead letters", dropped="none", events=events)  # fmt: skip


def test_triton_killed_mid_stream_with_video_cameras_publishes_every_frame_of_every_segment_once(
    cluster, cpu_repository, tmp_path
):
    from pipeline.ingest.sources import VideoSource
    from pipeline.local.triton import LocalTriton, LocalTritonConfig
    from tests.test_video import H264, VIDEOS, VP9, clip_head

    if not VIDEOS.is_dir():
        pytest.skip("the shared media folder is not next to this checkout")
    conn = conn_of(cluster)
    topics = new_topics(conn, SPEC)
    cameras = [VideoSource("vid-h264", str(clip_head(H264, tmp_path / "a.mp4", 60)), vehicle_id="veh-v"),
               VideoSource("vid-vp9", str(clip_head(VP9, tmp_path / "b.webm", 40)), vehicle_id="veh-v",
                           max_segment_frames=10)]  # fmt: skip
    server = LocalTriton(LocalTritonConfig(model_repository=cpu_repository)).start()
    try:
        with running_consumer(conn, topics, RULES) as proc:
            publisher = DetectionPublisher(conn, topics.detections)
            client = ClientConfig(url=server.grpc_url, retries=20, segment_timeout_s=60)
            runner = IngestRunner(cameras, client, publisher, max_batch=8)
            worker = stream_in_thread(runner)
            wait_for(lambda: published(runner) >= 20, 120, "20 frames published")
            server.kill()  # SIGKILL with segments in flight
            time.sleep(1.0)
            server.start()
            worker.join(timeout=240)
            publisher.close()
            stats = runner.stats
            frames = frames_on(conn, topics)
            events = finish(conn, topics, proc, frames)
    finally:
        server.stop()
    read, acked = sum(stats.frames_read.values()), sum(stats.published.values())
    assert read == acked == 100 and not any(stats.dropped.values()), stats.dropped
    assert_unique_frames(frames)
    assert {f.model_name for f in frames if not f.end_of_stream} == {"sparseinst_video"}
    record("Triton SIGKILLed mid-stream with video cameras (segments), restarted", read=read, published=acked,
           dropped=stats.dropped, events=events)  # fmt: skip


def test_a_live_camera_behind_drops_its_oldest_frames_and_counts_them(cluster, triton):
    conn = conn_of(cluster)
    topics = new_topics(conn, SPEC)
    with running_consumer(conn, topics, RULES) as proc:
        publisher = DetectionPublisher(conn, topics.detections)
        # four live cameras at 25 fps: more than the CPU server keeps up with
        source = SyntheticVehicle("veh-6", 6, cameras=4, fps=25.0, seconds=4, realtime=True)
        runner = IngestRunner([source], ClientConfig(url=triton.grpc_url), publisher, max_batch=8, budget=2)
        stats = runner.run()
        publisher.close()
        frames = frames_on(conn, topics)
        events = finish(conn, topics, proc, frames)
    read, acked = sum(stats.frames_read.values()), sum(stats.published.values())
    assert read == 400 and stats.dropped["behind"] > 0
    assert read == acked + sum(stats.dropped.values())
    by_camera = Counter(cam for (cam, reason) in stats.dropped_by_camera if reason == "behind")
    assert len(by_camera) == 4  # every camera lost some of its oldest frames, none starved the others
    assert_unique_frames(frames)
    record("live cameras exhausting their budget (4 x 25 fps, budget 2)", read=read, published=acked,
           dropped=stats.dropped, events=events)  # fmt: skip


if os.environ.get("SPARSEINST_FAULT_DEBUG"):  # keep the broker logs of a failing run
    import logging

    logging.basicConfig(level=logging.INFO)
