"""``zone.entered``, ``zone.exited`` and ``zone.dwell``, decided on the share of the mask inside a zone.

Entering needs ``enter_share`` and leaving falls below ``exit_share`` (hysteresis), each for
``zone_frames`` frames in a row, so a mask flickering on an edge raises nothing.
"""

from __future__ import annotations

from consumers.analytics.frame import FrameContext
from consumers.analytics.geometry import applies
from consumers.rules import Rules, Zone
from pipeline.messages import Event


class ZoneRule:
    def __init__(self, zones: list[Zone], rules: Rules) -> None:
        self.zones, self.rules = zones, rules

    def trigger(self, frame: FrameContext) -> list[Event]:
        r, time = self.rules, frame.meta.time
        out: list[Event] = []
        if not self.zones:
            return out
        shares = {zone.name: frame.share(zone) for zone in self.zones}
        for t, j in frame.matched:
            if frame.obs.area_list[j] < r.min_area:
                continue
            for zone in self.zones:
                if not applies(zone.classes, t.class_name):
                    continue
                share = shares[zone.name][j]
                inside = zone.name in t.zones
                past = share < r.exit_share if inside else share >= r.enter_share
                t.pending[zone.name] = t.pending.get(zone.name, 0) + 1 if past else 0
                if past and t.pending[zone.name] >= r.zone_frames:
                    t.pending[zone.name] = 0
                    if not inside:
                        t.zones[zone.name] = time
                        out.append(frame.event("zone.entered", track=t, zone=zone.name, share=round(share, 3),
                                               kind=zone.kind))  # fmt: skip
                    else:
                        entered = t.zones.pop(zone.name)
                        if zone.name in t.dwelled:
                            t.dwelled.remove(zone.name)
                        out.append(frame.event("zone.exited", track=t, zone=zone.name, share=round(share, 3),
                                               duration_s=round(time - entered, 3), reason="left"))  # fmt: skip
                elif inside and zone.name not in t.dwelled and time - t.zones[zone.name] >= r.dwell_s:
                    t.dwelled.append(zone.name)
                    out.append(frame.event("zone.dwell", track=t, zone=zone.name,
                                           dwell_s=round(time - t.zones[zone.name], 3)))  # fmt: skip
        return out
