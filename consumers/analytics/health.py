"""``camera.health``: decode errors, stalls, and frame-rate drops and recoveries against the nominal rate."""

from __future__ import annotations

from statistics import median

from consumers.analytics.frame import FrameContext
from consumers.rules import Rules
from pipeline.messages import Event


class HealthRule:
    def __init__(self, rules: Rules) -> None:
        self.rules = rules

    def trigger(self, frame: FrameContext) -> list[Event]:
        st, r, meta = frame.state, self.rules, frame.meta
        out: list[Event] = []
        if meta.decode_errors:
            out.append(frame.event("camera.health", status="decode_errors", frames=meta.decode_errors))
        if st.last_time is None:
            return out
        gap = meta.time - st.last_time
        if gap > r.stall_s:
            out.append(frame.event("camera.health", status="stalled", gap_s=round(gap, 3)))
        st.intervals = [*st.intervals, gap][-20:]
        if st.nominal_interval is None and len(st.intervals) == 20:
            st.nominal_interval = float(median(st.intervals))
        if st.nominal_interval:
            fps = 1.0 / max(float(median(st.intervals[-10:])), 1e-9)
            nominal = 1.0 / st.nominal_interval
            if not st.fps_low and fps < r.fps_drop * nominal:
                st.fps_low = True
                out.append(frame.event("camera.health", status="fps_drop", fps=round(fps, 2),
                                       nominal_fps=round(nominal, 2)))  # fmt: skip
            elif st.fps_low and fps >= r.fps_drop * nominal:
                st.fps_low = False
                out.append(frame.event("camera.health", status="fps_recovered", fps=round(fps, 2),
                                       nominal_fps=round(nominal, 2)))  # fmt: skip
        return out
