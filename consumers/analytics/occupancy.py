"""``occupancy``: the peak number of confirmed tracks per class in each zone, per tumbling time window.

A track is in a zone as the zone rule decided it (:class:`~consumers.analytics.zones.ZoneState`), so
this rule runs after that one.
"""

from __future__ import annotations

import math

from pydantic import Field

from consumers.analytics.base import Rule, RuleState
from consumers.analytics.frame import FrameContext
from consumers.analytics.zones import ZoneRule, ZoneState
from pipeline.messages import Event


class OccupancyState(RuleState):
    window_start: float | None = None
    window_peaks: dict[str, dict[str, int]] = Field(default_factory=dict, description="zone -> class -> peak")


class OccupancyRule(Rule):
    name = "occupancy"
    State = OccupancyState

    def trigger(self, frame: FrameContext, state: OccupancyState) -> list[Event]:
        r = self.rules
        start = math.floor(frame.meta.time / r.occupancy_window_s) * r.occupancy_window_s
        out: list[Event] = []
        if state.window_start is not None and start > state.window_start:
            out = self._window(frame, state)
        if state.window_start is None or start > state.window_start:
            state.window_start, state.window_peaks = start, {}
        zones: ZoneState = frame.states[ZoneRule.name]  # type: ignore[assignment]
        seen = [(t.class_name, zones.inside.get(t.track_id, ())) for t in frame.state.tracks
                if t.misses == 0 and t.confirmed]  # fmt: skip
        for zone in self.camera.zones:
            counts: dict[str, int] = {}
            for class_name, inside in seen:
                if zone.name in inside:
                    counts[class_name] = counts.get(class_name, 0) + 1
            peaks = state.window_peaks.setdefault(zone.name, {})
            for cls, n in counts.items():
                peaks[cls] = max(peaks.get(cls, 0), n)
        return out

    def close(self, frame: FrameContext, state: OccupancyState) -> list[Event]:
        """The stream ended: the open window's counts, and no window stays open (a later close raises nothing)."""
        out = self._window(frame, state)
        state.window_start = None
        return out

    def _window(self, frame: FrameContext, state: OccupancyState) -> list[Event]:
        if state.window_start is None:
            return []
        out = []
        for zone in self.camera.zones:
            peaks = state.window_peaks.get(zone.name, {})
            out.append(frame.event("occupancy", zone=zone.name, index=frame.meta.frame_index,
                                   window_start=state.window_start, window_s=self.rules.occupancy_window_s,
                                   total=sum(peaks.values()), **dict(sorted(peaks.items()))))  # fmt: skip
        state.window_peaks = {}
        return out
