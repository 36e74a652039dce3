"""The topics the applications use, and their creation by one owner with one layout.

``detections`` and the consumers' state topic are co-partitioned: same partition count, same key
(camera id), same partitioner, so camera ``c``'s state lives in the state partition with the
number of its detections partition, and a consumer that is assigned detections partition ``p``
loads exactly state partition ``p``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from pipeline.errors import TopicsError
from pipeline.kafka.connection import KafkaConnection
from pipeline.kafka.state import STATE_RECORD_MAX_BYTES
from pipeline.messages import dead_letter_topic

log = logging.getLogger(__name__)

CREATE_ATTEMPTS = 10


class TopicSpec(BaseModel):
    """Partitions and replication of the application topics."""

    model_config = ConfigDict(extra="forbid")

    partitions: int = Field(12, ge=1, description="detections, events and consumer state (bounds consumer replicas)")
    replication: int = Field(1, ge=1, description="3 on a production cluster")
    min_insync_replicas: int | None = Field(None, ge=1, description="per-topic min.insync.replicas; unset = broker's")
    retention_hours: float = Field(72.0, gt=0, description="detections, events and dead letters")
    archive_retention_hours: float = Field(24.0, gt=0, description="the frame archive (JPEGs kept for replays)")


@dataclass(frozen=True)
class Topics:
    detections: str = "detections"
    events: str = "events"
    rollout_state: str = "rollout.state"  # compacted: one record per network (pipeline.rollout.state)
    shadow: str = "rollout.shadow"  # live and candidate answers to the same frames, for judging
    archive: str = "frames.archive"  # sampled JPEG frames with their identity, for replays

    @property
    def state(self) -> str:
        return f"{self.events}.consumer-state"

    @property
    def dead_letter(self) -> str:
        return dead_letter_topic(self.detections)

    @property
    def events_dead_letter(self) -> str:
        return dead_letter_topic(self.events)

    @property
    def co_partitioned(self) -> tuple[str, str]:
        return self.detections, self.state


def topic_plan(topics: Topics, spec: TopicSpec) -> dict[str, tuple[int, dict[str, str]]]:
    """Name -> (partitions, configs): the one description of the layout."""
    retention = str(int(spec.retention_hours * 3600 * 1000))
    common = {"retention.ms": retention}
    if spec.min_insync_replicas:
        common["min.insync.replicas"] = str(spec.min_insync_replicas)
    compacted = {**common, "cleanup.policy": "compact", "retention.ms": "-1"}
    return {
        topics.detections: (spec.partitions, common),
        topics.events: (spec.partitions, common),
        # the cap the consumers' producers keep to, with room for the record's framing
        topics.state: (spec.partitions, {**compacted, "max.message.bytes": str(STATE_RECORD_MAX_BYTES + 65536)}),
        topics.dead_letter: (1, common),
        topics.events_dead_letter: (1, common),
        topics.rollout_state: (1, compacted),
        topics.shadow: (spec.partitions, common),
        topics.archive: (spec.partitions, {**common, "retention.ms": str(int(spec.archive_retention_hours * 3600e3))}),
    }


def ensure_topics(conn: KafkaConnection | str, topics: Topics, spec: TopicSpec | None = None, *,
                  create: bool = True) -> dict[str, int]:  # fmt: skip
    """Create what is missing (``create``), then check the layout; returns name -> partitions.

    An existing layout that breaks co-partitioning or compaction is an error naming the topic:
    consumers would load the wrong cameras' state.
    """
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
    from kafka.errors import NodeNotReadyError, TopicAlreadyExistsError, UnknownBrokerIdError

    conn, spec = KafkaConnection.of(conn), spec or TopicSpec()
    plan = topic_plan(topics, spec)

    def new_admin() -> KafkaAdminClient:
        return KafkaAdminClient(**conn.client_args(), client_id="sparseinst-admin")

    admin = new_admin()
    try:
        existing = set(admin.list_topics())
        missing = [n for n in plan if n not in existing]
        if missing and not create:
            raise TopicsError(f"topics missing on {conn.bootstrap}: {', '.join(missing)} "
                              "(create them with 'sparseinst-pipeline topics create')")  # fmt: skip
        for name in missing:
            partitions, configs = plan[name]
            for attempt in range(1, CREATE_ATTEMPTS + 1):
                try:
                    admin.create_topics([NewTopic(name, partitions, spec.replication, topic_configs=configs)])
                    log.info("created topic %s (%d partitions, replication %d)", name, partitions, spec.replication)
                    break
                except TopicAlreadyExistsError:  # another member or process was first
                    break
                except (UnknownBrokerIdError, NodeNotReadyError) as exc:
                    # The client was sent to a broker its metadata does not know yet (one rejoining
                    # the cluster); a fresh client bootstraps newer metadata.
                    if attempt == CREATE_ATTEMPTS:
                        raise TopicsError(f"could not create topic {name} on {conn.bootstrap}: {exc}") from exc
                    log.warning("creating topic %s: %s; retrying with fresh metadata (%d/%d)",
                                name, exc, attempt, CREATE_ATTEMPTS)  # fmt: skip
                    admin.close()
                    time.sleep(1.0)
                    admin = new_admin()
        found = _partition_counts(admin, list(plan))
        det, state = topics.co_partitioned
        if found[det] != found[state]:
            raise TopicsError(f"{state} has {found[state]} partitions and {det} {found[det]}: they must be equal "
                              "(a camera's state lives in the partition of its detections)")  # fmt: skip
        # a topic created just now: the broker asked may not have its configs yet (a cluster), so look again
        for _ in range(50 if topics.state in missing else 1):
            configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topics.state)])
            policy = configs.get("topic", {}).get(topics.state, {}).get("cleanup.policy", {}).get("value", "delete")
            if "compact" in policy:
                return found
            time.sleep(0.2)
        raise TopicsError(f"{topics.state} must be compacted (cleanup.policy=compact), it is {policy!r}")
    finally:
        admin.close()


def _partition_counts(admin, names: list[str], attempts: int = 50) -> dict[str, int]:
    for _ in range(attempts):  # metadata of new topics takes a moment to reach every broker
        meta = {t["name"]: len(t["partitions"]) for t in admin.describe_topics(names) if not t.get("error_code")}
        if all(meta.get(n) for n in names):
            return meta
        time.sleep(0.2)
    raise TopicsError(f"topics not visible after creation: {[n for n in names if not meta.get(n)]}")
