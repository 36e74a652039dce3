"""``zone.crowded``: a zone holding at least ``crowd_tracks`` confirmed tracks, once per crowding episode.

Off unless ``crowd_tracks`` is set. Membership is the zone rule's decision (hysteresis included),
so this rule runs after that one; an episode ends when the count falls below the threshold.
"""

from __future__ import annotations

from pydantic import Field

from consumers.analytics.base import Rule, RuleState
from consumers.analytics.frame import FrameContext
from consumers.analytics.zones import ZoneRule, ZoneState
from pipeline.messages import Event


class CrowdingState(RuleState):
    crowded: list[str] = Field(default_factory=list, description="zones in a crowding episode")


class CrowdingRule(Rule):
    name = "crowding"
    State = CrowdingState

    def trigger(self, frame: FrameContext, state: CrowdingState) -> list[Event]:
        threshold = self.rules.crowd_tracks
        if threshold is None:
            return []
        zones: ZoneState = frame.states[ZoneRule.name]  # type: ignore[assignment]
        out: list[Event] = []
        for zone in self.camera.zones:
            members = [t for t, _ in frame.matched if zone.name in zones.zones_of(t.track_id)]
            if len(members) >= threshold and zone.name not in state.crowded:
                state.crowded.append(zone.name)
                classes = sorted({t.class_name for t in members})
                out.append(frame.event("zone.crowded", zone=zone.name, tracks=len(members),
                                       classes=",".join(classes)))  # fmt: skip
            elif len(members) < threshold and zone.name in state.crowded:
                state.crowded.remove(zone.name)
        return out
