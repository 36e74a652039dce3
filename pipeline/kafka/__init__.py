"""Kafka plumbing shared by the ingest side and the consumers: connections and security, topics, the state store."""

from pipeline.kafka.connection import KafkaConnection, KafkaSecurity, check_connection
from pipeline.kafka.topics import Topics, TopicSpec, ensure_topics

__all__ = ["KafkaConnection", "KafkaSecurity", "TopicSpec", "Topics", "check_connection", "ensure_topics"]
