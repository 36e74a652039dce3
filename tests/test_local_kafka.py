"""The embedded Kafka broker is a real broker: round trips, idempotent and transactional producers."""

from __future__ import annotations

import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError

from pipeline.local.kafka import LocalKafka

pytestmark = pytest.mark.slow


def _consume(bootstrap: str, topic: str, expected: int, isolation: str = "read_committed") -> list[bytes]:
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", isolation_level=isolation,
        group_id=f"g-{uuid.uuid4().hex}", consumer_timeout_ms=15000,
    )  # fmt: skip
    values = []
    try:
        for message in consumer:
            values.append(message.value)
            if len(values) == expected:
                break
    finally:
        consumer.close()
    return values


def test_broker_binds_loopback_only(kafka):
    assert kafka.bootstrap.startswith("127.0.0.1:")


def test_idempotent_round_trip_keeps_per_key_order(kafka):
    topic = f"t-{uuid.uuid4().hex}"
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap, enable_idempotence=True, acks="all")
    for i in range(20):
        producer.send(topic, key=b"camera-1", value=f"{i}".encode())
    producer.flush()
    producer.close()
    assert _consume(kafka.bootstrap, topic, 20) == [f"{i}".encode() for i in range(20)]


def test_committed_transactions_are_visible_and_aborted_ones_are_not(kafka):
    topic = f"t-{uuid.uuid4().hex}"
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap, transactional_id=f"tx-{topic}")
    producer.init_transactions()
    producer.begin_transaction()
    producer.send(topic, key=b"k", value=b"aborted")
    producer.flush()
    producer.abort_transaction()
    producer.begin_transaction()
    producer.send(topic, key=b"k", value=b"committed")
    producer.commit_transaction()
    producer.close()
    assert _consume(kafka.bootstrap, topic, 1) == [b"committed"]
    assert b"aborted" in _consume(kafka.bootstrap, topic, 2, isolation="read_uncommitted")


def test_stopped_broker_refuses_clients():
    broker = LocalKafka().start()
    bootstrap = broker.bootstrap
    broker.stop()
    with pytest.raises(KafkaError):
        KafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=2000, max_block_ms=2000)
