"""Kafka with SASL/SCRAM-SHA-512 over TLS (certificates made at test time): the whole path, and a wrong password."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from pipeline.config import load_settings
from pipeline.data.detections import moving_cars
from pipeline.errors import KafkaUnavailableError
from pipeline.kafka.connection import check_connection
from pipeline.kafka.topics import TopicSpec
from pipeline.publish import DetectionPublisher
from tests.conftest import REPO_ROOT
from tests.streams import check_events, new_topics, read_topic, running_consumer, wait_for

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery staple"
STRANGER = "a password the broker knows"  # a SCRAM user the pipeline's ACLs do not name


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory):
    from pipeline.local.kafka import LocalKafka, LocalKafkaConfig
    from pipeline.local.tls import make_loopback_certificates

    tls = make_loopback_certificates(tmp_path_factory.mktemp("tls"))
    config = LocalKafkaConfig(scram_users={"alice": PASSWORD, "mallory": STRANGER}, pipeline_users=["alice"],
                              tls_keystore=tls.server, tls_ca=tls.ca)  # fmt: skip
    with LocalKafka(config) as broker:
        yield broker


def test_scram_over_tls_carries_detections_to_events_exactly_once(secure_kafka):
    from consumers.rules import DEMO_RULES, load_rules

    conn = secure_kafka.client_connection()
    assert conn.security.protocol == "SASL_SSL" and conn.security.ssl_cafile is not None
    check_connection(conn)
    topics = new_topics(conn)
    frames = moving_cars(40, camera_id="veh-1/right", stream_epoch=1)
    publisher = DetectionPublisher(conn, topics.detections)
    for f in frames:
        publisher.publish(f)
    publisher.close()
    assert publisher.counts["messages_published"] == 40 and not publisher.counts["publish_failed"]
    rules = load_rules(DEMO_RULES)
    with running_consumer(conn, topics, rules) as proc:
        wait_for(lambda: proc.stats.messages >= 40, 60, "the consumer over SASL_SSL")
        events = check_events(conn, topics, frames, rules)
    assert events["events expected"] > 0 and events["lost"] == events["duplicated"] == events["extra"] == 0
    assert len(read_topic(conn, topics.detections, None)) == 40


def test_a_wrong_password_fails_fast_with_one_clear_line(secure_kafka):
    conn = secure_kafka.client_connection(password="wrong")
    started = time.monotonic()
    with pytest.raises(KafkaUnavailableError, match="refused the login") as err:
        check_connection(conn)
    assert time.monotonic() - started < 20
    assert "wrong" not in str(err.value) and PASSWORD not in str(err.value)


def test_the_consume_command_with_a_wrong_password_exits_with_one_error_line(secure_kafka, tmp_path):
    c = secure_kafka.config
    config = tmp_path / "consume.yaml"
    config.write_text(yaml.safe_dump({
        "kafka": {"bootstrap": secure_kafka.bootstrap,
                  "security": {"protocol": "SASL_SSL", "username": "alice", "password": "not-the-password",
                               "ssl_cafile": str(c.tls_ca)}},
        "consumer": {"group_id": f"g-{uuid.uuid4().hex[:6]}", "sink": None},
    }))  # fmt: skip
    run = subprocess.run([sys.executable, "-m", "pipeline", "consume", "--config", str(config)], capture_output=True,
                         text=True, cwd=REPO_ROOT, timeout=120)  # fmt: skip
    assert run.returncode == 2
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "refused the login" in errors[0], run.stderr[-2000:]
    assert "not-the-password" not in run.stderr + run.stdout


def test_passwords_never_print(tmp_path):
    config = tmp_path / "s.yaml"
    config.write_text(yaml.safe_dump({"kafka": {"bootstrap": "127.0.0.1:1", "security": {
        "protocol": "SASL_PLAINTEXT", "username": "bob", "password": "hunter2"}}}))  # fmt: skip
    settings = load_settings(config)
    assert "hunter2" not in repr(settings) and "hunter2" not in settings.model_dump_json()
    assert "hunter2" not in settings.kafka.connection().describe()
    assert settings.kafka.connection().client_args()["sasl_plain_password"] == "hunter2"  # only for the client


def test_no_command_prints_the_password_even_with_debug_logging(secure_kafka, tmp_path):
    c = secure_kafka.config
    config = tmp_path / "verbose.yaml"
    config.write_text(yaml.safe_dump({
        "kafka": {"bootstrap": secure_kafka.bootstrap,
                  "security": {"protocol": "SASL_SSL", "username": "alice", "password": PASSWORD,
                               "ssl_cafile": str(c.tls_ca)}},
        "consumer": {"group_id": f"g-{uuid.uuid4().hex[:6]}", "sink": None},
    }))  # fmt: skip
    base = [sys.executable, "-m", "pipeline", "-v"]
    topics = subprocess.run([*base, "topics", "create", "--config", str(config)], capture_output=True, text=True,
                            cwd=REPO_ROOT, timeout=180)  # fmt: skip
    assert topics.returncode == 0, topics.stderr[-2000:]
    consume = subprocess.Popen([*base, "consume", "--config", str(config)], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, cwd=REPO_ROOT)  # fmt: skip
    try:
        time.sleep(15)  # joined the group, polled, logged its configuration at DEBUG
        consume.send_signal(signal.SIGTERM)
        out = consume.communicate(timeout=60)[0]
    finally:
        if consume.poll() is None:
            consume.kill()
    debug = topics.stdout + topics.stderr + out
    assert "DEBUG kafka" in debug and "sasl_plain_password" in debug  # the client's configuration was logged...
    assert PASSWORD not in debug  # ...with the password redacted


def test_scram_passwords_never_reach_a_command_line(tmp_path):
    from pipeline.local.kafka import LocalKafka, LocalKafkaConfig

    broker = LocalKafka(LocalKafkaConfig(scram_users={"alice": 'p"w\\d with spaces'}, broker_password="b-secret"))
    broker.data_dir = tmp_path
    command = broker._format_command(tmp_path / "server.properties")
    assert not any('p"w' in part or "spaces" in part for part in command)  # what `ps` shows
    argfile = tmp_path / "format.args"
    assert oct(argfile.stat().st_mode & 0o777) == "0o600"
    assert '"SCRAM-SHA-512=[name=alice,password=p\\"w\\\\d with spaces]"' in argfile.read_text()


def test_no_listener_of_the_secured_broker_takes_a_plaintext_client(secure_kafka):
    from pipeline.kafka.connection import KafkaConnection

    c = secure_kafka.config
    for port in (secure_kafka.port, c.internal_port, c.controller_port):  # clients, brokers, controllers
        with pytest.raises(KafkaUnavailableError):
            check_connection(KafkaConnection(bootstrap=f"{c.host}:{port}"), timeout_s=3)


def test_a_user_without_the_pipelines_acls_can_neither_read_nor_write(secure_kafka):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.errors import AuthorizationError

    alice = secure_kafka.client_connection()
    topics = new_topics(alice, TopicSpec(partitions=1))
    publisher = DetectionPublisher(alice, topics.detections)
    publisher.publish(moving_cars(1, camera_id="veh-1/right", stream_epoch=1)[0])
    publisher.close()
    assert len(read_topic(alice, topics.detections, None)) == 1  # the pipeline's user reads it
    args = secure_kafka.client_connection("mallory").client_args()
    producer = KafkaProducer(**args, max_block_ms=10000)
    try:
        with pytest.raises(AuthorizationError):
            producer.send(topics.detections, b"{}").get(timeout=10)
    finally:
        producer.close(timeout=5)
    reader = KafkaConsumer(**args, auto_offset_reset="earliest")  # no group: only the topic's ACL decides
    reader.assign([TopicPartition(topics.detections, 0)])
    try:
        assert not any(reader.poll(timeout_ms=1000) for _ in range(5))
    finally:
        reader.close()
    member = KafkaConsumer(topics.detections, **args, group_id=f"g-{uuid.uuid4().hex[:6]}")
    try:
        with pytest.raises(AuthorizationError):
            for _ in range(5):
                member.poll(timeout_ms=1000)
    finally:
        member.close()


def test_the_secured_brokers_secrets_stay_in_files_of_its_own(secure_kafka):
    data = secure_kafka.data_dir
    for name in ("server.properties", "broker.secret"):
        assert oct((data / name).stat().st_mode & 0o777) == "0o600", name
    assert not (data / "format.args").exists()  # removed once the storage is formatted
    cmdline = Path(f"/proc/{secure_kafka.process.pid}/cmdline").read_bytes().decode()  # what `ps` shows
    secrets = [PASSWORD, STRANGER, (data / "broker.secret").read_text().strip()]
    assert not any(s in cmdline for s in secrets)
