"""``line.crossed``: a track's mask centroid moving across a line segment, with direction and running counts."""

from __future__ import annotations

from consumers.analytics.frame import FrameContext
from consumers.analytics.geometry import applies, crosses_segment, side
from consumers.rules import Line, Rules
from pipeline.messages import Event


class LineRule:
    def __init__(self, lines: list[Line], rules: Rules) -> None:
        self.lines, self.rules = lines, rules

    def trigger(self, frame: FrameContext) -> list[Event]:
        w, h = frame.meta.width, frame.meta.height
        out: list[Event] = []
        if not self.lines:  # the anchor only matters to lines
            return out
        for t, j in frame.matched:
            if frame.obs.area_list[j] < self.rules.min_area:
                continue
            anchor = frame.centroid(j)
            for line in self.lines:
                if not applies(line.classes, t.class_name):
                    continue
                now = side(line, w, h, anchor)
                before = t.line_sides.get(line.name)
                if now != 0:
                    t.line_sides[line.name] = now
                if before and now and now != before and t.anchor and crosses_segment(line, w, h, t.anchor, anchor):
                    direction = "positive" if now > 0 else "negative"
                    counts = frame.state.line_counts.setdefault(line.name, {})
                    key = f"{t.class_name}/{direction}"
                    counts[key] = counts.get(key, 0) + 1
                    out.append(frame.event("line.crossed", track=t, line=line.name, direction=direction,
                                           count=counts[key]))  # fmt: skip
            t.__dict__["anchor"] = anchor  # a plain write: this runs for every track of every frame
        return out
