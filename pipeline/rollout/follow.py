"""Ingest's view of the rollout state: refreshed in the background, read without waiting.

A change takes effect at the next batch: frames already sent finish on the version they were sent
to, and every frame is still published exactly once.
"""

from __future__ import annotations

import logging
import threading

from pipeline.kafka.connection import KafkaConnection
from pipeline.rollout.state import RolloutState, RolloutStore
from pipeline.serving import contract

log = logging.getLogger(__name__)


class RolloutFollower:
    def __init__(self, conn: KafkaConnection | str, topic: str, network: str = contract.NETWORK, *,
                 refresh_s: float = 1.0) -> None:  # fmt: skip
        self.store, self.network, self.refresh_s = RolloutStore(conn, topic), network, refresh_s
        self._state: RolloutState | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.refresh_errors = 0

    def current(self) -> RolloutState | None:
        return self._state

    def refresh(self) -> RolloutState | None:
        state = self.store.load(self.network, timeout_s=max(self.refresh_s * 5, 10.0))
        old, self._state = self._state, state
        if state is not None and (old is None or (old.rollout_id, old.phase) != (state.rollout_id, state.phase)):
            log.info("rollout %s: %s (live %s = version %d%s)", state.rollout_id, state.phase, state.live_ensemble,
                     state.live_version, f", candidate version {state.candidate_version}: canary "
                     f"{state.canary_share:.0%} of cameras, shadow {state.shadow_share:.0%} of frames"
                     if state.phase == "running" else "")  # fmt: skip
        return state

    def start(self) -> RolloutFollower:
        self.refresh()  # the first batch already routes by the current state
        self._thread = threading.Thread(target=self._loop, name="rollout-follower", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.refresh_s):
            try:
                self.refresh()
            except Exception as exc:  # keep routing by the last state; Kafka may be restarting
                self.refresh_errors += 1
                log.warning("rollout state not refreshed (%s); routing by the last one", exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
