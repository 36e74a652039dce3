"""Real-time pacing: release each frame of a recorded source at its capture time on the wall clock."""

from __future__ import annotations

import threading
import time


class Pacer:
    """``wait(t)`` returns when capture time ``t`` (relative to the first frame) is due, scaled by ``speed``."""

    def __init__(self, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._wall0: float | None = None
        self._t0 = 0.0

    def wait(self, capture_time: float, stop: threading.Event | None = None) -> float:
        """Sleep until due; returns how late the frame is (seconds, 0 if on time)."""
        now = time.monotonic()
        if self._wall0 is None:
            self._wall0, self._t0 = now, capture_time
            return 0.0
        due = self._wall0 + (capture_time - self._t0) / self.speed
        if due > now:
            if stop is not None:
                stop.wait(due - now)
            else:
                time.sleep(due - now)
            return 0.0
        return now - due
