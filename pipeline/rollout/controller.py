"""The rollout controller: judge shadow results, publish ``rollout`` events, promote or roll back.

It reads ``rollout.shadow`` from the offsets saved in the rollout state, folds the results of the
running rollout into its judgement, and saves judgement and offsets together (one record), so a
controller killed at any moment resumes where its last save left off: nothing counted twice,
nothing skipped. Before each save it re-reads the state; an operator's ``promote``/``rollback``
in between wins and this controller stops judging that rollout.

One controller per network at a time (a Deployment with one replica); a second one would judge
the same results and race on the saves.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from pydantic import ValidationError

from pipeline.kafka.connection import KafkaConnection
from pipeline.kafka.topics import Topics
from pipeline.messages import Event, ShadowResult
from pipeline.rollout.compare import Judgement
from pipeline.rollout.state import RolloutState, RolloutStore, StaleRolloutState, decide

log = logging.getLogger(__name__)


def rollout_event(state: RolloutState, status: str) -> Event:
    """A ``rollout`` event: where a rollout stands (``status``: progress, promoted, rolled_back, started)."""
    s = state.judgement.summary()
    key = "|".join(map(str, ("rollout", state.rollout_id, status, s["frames"])))
    version = state.candidate_version or state.live_version
    return Event(
        event_id=hashlib.sha1(key.encode()).hexdigest()[:24], type="rollout", camera_id="*",
        frame_index=int(s["frames"] or 0), frame_time=time.time(), model_name=state.network,
        model_version=str(version), details={
            "rollout_id": state.rollout_id, "status": status, "phase": state.phase,
            "live_version": state.live_version, "candidate_version": state.candidate_version,
            "decided_by": state.decided_by, "reason": state.reason, **s,
        },
    )  # fmt: skip


@dataclass
class ControllerStats:
    judged: int = 0  # shadow results of the running rollout folded in by this process
    skipped: Counter[str] = field(default_factory=Counter)  # other_rollout, malformed
    saves: int = 0
    events: int = 0
    state: RolloutState | None = None


class RolloutController:
    def __init__(self, conn: KafkaConnection | str, topics: Topics, *, save_every_s: float = 1.0,
                 progress_every: int = 50) -> None:  # fmt: skip
        self.conn, self.topics = KafkaConnection.of(conn), topics
        self.store = RolloutStore(self.conn, topics.rollout_state)
        self.save_every_s, self.progress_every = save_every_s, progress_every
        self.stats = ControllerStats()
        self._stop = threading.Event()
        self._producer = None

    def stop(self) -> None:
        self._stop.set()

    def run(self, *, until_decided: bool = False, poll_s: float = 1.0) -> RolloutState | None:
        """Judge running rollouts until stopped (or, with ``until_decided``, until none is running)."""
        while not self._stop.is_set():
            state = self.stats.state = self.store.load()
            if state is not None and state.phase != "running" and state.decided_by == "policy":
                state = self.stats.state = self._announce(state)  # a decision saved before a crash
            if state is not None and state.phase == "running":
                state = self._judge(state)
                self.stats.state = state
            elif until_decided:
                return state
            else:
                self._stop.wait(poll_s)
        return self.stats.state

    def _judge(self, state: RolloutState) -> RolloutState:
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(**self.conn.client_args(), group_id=None, enable_auto_commit=False,
                                 client_id="sparseinst-rollout-controller")  # fmt: skip
        try:
            parts = [TopicPartition(self.topics.shadow, p)
                     for p in sorted(consumer.partitions_for_topic(self.topics.shadow) or [])]  # fmt: skip
            consumer.assign(parts)
            for tp in parts:
                if tp.partition in state.shadow_offsets:
                    consumer.seek(tp, state.shadow_offsets[tp.partition])
                else:
                    consumer.seek_to_beginning(tp)
            log.info("judging rollout %s from %s", state.rollout_id,
                     {tp.partition: consumer.position(tp) for tp in parts})  # fmt: skip
            judgement, last_save, reported = state.judgement.model_copy(deep=True), 0.0, state.judgement.frames
            while not self._stop.is_set():
                for records in consumer.poll(timeout_ms=200).values():
                    for r in records:
                        self._fold(state, judgement, r.value)
                if time.monotonic() - last_save < self.save_every_s:
                    continue
                last_save = time.monotonic()
                latest = self.store.load()
                if latest is None or latest.rollout_id != state.rollout_id or latest.phase != "running":
                    log.info("rollout %s was changed elsewhere (%s); stop judging it", state.rollout_id,
                             latest.phase if latest else "deleted")  # fmt: skip
                    return latest or state
                offsets = {tp.partition: consumer.position(tp) for tp in parts}
                state = latest.model_copy(update={"judgement": judgement.model_copy(deep=True),
                                                  "shadow_offsets": offsets})  # fmt: skip
                verdict, reason = decide(judgement, state.policy)
                if verdict == "promote":
                    state = state.promoted("policy", reason)
                elif verdict == "rollback":
                    state = state.rolled_back("policy", reason)
                try:
                    state = self.store.save(state)
                except StaleRolloutState as exc:  # an operator (or another controller) wrote: re-read next round
                    log.info("%s", exc)
                    self.stats.skipped["stale_save"] += 1
                    last_save = 0.0
                    continue
                self.stats.saves += 1
                if verdict != "continue":
                    log.warning("rollout %s %s: %s", state.rollout_id, state.phase, reason)
                    return self._announce(state)
                if judgement.frames // self.progress_every > reported // self.progress_every:
                    self.publish_event(state, "progress")
                reported = judgement.frames
            return state
        finally:
            consumer.close()

    def _fold(self, state: RolloutState, judgement: Judgement, value: bytes | None) -> None:
        try:
            result = ShadowResult.model_validate_json(value or b"")
        except ValidationError as exc:
            self.stats.skipped["malformed"] += 1
            log.warning("malformed shadow result skipped: %s", str(exc).splitlines()[0])
            return
        if result.rollout_id != state.rollout_id:
            self.stats.skipped["other_rollout"] += 1
            return
        try:
            judgement.add(result)
        except (ValueError, IndexError, TypeError) as exc:  # schema-valid but not comparable (a bad mask)
            self.stats.skipped["bad_result"] += 1
            log.warning("shadow result of camera %s frame %d skipped: %s: %s", result.camera_id, result.frame_index,
                        type(exc).__name__, (str(exc).splitlines() or [""])[0])  # fmt: skip
            return
        self.stats.judged += 1

    def _announce(self, state: RolloutState) -> RolloutState:
        """Publish a policy decision's event (its id is deterministic) until acknowledged, then mark it sent."""
        while not state.decision_published and not self._stop.is_set():
            try:
                self.publish_event(state, state.phase)
                return self.store.save(state.model_copy(update={"decision_published": True}))
            except StaleRolloutState:
                latest = self.store.load()
                if latest is None or latest.rollout_id != state.rollout_id:
                    return latest or state
                state = latest
            except Exception as exc:  # Kafka trouble: the event is re-sent (same id) until it is acknowledged
                log.warning("publishing the decision of rollout %s failed (%s: %s); retrying", state.rollout_id,
                            type(exc).__name__, exc)  # fmt: skip
                self._stop.wait(1.0)
        return state

    def publish_event(self, state: RolloutState, status: str) -> None:
        from kafka import KafkaProducer

        if self._producer is None:
            self._producer = KafkaProducer(**self.conn.client_args(), acks="all", enable_idempotence=True)
        event = rollout_event(state, status)
        self._producer.send(self.topics.events, key=b"*", value=event.model_dump_json().encode()).get(timeout=30)
        self.stats.events += 1

    def close(self) -> None:
        self.store.close()
        if self._producer is not None:
            self._producer.close(timeout=5)
