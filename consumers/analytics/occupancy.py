"""``occupancy``: the peak number of confirmed tracks per class in each zone, per tumbling time window."""

from __future__ import annotations

import math

from consumers.analytics.frame import FrameContext
from consumers.rules import Rules, Zone
from pipeline.messages import Event


class OccupancyRule:
    def __init__(self, zones: list[Zone], rules: Rules) -> None:
        self.zones, self.rules = zones, rules

    def trigger(self, frame: FrameContext) -> list[Event]:
        st, r = frame.state, self.rules
        start = math.floor(frame.meta.time / r.occupancy_window_s) * r.occupancy_window_s
        out: list[Event] = []
        if st.window_start is not None and start > st.window_start:
            out = self.close(frame)
        if st.window_start is None or start > st.window_start:
            st.window_start, st.window_peaks = start, {}
        for zone in self.zones:
            counts: dict[str, int] = {}
            for t in st.tracks:
                if zone.name in t.zones and t.misses == 0 and t.confirmed:
                    counts[t.class_name] = counts.get(t.class_name, 0) + 1
            peaks = st.window_peaks.setdefault(zone.name, {})
            for cls, n in counts.items():
                peaks[cls] = max(peaks.get(cls, 0), n)
        return out

    def close(self, frame: FrameContext) -> list[Event]:
        """The open window's counts (at a window boundary or the end of a stream)."""
        st, r = frame.state, self.rules
        if st.window_start is None:
            return []
        out = []
        for zone in self.zones:
            peaks = st.window_peaks.get(zone.name, {})
            out.append(frame.event("occupancy", zone=zone.name, index=frame.meta.frame_index,
                                   window_start=st.window_start, window_s=r.occupancy_window_s,
                                   total=sum(peaks.values()), **dict(sorted(peaks.items()))))  # fmt: skip
        st.window_peaks = {}
        return out
