"""What an operator does: start a rollout (stage and load the candidate), promote or roll back by hand."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Literal

from pydantic import SecretStr

from pipeline.errors import PipelineError
from pipeline.kafka.connection import KafkaConnection
from pipeline.kafka.topics import Topics
from pipeline.rollout.state import RolloutPolicy, RolloutState, RolloutStore, StaleRolloutState
from pipeline.serving import contract
from pipeline.serving.repository import FIRST_VERSION
from pipeline.serving.versions import CandidateError, ensemble_name, load_candidate, stage_candidate

log = logging.getLogger(__name__)
SAVE_ATTEMPTS = 5  # compare-and-set retries of an operator's decision


class RolloutError(PipelineError):
    """A rollout command that cannot be carried out in the current state."""


def _end_offsets(conn: KafkaConnection, topic: str) -> dict[int, int]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**conn.client_args(), group_id=None, client_id="sparseinst-rollout")
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        return {tp.partition: offset for tp, offset in consumer.end_offsets(parts).items()}
    finally:
        consumer.close()


def start_rollout(conn: KafkaConnection | str, topics: Topics, *, repository: Path, triton_http: str,
                  weights: Path | None = None, onnx: Path | None = None, plan: Path | None = None,
                  canary_share: float = 0.1, shadow_share: float = 0.2, policy: RolloutPolicy | None = None,
                  control_key: SecretStr | None = None) -> RolloutState:  # fmt: skip
    """Stage the candidate as the next version, load it beside live, and record the running rollout.

    Refused while another rollout runs. A candidate that fails to load is removed again and
    :class:`CandidateError` says why; live serving and the rollout state are unchanged.
    ``control_key`` opens the server's model control where it is restricted.
    """
    import tritonclient.http as httpclient

    conn = KafkaConnection.of(conn)
    store = RolloutStore(conn, topics.rollout_state)
    try:
        current = store.load()
        if current is not None and current.phase == "running":
            raise RolloutError(f"rollout {current.rollout_id} (version {current.candidate_version}) is running: "
                               "promote or roll it back first")  # fmt: skip
        live_version = current.live_version if current else FIRST_VERSION
        live = current.live_ensemble if current else ensemble_name(FIRST_VERSION)
        client = httpclient.InferenceServerClient(triton_http)
        try:
            ready = client.is_model_ready(live)
        except Exception as exc:
            raise RolloutError(f"Triton at {triton_http} cannot be reached: {exc}") from None
        finally:
            client.close()
        if not ready:
            raise RolloutError(f"the live ensemble {live} is not ready on {triton_http}: fix live serving first")
        staged = stage_candidate(repository, weights=weights, onnx=onnx, plan=plan)
        load_candidate(triton_http, repository, staged, live, control_key=control_key)
        state = RolloutState(
            rollout_id=f"{contract.NETWORK}-v{staged.version}-{time.strftime('%Y%m%dT%H%M%S')}",
            live_version=live_version, live_ensemble=live, candidate_version=staged.version,
            candidate_ensemble=staged.ensemble, canary_share=canary_share, shadow_share=shadow_share,
            policy=policy or RolloutPolicy(), shadow_offsets=_end_offsets(conn, topics.shadow),
            reason="started", sequence=current.sequence if current else 0,
        )  # fmt: skip
        state = store.save(state)
        log.info("rollout %s started: candidate version %d (%s) beside live version %d (%s)", state.rollout_id,
                 staged.version, staged.ensemble, live_version, live)  # fmt: skip
        return state
    finally:
        store.close()


def decide_by_hand(conn: KafkaConnection | str, topics: Topics, action: Literal["promote", "rollback"],
                   reason: str = "") -> RolloutState:  # fmt: skip
    store = RolloutStore(conn, topics.rollout_state)
    try:
        for attempt in range(1, SAVE_ATTEMPTS + 1):
            state = store.load()
            if state is None or state.phase != "running":
                raise RolloutError("no rollout is running" + (f" (the last, {state.rollout_id}, is {state.phase})"
                                                              if state else ""))  # fmt: skip
            why = reason or f"{action} by the operator"
            state = state.promoted("operator", why) if action == "promote" else state.rolled_back("operator", why)
            try:
                return store.save(state)
            except StaleRolloutState as exc:  # the controller wrote meanwhile: decide on what it wrote
                log.info("%s (attempt %d of %d)", exc, attempt, SAVE_ATTEMPTS)
        raise RolloutError(f"the rollout state kept changing under {SAVE_ATTEMPTS} attempts to {action}")
    finally:
        store.close()


__all__ = ["CandidateError", "RolloutError", "decide_by_hand", "start_rollout"]
