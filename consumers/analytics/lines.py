"""``line.crossed``: a track's mask centroid moving across a line segment, with direction and running counts."""

from __future__ import annotations

from pydantic import Field

from consumers.analytics.base import Rule, RuleState, keep_tracks
from consumers.analytics.frame import FrameContext
from consumers.analytics.regions import applies, crosses_segment, pixel_ends
from consumers.tracking import Track
from pipeline.messages import Event


class LineState(RuleState):
    counts: dict[str, dict[str, int]] = Field(default_factory=dict, description="line -> 'class/dir' -> n")
    anchors: dict[str, tuple[float, float]] = Field(
        default_factory=dict, description="track -> last mask centroid (x, y), pixels")  # fmt: skip
    sides: dict[str, dict[str, int]] = Field(default_factory=dict, description="track -> line -> side of the anchor")


class LineRule(Rule):
    name = "lines"
    State = LineState

    def trigger(self, frame: FrameContext, state: LineState) -> list[Event]:
        w, h, lines = frame.meta.width, frame.meta.height, self.camera.lines
        out: list[Event] = []
        if not lines:  # the anchor only matters to lines
            return out
        ends = [pixel_ends(line.points, w, h) for line in lines]
        for t, j in frame.matched:
            if frame.obs.area_list[j] < self.rules.min_area:
                continue
            anchor, before_anchor = frame.centroid(j), state.anchors.get(t.track_id)
            sides = state.sides.setdefault(t.track_id, {})
            for line, ((x1, y1), (x2, y2)) in zip(lines, ends):
                if not applies(line.classes, t.class_name):
                    continue
                cross = (x2 - x1) * (anchor[1] - y1) - (y2 - y1) * (anchor[0] - x1)  # the anchor's side of the line
                now = 1 if cross > 0 else -1 if cross < 0 else 0
                before = sides.get(line.name)
                if now != 0:
                    sides[line.name] = now
                if (before and now and now != before and before_anchor
                        and crosses_segment(line, w, h, before_anchor, anchor)):  # fmt: skip
                    direction = "positive" if now > 0 else "negative"
                    counts = state.counts.setdefault(line.name, {})
                    key = f"{t.class_name}/{direction}"
                    counts[key] = counts.get(key, 0) + 1
                    out.append(frame.event("line.crossed", track=t, line=line.name, direction=direction,
                                           count=counts[key]))  # fmt: skip
            state.anchors[t.track_id] = anchor
        return out

    def track_ended(self, track: Track, frame: FrameContext, state: LineState) -> list[Event]:
        state.anchors.pop(track.track_id, None)
        state.sides.pop(track.track_id, None)
        return []

    def prune(self, state: LineState, tracks: set[str]) -> None:
        keep_tracks(state.anchors, tracks)
        keep_tracks(state.sides, tracks)
