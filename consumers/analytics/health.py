"""``camera.health``: decode errors, stalls, and frame-rate drops and recoveries against the nominal rate."""

from __future__ import annotations

from statistics import median

from pydantic import Field

from consumers.analytics.base import Rule, RuleState
from consumers.analytics.frame import FrameContext
from pipeline.messages import Event


class HealthState(RuleState):
    intervals: list[float] = Field(default_factory=list, description="recent frame intervals, seconds")
    nominal_interval: float | None = None
    fps_low: bool = False


class HealthRule(Rule):
    name = "health"
    State = HealthState
    before_tracking = True  # the gap is measured against the previous frame, before this one counts

    def trigger(self, frame: FrameContext, state: HealthState) -> list[Event]:
        r, meta, last_time = self.rules, frame.meta, frame.state.last_time
        out: list[Event] = []
        if meta.decode_errors:
            out.append(frame.event("camera.health", status="decode_errors", frames=meta.decode_errors))
        if last_time is None:
            return out
        gap = meta.time - last_time
        if gap > r.stall_s:
            out.append(frame.event("camera.health", status="stalled", gap_s=round(gap, 3)))
        state.intervals = [*state.intervals, gap][-20:]
        if state.nominal_interval is None and len(state.intervals) == 20:
            state.nominal_interval = float(median(state.intervals))
        if state.nominal_interval:
            fps = 1.0 / max(float(median(state.intervals[-10:])), 1e-9)
            nominal = 1.0 / state.nominal_interval
            if not state.fps_low and fps < r.fps_drop * nominal:
                state.fps_low = True
                out.append(frame.event("camera.health", status="fps_drop", fps=round(fps, 2),
                                       nominal_fps=round(nominal, 2)))  # fmt: skip
            elif state.fps_low and fps >= r.fps_drop * nominal:
                state.fps_low = False
                out.append(frame.event("camera.health", status="fps_recovered", fps=round(fps, 2),
                                       nominal_fps=round(nominal, 2)))  # fmt: skip
        return out

    def restart(self, state: HealthState) -> None:
        """A new run of the source: its frame rate is learnt again."""
        state.intervals, state.nominal_interval, state.fps_low = [], None, False
