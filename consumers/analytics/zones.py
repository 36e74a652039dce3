"""``zone.entered``, ``zone.exited`` and ``zone.dwell``, decided on the share of the mask inside a zone.

Entering needs ``enter_share`` and leaving falls below ``exit_share`` (hysteresis), each for
``zone_frames`` frames in a row, so a mask flickering on an edge raises nothing. A track that ends
inside a zone exits it (``reason: track_ended``).
"""

from __future__ import annotations

from pydantic import Field

from consumers.analytics.base import Rule, RuleState, keep_tracks
from consumers.analytics.frame import FrameContext
from consumers.analytics.regions import applies
from consumers.tracking import Track
from pipeline.messages import Event


class ZoneState(RuleState):
    inside: dict[str, dict[str, float]] = Field(default_factory=dict, description="track -> zone -> time entered")
    pending: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="track -> zone -> frames in a row past a threshold")  # fmt: skip
    dwelled: dict[str, list[str]] = Field(default_factory=dict, description="track -> zones whose dwell was raised")

    def zones_of(self, track_id: str) -> dict[str, float]:
        return self.inside.get(track_id, {})


class ZoneRule(Rule):
    name = "zones"
    State = ZoneState

    def trigger(self, frame: FrameContext, state: ZoneState) -> list[Event]:
        r, time, zones = self.rules, frame.meta.time, self.camera.zones
        out: list[Event] = []
        if not zones:
            return out
        shares = {zone.name: frame.share(zone) for zone in zones}
        for t, j in frame.matched:
            if frame.obs.area_list[j] < r.min_area:
                continue
            tid = t.track_id
            inside_now, pending = state.inside.get(tid, {}), state.pending.setdefault(tid, {})
            for zone in zones:
                if not applies(zone.classes, t.class_name):
                    continue
                share = shares[zone.name][j]
                inside = zone.name in inside_now
                past = share < r.exit_share if inside else share >= r.enter_share
                pending[zone.name] = pending.get(zone.name, 0) + 1 if past else 0
                if past and pending[zone.name] >= r.zone_frames:
                    pending[zone.name] = 0
                    if not inside:
                        inside_now = state.inside.setdefault(tid, inside_now)
                        inside_now[zone.name] = time
                        out.append(frame.event("zone.entered", track=t, zone=zone.name, share=round(share, 3),
                                               kind=zone.kind))  # fmt: skip
                    else:
                        entered = inside_now.pop(zone.name)
                        dwelled = state.dwelled.get(tid, [])
                        if zone.name in dwelled:
                            dwelled.remove(zone.name)
                        out.append(frame.event("zone.exited", track=t, zone=zone.name, share=round(share, 3),
                                               duration_s=round(time - entered, 3), reason="left"))  # fmt: skip
                elif (
                    inside and zone.name not in state.dwelled.get(tid, ()) and time - inside_now[zone.name] >= r.dwell_s
                ):
                    state.dwelled.setdefault(tid, []).append(zone.name)
                    out.append(frame.event("zone.dwell", track=t, zone=zone.name,
                                           dwell_s=round(time - inside_now[zone.name], 3)))  # fmt: skip
        return out

    def track_ended(self, track: Track, frame: FrameContext, state: ZoneState) -> list[Event]:
        inside = state.inside.pop(track.track_id, {})
        state.pending.pop(track.track_id, None)
        state.dwelled.pop(track.track_id, None)
        return [frame.event("zone.exited", track=track, zone=zone, index=track.last_index, time=track.last_time,
                            duration_s=round(track.last_time - inside[zone], 3), reason="track_ended")
                for zone in sorted(inside)]  # fmt: skip

    def prune(self, state: ZoneState, tracks: set[str]) -> None:
        for table in (state.inside, state.pending, state.dwelled):
            keep_tracks(table, tracks)
