"""A rollout's policy and state, kept durably on a compacted Kafka topic (key = the network name).

The state holds everything a controller needs to resume after a restart: the versions and their
ensembles, the traffic shares, the judgement so far and the ``rollout.shadow`` offsets already
folded into it (written together in one message, so a restarted controller neither skips nor
counts a shadow result twice). Ingest reads the same record to route cameras.

Writes are compare-and-set: a state carries the ``sequence`` of the record it was derived from,
and :meth:`RolloutStore.save` writes it only if that is still the latest, inside a transaction
of the one transactional id all writers of a network share, so a writer that read before another
wrote is fenced or refused (:class:`StaleRolloutState`) and re-reads instead of overwriting.
"""

from __future__ import annotations

import logging
import time
import zlib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.errors import PipelineError
from pipeline.kafka.connection import KafkaConnection
from pipeline.kafka.state import load_partitions
from pipeline.rollout.compare import Judgement
from pipeline.serving import contract

log = logging.getLogger(__name__)

Phase = Literal["running", "promoted", "rolled_back"]


class StaleRolloutState(PipelineError):
    """The rollout state was written by someone else since this writer read it: read again and redo."""


class RolloutPolicy(BaseModel):
    """When a candidate is promoted or rolled back automatically."""

    model_config = ConfigDict(extra="forbid")

    min_frames: int = Field(200, ge=1, description="shadow frames judged before the candidate can be promoted")
    min_agreement: float = Field(0.9, ge=0.0, le=1.0, description="instances matched with the same class, share")
    max_latency_ratio: float = Field(1.5, ge=1.0, description="candidate p99 over live p99 allowed")
    latency_slack_ms: float = Field(50.0, ge=0.0, description="p99 differences below this never count as a breach")
    error_budget: int = Field(0, ge=0, description="candidate errors tolerated; one more rolls back at once")


class RolloutState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rollout_id: str = Field(min_length=1)
    network: str = contract.NETWORK
    phase: Phase = "running"
    live_version: int = Field(ge=1)
    live_ensemble: str
    candidate_version: int | None = Field(None, ge=1)
    candidate_ensemble: str | None = None
    canary_share: float = Field(0.0, ge=0.0, le=1.0, description="share of cameras the candidate serves (sticky)")
    shadow_share: float = Field(0.0, ge=0.0, le=1.0, description="share of live frames also sent to the candidate")
    policy: RolloutPolicy = Field(default_factory=RolloutPolicy)
    judgement: Judgement = Field(default_factory=Judgement)
    shadow_offsets: dict[int, int] = Field(default_factory=dict, description="partition -> next offset to judge")
    decided_by: Literal["policy", "operator"] | None = None
    reason: str = ""
    sequence: int = Field(0, ge=0, description="writes of this network's state so far; a write must name the last")
    decision_published: bool = Field(False, description="the decision's rollout event is acknowledged on the "
                                     "events topic (a restarted controller re-sends it until it is)")  # fmt: skip
    started_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)

    @model_validator(mode="after")
    def _candidate_while_running(self) -> RolloutState:
        if self.phase == "running" and (self.candidate_version is None or self.candidate_ensemble is None):
            raise ValueError("a running rollout needs candidate_version and candidate_ensemble")
        return self

    # ------------------------------------------------------------------ routing (used by ingest)

    def serves_candidate(self, camera_id: str) -> bool:
        """Canary: by camera id alone, so a camera stays on one version through a rollout and the same
        cameras are the canaries of every rollout (a share grows by adding cameras)."""
        return self.phase == "running" and _unit("canary", camera_id) < self.canary_share

    def shadows(self, camera_id: str, frame_index: int) -> bool:
        """Shadow sampling of live frames, deterministic per frame (a retried batch shadows the same frames)."""
        return self.phase == "running" and _unit(self.rollout_id, camera_id, frame_index) < self.shadow_share

    # ------------------------------------------------------------------ transitions

    def promoted(self, by: Literal["policy", "operator"], reason: str) -> RolloutState:
        assert self.candidate_version is not None and self.candidate_ensemble is not None
        return self.model_copy(update={
            "phase": "promoted", "live_version": self.candidate_version, "live_ensemble": self.candidate_ensemble,
            "candidate_version": None, "candidate_ensemble": None, "decided_by": by, "reason": reason,
            "updated_at": time.time(),
        })  # fmt: skip

    def rolled_back(self, by: Literal["policy", "operator"], reason: str) -> RolloutState:
        return self.model_copy(update={"phase": "rolled_back", "candidate_version": None, "candidate_ensemble": None,
                                       "decided_by": by, "reason": reason, "updated_at": time.time()})  # fmt: skip


def _unit(*parts: object) -> float:
    """A stable number in [0, 1) from the parts (the same in every process and after restarts)."""
    return zlib.crc32("|".join(map(str, parts)).encode()) / 2**32


Decision = tuple[Literal["promote", "rollback", "continue"], str]


def decide(judgement: Judgement, policy: RolloutPolicy) -> Decision:
    """Errors roll back at once; disagreement and latency are judged once ``min_frames`` are in."""
    s = judgement.summary()
    if judgement.errors["candidate"] > policy.error_budget:
        first = judgement.error_examples[0] if judgement.error_examples else ""
        return "rollback", (f"{judgement.errors['candidate']} candidate errors exceed the budget of "
                            f"{policy.error_budget}: {first}")  # fmt: skip
    if judgement.frames < policy.min_frames:
        return "continue", f"{judgement.frames} of {policy.min_frames} frames judged"
    agreement = judgement.agreement or 0.0
    if agreement < policy.min_agreement:
        return "rollback", (f"agreement {agreement:.3f} below {policy.min_agreement} over {judgement.frames} "
                            f"frames ({s['live_instances']} live, {s['candidate_instances']} candidate "
                            "instances)")  # fmt: skip
    live, cand = s["live_latency_p99_ms"], s["candidate_latency_p99_ms"]
    if live is not None and cand is not None:
        limit = max(live * policy.max_latency_ratio, live + policy.latency_slack_ms)
        if cand > limit:
            return "rollback", f"candidate latency p99 {cand:.0f} ms over {limit:.0f} ms (live p99 {live:.0f} ms)"
    latency = f"latency p99 {cand:.0f} ms vs live {live:.0f} ms" if live and cand else "latency not measured"
    return "promote", (f"agreement {agreement:.3f} over {judgement.frames} frames, {latency}, "
                       f"{judgement.errors['candidate']} errors")  # fmt: skip


class RolloutStore:
    """The latest :class:`RolloutState` per network on the compacted ``rollout.state`` topic."""

    def __init__(self, conn: KafkaConnection | str, topic: str) -> None:
        self.conn, self.topic = KafkaConnection.of(conn), topic

    def load(self, network: str = contract.NETWORK, timeout_s: float = 30.0) -> RolloutState | None:
        values = load_partitions(self.conn, self.topic, [0], timeout_s=timeout_s)
        raw = values.get(network)
        return RolloutState.model_validate_json(raw) if raw else None

    def save(self, state: RolloutState) -> RolloutState:
        """Write ``state`` if ``state.sequence`` is still the latest write; returns what was written.

        Raises :class:`StaleRolloutState` when another writer got there first. The write is committed
        (acknowledged by all in-sync replicas) before this returns.
        """
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        # one transactional id per network: initialising it fences any other writer's open write
        producer = KafkaProducer(**self.conn.client_args(), acks="all", max_request_size=1_048_576,
                                 transactional_id=f"sparseinst-rollout-state.{state.network}")  # fmt: skip
        try:
            producer.init_transactions()
            current = self.load(state.network)
            latest = current.sequence if current is not None else 0
            if latest != state.sequence:
                raise StaleRolloutState(f"rollout state of {state.network} is at write {latest}, this one was "
                                        f"made from write {state.sequence}: read it again")  # fmt: skip
            written = state.model_copy(update={"updated_at": time.time(), "sequence": latest + 1})
            producer.begin_transaction()
            producer.send(self.topic, key=state.network.encode(), value=written.model_dump_json().encode(),
                          partition=0)  # fmt: skip
            producer.commit_transaction()
            return written
        except KafkaError as exc:
            if "Fenced" in type(exc).__name__ or "ProducerEpoch" in type(exc).__name__:
                raise StaleRolloutState(f"another writer of the rollout state of {state.network} took over: "
                                        f"{type(exc).__name__}") from exc  # fmt: skip
            raise
        finally:
            producer.close(timeout=5)

    def close(self) -> None:
        """Nothing is held between calls (each write has its own transaction)."""
