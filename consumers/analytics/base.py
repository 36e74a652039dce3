"""The surface every event rule has, and the state it owns.

A rule is built once per camera from the camera's zones and lines and the rule settings. Its state
is a pydantic model of its own (``State``), kept per camera in the camera's state under the rule's
``name`` and persisted with it. Hooks, all optional but ``trigger``:

- ``trigger(frame, state)``: the events of one frame (``before_tracking`` rules run before the
  tracker, the others after it, on the frame's confirmed tracks);
- ``track_ended(track, frame, state)``: a confirmed track ended (its last events; drop what the
  rule kept about it);
- ``close(frame, state)``: the stream ended (windows still open);
- ``restart(state)``: a new run of the camera's source began;
- ``prune(state, tracks)``: keep only what is about these track ids (tracks dropped elsewhere).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict

from consumers.rules import CameraRules, Rules
from pipeline.messages import Event

if TYPE_CHECKING:
    from consumers.analytics.frame import FrameContext
    from consumers.tracking import Track


class RuleState(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Rule(ABC):
    name: ClassVar[str]
    State: ClassVar[type[RuleState]] = RuleState
    before_tracking: ClassVar[bool] = False

    def __init__(self, camera: CameraRules, rules: Rules) -> None:
        self.camera, self.rules = camera, rules

    @abstractmethod
    def trigger(self, frame: FrameContext, state) -> list[Event]:
        """The events of one frame; the one hook every rule must have."""

    def track_ended(self, track: Track, frame: FrameContext, state) -> list[Event]:
        return []

    def close(self, frame: FrameContext, state) -> list[Event]:
        return []

    def restart(self, state) -> None:
        return None

    def prune(self, state, tracks: set[str]) -> None:
        return None


def keep_tracks(table: dict[str, object], tracks: set[str]) -> None:
    """Drop the entries of per-track ``table`` whose track is not in ``tracks``."""
    for tid in [t for t in table if t not in tracks]:
        del table[tid]
