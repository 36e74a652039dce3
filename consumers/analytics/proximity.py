"""``proximity.alert``: a vulnerable road user's mask within ``proximity_px`` of the ego lane or a vehicle.

Distances are measured on box crops: the person's mask against the lane's distance map, and against
the vehicles' masks within a margin around the person. The margin is wide enough that any distance
up to ``proximity_px`` is the same as on the full frame (the 3x3 chamfer metric never costs less
than 0.955 per pixel step), so the crop changes no decision and no reported distance.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from pydantic import Field

from consumers.analytics.base import Rule, RuleState, keep_tracks
from consumers.analytics.frame import FrameContext
from consumers.analytics.regions import distance_to
from consumers.rules import VEHICLES, VULNERABLE, CameraRules, Rules
from consumers.tracking import Track
from pipeline.messages import Event


class ProximityState(RuleState):
    last_alert: dict[str, float] = Field(default_factory=dict, description="track -> time of its last alert")


class ProximityRule(Rule):
    name = "proximity"
    State = ProximityState

    def __init__(self, camera: CameraRules, rules: Rules) -> None:
        super().__init__(camera, rules)
        self.lanes = [z for z in camera.zones if z.kind == "ego_lane"]

    def trigger(self, frame: FrameContext, state: ProximityState) -> list[Event]:
        r, obs = self.rules, frame.obs
        vrus = [(t, j) for t, j in frame.matched if t.class_name in VULNERABLE and obs.area_list[j] >= r.min_area]
        out: list[Event] = []
        if not vrus:
            return out
        vehicles = [j for t, j in frame.matched if t.class_name in VEHICLES]
        for t, j in vrus:
            last = state.last_alert.get(t.track_id)
            if last is not None and frame.meta.time - last < r.proximity_cooldown_s:
                continue
            best = self._nearest(frame, j, vehicles)
            if best is None or best[0] > r.proximity_px:
                continue
            state.last_alert[t.track_id] = frame.meta.time
            out.append(frame.event("proximity.alert", track=t, target=best[1], distance_px=round(best[0], 1)))
        return out

    def track_ended(self, track: Track, frame: FrameContext, state: ProximityState) -> list[Event]:
        state.last_alert.pop(track.track_id, None)
        return []

    def prune(self, state: ProximityState, tracks: set[str]) -> None:
        keep_tracks(state.last_alert, tracks)

    def _nearest(self, frame: FrameContext, j: int, vehicles: list[int]) -> tuple[float, str] | None:
        meta, masks = frame.meta, frame.obs.masks
        x0, y0, x1, y1 = (int(v) for v in frame.obs.mask_boxes[j])
        person = masks.crop(j, y0, y1, x0, x1)
        best: tuple[float, str] | None = None
        for zone in self.lanes:
            d = float(distance_to(tuple(zone.polygon), meta.width, meta.height)[y0:y1, x0:x1][person].min())
            if best is None or d < best[0]:
                best = (d, f"ego_lane:{zone.name}")
        if not vehicles:
            return best
        m = math.ceil(self.rules.proximity_px / 0.955) + 2
        rx0, ry0, rx1, ry1 = max(x0 - m, 0), max(y0 - m, 0), min(x1 + m, meta.width), min(y1 + m, meta.height)
        b = frame.obs.mask_boxes[vehicles]
        near = (b[:, 0] < rx1) & (rx0 < b[:, 2]) & (b[:, 1] < ry1) & (ry0 < b[:, 3])
        union = np.zeros((ry1 - ry0, rx1 - rx0), bool)
        for v in np.array(vehicles)[near]:
            union |= masks.crop(int(v), ry0, ry1, rx0, rx1)
        if union.any():
            dist = cv2.distanceTransform((~union).astype(np.uint8), cv2.DIST_L2, 3)
            d = float(dist[y0 - ry0 : y1 - ry0, x0 - rx0 : x1 - rx0][person].min())
            if best is None or d < best[0]:
                best = (d, "vehicle")
        return best
