"""Per-camera bounded queues and fair batching across cameras.

Each camera may have at most ``budget`` items waiting (a JPEG frame, or a video camera's whole
segment). A live camera that falls behind loses its *oldest* waiting item (the freshest picture
matters most), counted per camera in frames; a file or
simulator source is slowed down instead (``put`` blocks), so nothing is dropped. Batches take
the oldest frame of each camera in turn, so one busy camera cannot starve the others.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable

from pipeline.ingest.sources import Captured


class CameraQueues:
    def __init__(self, budget: int = 4, on_drop: Callable[[str, int], None] | None = None) -> None:
        if budget < 1:
            raise ValueError("budget must be at least 1 item per camera")
        self.budget = budget
        self._queues: dict[str, deque[Captured]] = {}
        self._order: list[str] = []  # round-robin order of cameras
        self._next = 0
        self._cv = threading.Condition()
        self.dropped: Counter[str] = Counter()  # camera -> frames dropped because it fell behind
        self.on_drop = on_drop  # told the camera and frame count of every such item, as it is dropped
        self.closed = False

    def put(self, frame: Captured, *, drop_oldest: bool) -> bool:
        """Queue ``frame``; False if the queues were closed before it found room."""
        with self._cv:
            if self.closed:
                return False
            q = self._queues.get(frame.camera_id)
            if q is None:
                q = self._queues[frame.camera_id] = deque()
                self._order.append(frame.camera_id)
            while len(q) >= self.budget:
                if drop_oldest:
                    lost = q.popleft()
                    self.dropped[frame.camera_id] += lost.frames
                    if self.on_drop is not None:
                        self.on_drop(frame.camera_id, lost.frames)
                else:
                    self._cv.wait(0.1)
                    if self.closed:
                        return False
            frame.enqueued = time.monotonic()
            q.append(frame)
            self._cv.notify_all()
            return True

    def take_batch(self, max_batch: int, timeout_s: float = 0.05) -> list[Captured]:
        """Items of up to ``max_batch`` frames (or one segment past it), one camera at a time in turn; waits up to
        ``timeout_s`` for the first."""
        with self._cv:
            if not any(self._queues.values()):
                self._cv.wait(timeout_s)
            batch: list[Captured] = []
            n, frames = len(self._order), 0
            while frames < max_batch and any(self._queues.values()):  # a segment counts its frames
                cam = self._order[self._next % n]
                self._next = (self._next + 1) % n
                q = self._queues[cam]
                if q:
                    batch.append(q.popleft())
                    frames += batch[-1].frames
            if batch:
                self._cv.notify_all()
            return batch

    def pending(self) -> int:
        """Frames waiting (a segment counts its frames)."""
        with self._cv:
            return sum(item.frames for q in self._queues.values() for item in q)

    def drain(self) -> list[Captured]:
        """Remove and return every waiting frame."""
        with self._cv:
            left = [f for q in self._queues.values() for f in q]
            for q in self._queues.values():
                q.clear()
            self._cv.notify_all()
            return left

    def close(self) -> None:
        with self._cv:
            self.closed = True
            self._cv.notify_all()
