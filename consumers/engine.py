"""Turn one camera's detections, frame after frame, into events (DESIGN §5).

:class:`CameraProcessor` keeps all its state in a :class:`CameraState` (plain JSON), so a
consumer can persist it with its offsets and resume after a restart exactly where it was.
Events are emitted in a fixed order per frame and their ids are derived from their content,
so the same detections always give the same events with the same ids.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from functools import lru_cache

import cv2
import numpy as np
from pydantic import BaseModel, Field

from consumers.rules import VEHICLES, VULNERABLE, CameraRules, Line, Rules, RulesFile, Zone
from consumers.tracking import Observation, Track, assign, assign_by_identity, decode_mask, vote
from pipeline import rle
from pipeline.messages import Event, FrameDetections


class CameraState(BaseModel):
    camera_id: str
    stream_epoch: int = Field(0, description="the run of the camera's source whose frames are being processed")
    next_track: int = 1
    tracks: list[Track] = Field(default_factory=list)
    last_index: int = -1
    last_time: float | None = None
    line_counts: dict[str, dict[str, int]] = Field(default_factory=dict, description="line -> 'class/dir' -> n")
    window_start: float | None = None
    window_peaks: dict[str, dict[str, int]] = Field(default_factory=dict, description="zone -> class -> peak")
    intervals: list[float] = Field(default_factory=list, description="recent frame intervals, seconds")
    nominal_interval: float | None = None
    fps_low: bool = False
    model_name: str = ""
    model_version: str = ""


@dataclass(frozen=True)
class FrameMeta:
    camera_id: str
    vehicle_id: str | None
    frame_index: int
    time: float
    width: int
    height: int
    model_name: str = ""
    model_version: str = ""
    decode_errors: int = 0
    stream_epoch: int = 0


def event_id(*parts: object) -> str:
    return hashlib.sha1("|".join("" if p is None else str(p) for p in parts).encode()).hexdigest()[:24]


@lru_cache(maxsize=256)
def _polygon_mask(points: tuple[tuple[float, float], ...], width: int, height: int) -> np.ndarray:
    pts = np.array([[x * (width - 1), y * (height - 1)] for x, y in points], dtype=np.float64)
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    return mask.astype(bool)


@lru_cache(maxsize=64)
def _distance_to(points: tuple[tuple[float, float], ...], width: int, height: int) -> np.ndarray:
    """Pixel distance of every pixel to the polygon (0 inside)."""
    outside = (~_polygon_mask(points, width, height)).astype(np.uint8)
    return cv2.distanceTransform(outside, cv2.DIST_L2, 3)


def _side(line: Line, w: int, h: int, p: tuple[float, float]) -> int:
    (x1, y1), (x2, y2) = ((x * (w - 1), y * (h - 1)) for x, y in line.points)
    cross = (x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1)
    return 1 if cross > 0 else -1 if cross < 0 else 0


def _crosses_segment(line: Line, w: int, h: int, a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Does the move a -> b cross the line within its two end points?"""
    (x1, y1), (x2, y2) = ((x * (w - 1), y * (h - 1)) for x, y in line.points)
    dx, dy = x2 - x1, y2 - y1
    mx, my = b[0] - a[0], b[1] - a[1]
    denom = dx * my - dy * mx
    if abs(denom) < 1e-12:
        return False
    t = ((a[0] - x1) * my - (a[1] - y1) * mx) / denom  # position along the line
    return -1e-9 <= t <= 1 + 1e-9


def _applies(classes: list[str] | None, name: str) -> bool:
    return classes is None or name in classes


class CameraProcessor:
    """Tracker plus event rules for one camera. ``truth=True`` follows the simulator's object ids."""

    def __init__(self, camera_id: str, rules: RulesFile, state: CameraState | None = None, *, truth: bool = False):
        self.camera_id = camera_id
        self.camera, self.rules = rules.for_camera(camera_id)
        self.state = state or CameraState(camera_id=camera_id)
        self.truth = truth
        self._masks: dict[str, np.ndarray] = {}  # decoded last masks, rebuilt lazily after a restart
        self._dirty: set[str] = set()  # tracks whose mask changed since the last snapshot
        self.last_matched: list[tuple[Track, Observation]] = []  # confirmed tracks of the last frame (reports)

    # -------------------------------------------------------------------------------- entry points

    def consume(self, frame: FrameDetections) -> tuple[list[Event], str | None]:
        """One message of the camera's stream: its events, and why it was skipped (or None).

        Frames are identified by (``stream_epoch``, ``frame_index``). A newer epoch is a restarted
        source: the old stream's open tracks are closed and the camera goes on. An older epoch
        (``stale_stream``) or a frame already processed (``duplicate``) is skipped.
        """
        st = self.state
        if frame.stream_epoch < st.stream_epoch:
            return [], "stale_stream"
        events = self.restart(frame.stream_epoch) if frame.stream_epoch > st.stream_epoch else []
        if frame.frame_index <= st.last_index:
            return events, "duplicate"
        if frame.end_of_stream:
            meta = FrameMeta(frame.camera_id, frame.vehicle_id, frame.frame_index, frame.capture_time, 1, 1,
                             stream_epoch=frame.stream_epoch)  # fmt: skip
            events += self.flush(meta)
            st.last_index = frame.frame_index
            return events, None
        return events + self.process(frame), None

    def restart(self, epoch: int) -> list[Event]:
        """A new run of the camera's source: end the old stream's tracks, keep counts and track numbering."""
        st = self.state
        events: list[Event] = []
        if st.last_index >= 0 and (st.tracks or st.window_start is not None):
            meta = FrameMeta(self.camera_id, None, st.last_index + 1, st.last_time or 0.0, 1, 1,
                             stream_epoch=st.stream_epoch)  # fmt: skip
            events = self.flush(meta)
        st.stream_epoch, st.last_index, st.last_time = epoch, -1, None
        st.intervals, st.nominal_interval, st.fps_low = [], None, False
        self._masks.clear()
        self._dirty.clear()
        return events

    def process(self, frame: FrameDetections) -> list[Event]:
        meta = FrameMeta(frame.camera_id, frame.vehicle_id, frame.frame_index, frame.capture_time, frame.width,
                         frame.height, frame.model_name, frame.model_version, frame.decode_errors,
                         frame.stream_epoch)  # fmt: skip
        for d in frame.instances:
            if tuple(d.mask.size) != (frame.height, frame.width):
                raise ValueError(f"mask of query {d.query} is {d.mask.size}, the frame {frame.height}x{frame.width}")
        obs = [Observation(d.class_name, d.score, d.box, rle.decode(d.mask.model_dump())) for d in frame.instances]
        return self.step(meta, obs)

    def step(self, meta: FrameMeta, observations: list[Observation]) -> list[Event]:
        """Advance by one frame. A frame at or before the last one processed is ignored (replays)."""
        st, r = self.state, self.rules
        if meta.frame_index <= st.last_index:
            return []
        events: list[Event] = []
        emit = self._emitter(meta, events)
        self._health(meta, emit)
        obs = [o for o in observations if o.score >= r.min_score or self.truth]
        matched = self.last_matched = self._track(meta, obs, emit)
        self._zones_and_lines(meta, matched, emit)
        self._proximity(meta, matched, emit)
        self._occupancy(meta, emit)
        st.last_index, st.last_time = meta.frame_index, meta.time
        st.model_name, st.model_version = meta.model_name, meta.model_version
        return events

    def flush(self, meta: FrameMeta) -> list[Event]:
        """End every open track (the stream is over): their exits and ends, and the last window."""
        if not meta.model_name:  # an end-of-stream marker carries no model: the events keep the last one
            meta = replace(meta, model_name=self.state.model_name, model_version=self.state.model_version)
        events: list[Event] = []
        emit = self._emitter(meta, events)
        for track in list(self.state.tracks):
            if track.confirmed:
                self._end_track(track, meta, emit)
        self.state.tracks = []
        self._close_window(meta, emit)
        self.state.window_start = None  # closed: a later flush (a restart after the end) emits nothing again
        return events

    def snapshot(self) -> CameraState:
        """The state to persist: masks are RLE-encoded here, once per save rather than once per frame."""
        for t in self.state.tracks:
            if t.track_id in self._dirty:
                t.mask = rle.encode(self._masks[t.track_id])
        self._dirty.clear()
        return self.state

    # -------------------------------------------------------------------------------- steps

    def _emitter(self, meta: FrameMeta, events: list[Event]):
        def emit(event_type: str, /, *, track: Track | None = None, zone: str | None = None, line: str | None = None,
                 direction: str | None = None, index: int | None = None, time: float | None = None,
                 **details: float | int | str | bool | None) -> None:  # fmt: skip
            index = meta.frame_index if index is None else index
            # the epoch keeps ids of a restarted stream apart; epoch 0 (version 1 messages) keeps the old ids
            epoch = (meta.stream_epoch,) if meta.stream_epoch else ()
            events.append(Event(
                event_id=event_id(self.camera_id, event_type, track.track_id if track else None, zone, line, direction,
                                  index, details.get("status"), *epoch),
                type=event_type, camera_id=self.camera_id, vehicle_id=meta.vehicle_id,
                stream_epoch=meta.stream_epoch, frame_index=index,
                frame_time=meta.time if time is None else time, model_name=meta.model_name,
                model_version=meta.model_version, track_id=track.track_id if track else None,
                class_name=track.class_name if track else details.pop("class_name", None),  # type: ignore[arg-type]
                zone=zone, line=line, direction=direction, details=details,
            ))  # fmt: skip

        return emit

    def _health(self, meta: FrameMeta, emit) -> None:
        st, r = self.state, self.rules
        if meta.decode_errors:
            emit("camera.health", status="decode_errors", frames=meta.decode_errors)
        if st.last_time is None:
            return
        gap = meta.time - st.last_time
        if gap > r.stall_s:
            emit("camera.health", status="stalled", gap_s=round(gap, 3))
        st.intervals = [*st.intervals, gap][-20:]
        if st.nominal_interval is None and len(st.intervals) == 20:
            st.nominal_interval = float(np.median(st.intervals))
        if st.nominal_interval:
            fps = 1.0 / max(float(np.median(st.intervals[-10:])), 1e-9)
            nominal = 1.0 / st.nominal_interval
            if not st.fps_low and fps < r.fps_drop * nominal:
                st.fps_low = True
                emit("camera.health", status="fps_drop", fps=round(fps, 2), nominal_fps=round(nominal, 2))
            elif st.fps_low and fps >= r.fps_drop * nominal:
                st.fps_low = False
                emit("camera.health", status="fps_recovered", fps=round(fps, 2), nominal_fps=round(nominal, 2))

    def _mask_of(self, track: Track) -> np.ndarray:
        if track.track_id not in self._masks:
            self._masks[track.track_id] = decode_mask(track)
        return self._masks[track.track_id]

    def _track(self, meta: FrameMeta, obs: list[Observation], emit) -> list[tuple[Track, Observation]]:
        st, r = self.state, self.rules
        tracks = st.tracks
        if self.truth:
            pairs = assign_by_identity(tracks, obs)
        else:
            pairs = assign(tracks, [self._mask_of(t) for t in tracks], obs, r.track_iou)
        hit = {ti for ti, _ in pairs}
        matched: list[tuple[Track, Observation]] = []
        for ti, oi in pairs:
            t, o = tracks[ti], obs[oi]
            t.last_index, t.last_time, t.box = meta.frame_index, meta.time, tuple(float(v) for v in o.box)
            t.misses, t.hits = 0, t.hits + 1
            self._dirty.add(t.track_id)
            t.best_score = max(t.best_score, o.score)
            if not self.truth:
                vote(t, o)
            self._masks[t.track_id] = o.mask
            matched.append((t, o))
        survivors = []
        for i, t in enumerate(tracks):
            if i in hit:
                survivors.append(t)
                continue
            t.misses += 1
            if not t.confirmed:  # a tentative track that missed: a flicker, no events
                self._masks.pop(t.track_id, None)
                self._dirty.discard(t.track_id)
            elif t.misses > r.max_misses:
                self._end_track(t, meta, emit)
            else:
                survivors.append(t)
        taken = {oi for _, oi in pairs}
        for j, o in enumerate(obs):
            if j in taken:
                continue
            tid = f"{self.camera_id}#gt{o.object_id}" if self.truth else f"{self.camera_id}#{st.next_track}"
            st.next_track += 1
            t = Track(track_id=tid, class_name=o.class_name, first_index=meta.frame_index, first_time=meta.time,
                      last_index=meta.frame_index, last_time=meta.time, box=tuple(float(v) for v in o.box),
                      best_score=o.score, object_id=o.object_id,
                      class_votes={o.class_name: o.score})  # fmt: skip
            self._masks[tid] = o.mask
            self._dirty.add(tid)
            survivors.append(t)
            matched.append((t, o))
        st.tracks = survivors
        confirmed = []
        for t, o in matched:
            if not t.confirmed and t.hits >= r.min_hits:
                t.confirmed = True
                emit("track.started", track=t, first_index=t.first_index, score=round(t.best_score, 4))
            if t.confirmed:
                confirmed.append((t, o))
        return confirmed

    def _end_track(self, t: Track, meta: FrameMeta, emit) -> None:
        for zone in sorted(t.zones):
            emit("zone.exited", track=t, zone=zone, index=t.last_index, time=t.last_time,
                 duration_s=round(t.last_time - t.zones[zone], 3), reason="track_ended")  # fmt: skip
        t.zones = {}
        emit("track.ended", track=t, index=t.last_index, time=t.last_time, first_index=t.first_index,
             duration_s=round(t.last_time - t.first_time, 3), best_score=round(t.best_score, 4))  # fmt: skip
        self._masks.pop(t.track_id, None)
        self._dirty.discard(t.track_id)

    def _zones_and_lines(self, meta: FrameMeta, matched: list[tuple[Track, Observation]], emit) -> None:
        r, w, h = self.rules, meta.width, meta.height
        for t, o in matched:
            area = o.area
            if area < r.min_area:
                continue
            for zone in self.camera.zones:
                if not _applies(zone.classes, t.class_name):
                    continue
                share = o.overlap(_polygon_mask(tuple(zone.polygon), w, h)) / area
                inside = zone.name in t.zones
                # a change of state needs `zone_frames` frames in a row past the threshold: no flicker
                past = share < r.exit_share if inside else share >= r.enter_share
                t.pending[zone.name] = t.pending.get(zone.name, 0) + 1 if past else 0
                if past and t.pending[zone.name] >= r.zone_frames:
                    t.pending[zone.name] = 0
                    if not inside:
                        t.zones[zone.name] = meta.time
                        emit("zone.entered", track=t, zone=zone.name, share=round(share, 3), kind=zone.kind)
                    else:
                        entered = t.zones.pop(zone.name)
                        if zone.name in t.dwelled:
                            t.dwelled.remove(zone.name)
                        emit("zone.exited", track=t, zone=zone.name, share=round(share, 3),
                             duration_s=round(meta.time - entered, 3), reason="left")  # fmt: skip
                elif inside and zone.name not in t.dwelled and meta.time - t.zones[zone.name] >= r.dwell_s:
                    t.dwelled.append(zone.name)
                    emit("zone.dwell", track=t, zone=zone.name, dwell_s=round(meta.time - t.zones[zone.name], 3))
            anchor = o.centroid()
            for line in self.camera.lines:
                if not _applies(line.classes, t.class_name):
                    continue
                side = _side(line, w, h, anchor)
                before = t.line_sides.get(line.name)
                if side != 0:
                    t.line_sides[line.name] = side
                if before and side and side != before and t.anchor and _crosses_segment(line, w, h, t.anchor, anchor):
                    direction = "positive" if side > 0 else "negative"
                    counts = self.state.line_counts.setdefault(line.name, {})
                    key = f"{t.class_name}/{direction}"
                    counts[key] = counts.get(key, 0) + 1
                    emit("line.crossed", track=t, line=line.name, direction=direction, count=counts[key])
            t.anchor = anchor

    def _proximity(self, meta: FrameMeta, matched: list[tuple[Track, Observation]], emit) -> None:
        r, w, h = self.rules, meta.width, meta.height
        vrus = [(t, o) for t, o in matched if t.class_name in VULNERABLE and o.area >= r.min_area]
        if not vrus:
            return
        lanes = [z for z in self.camera.zones if z.kind == "ego_lane"]
        vehicles = [o.mask for t, o in matched if t.class_name in VEHICLES]
        vehicle_dist = None
        if vehicles:
            union = np.logical_or.reduce(vehicles)
            vehicle_dist = cv2.distanceTransform((~union).astype(np.uint8), cv2.DIST_L2, 3)
        for t, o in vrus:
            best: tuple[float, str] | None = None
            for zone in lanes:
                d = float(_distance_to(tuple(zone.polygon), w, h)[o.mask].min())
                if best is None or d < best[0]:
                    best = (d, f"ego_lane:{zone.name}")
            if vehicle_dist is not None:
                d = float(vehicle_dist[o.mask].min())
                if best is None or d < best[0]:
                    best = (d, "vehicle")
            if best is None or best[0] > r.proximity_px:
                continue
            if t.last_alert is not None and meta.time - t.last_alert < r.proximity_cooldown_s:
                continue
            t.last_alert = meta.time
            emit("proximity.alert", track=t, target=best[1], distance_px=round(best[0], 1))

    def _occupancy(self, meta: FrameMeta, emit) -> None:
        st, r = self.state, self.rules
        start = math.floor(meta.time / r.occupancy_window_s) * r.occupancy_window_s
        if st.window_start is not None and start > st.window_start:
            self._close_window(meta, emit)
        if st.window_start is None or start > st.window_start:
            st.window_start, st.window_peaks = start, {}
        for zone in self.camera.zones:
            counts: dict[str, int] = {}
            for t in st.tracks:
                if zone.name in t.zones and t.misses == 0 and t.confirmed:
                    counts[t.class_name] = counts.get(t.class_name, 0) + 1
            peaks = st.window_peaks.setdefault(zone.name, {})
            for cls, n in counts.items():
                peaks[cls] = max(peaks.get(cls, 0), n)

    def _close_window(self, meta: FrameMeta, emit) -> None:
        st, r = self.state, self.rules
        if st.window_start is None:
            return
        for zone in self.camera.zones:
            peaks = st.window_peaks.get(zone.name, {})
            emit("occupancy", zone=zone.name, index=meta.frame_index, window_start=st.window_start,
                 window_s=r.occupancy_window_s, total=sum(peaks.values()), **dict(sorted(peaks.items())))  # fmt: skip
        st.window_peaks = {}


__all__ = ["CameraProcessor", "CameraRules", "CameraState", "FrameMeta", "Rules", "Zone", "event_id"]
