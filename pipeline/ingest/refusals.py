"""Frames the server refused (corrupt, oversized) are reported in their camera's next message.

The refused frame has no message of its own; its camera's next one says how many were refused
since the last (``decode_errors``), and the consumers raise ``camera.health`` from it. Ingest and
replay both count this way, so a replay reproduces the live health events.
"""

from __future__ import annotations

from collections import Counter

from pipeline.messages import FrameDetections


class RefusedFrames:
    def __init__(self) -> None:
        self._pending: Counter[str] = Counter()  # camera -> refused frames not yet reported in a message

    def refused(self, camera_id: str) -> None:
        self._pending[camera_id] += 1

    def report_in(self, message: FrameDetections, already: int = 0) -> None:
        """Set ``message.decode_errors``: ``already`` (what the message carried) plus those not yet reported."""
        message.decode_errors = already + self._pending.pop(message.camera_id, 0)
